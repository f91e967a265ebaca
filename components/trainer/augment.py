"""Joint, stateless, seeded augmentation of chest X-rays and their lung masks for the Trainer's input_fn."""

from __future__ import annotations

import dataclasses
import math
from numbers import Real

import tensorflow as tf

from components import features as F

# Each example's seed is split into one stream per group of random parameters, and each group always draws all
# its parameters (as one vector: fewer ops per example), whatever the config: switching one change on or off
# never shifts the other draws, so the same seed is the same augmentation of the same example.
_STREAM_GEOMETRY, _STREAM_INTENSITY, _STREAM_NOISE = 0, 1, 2
_NUM_STREAMS = 3
# Positions in the geometry draw: rotation, zoom, shift x, shift y, flip; in the intensity draw: brightness, contrast.
_GEOMETRY_DRAWS, _INTENSITY_DRAWS = 5, 2


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _range(name: str, value: object, low: float, high: float) -> tuple[float, float]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}")
    lo, hi = _number(f"{name}[0]", value[0]), _number(f"{name}[1]", value[1])
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name} must satisfy {low} <= min <= max <= {high}, got {value!r}")
    return lo, hi


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Random geometric and intensity changes; every range is drawn uniformly, once per example.

    Defaults follow common chest X-ray practice: small rotations, zooms and shifts (patients are positioned
    within a few degrees and centimetres), no horizontal flip (it would put the heart on the wrong side).

    Attributes:
      rotation_degrees: rotation angle drawn in [-rotation_degrees, rotation_degrees], about the image
        centre; in [0, 180).
      scale: zoom factor drawn in [min, max] (> 1 enlarges the anatomy); 0 < min <= max <= 10.
      shift_fraction: translation drawn in [-f, f] times the image width (x) and height (y); in [0, 0.5).
      horizontal_flip: mirror left-right with probability 0.5; the right/left lung labels
        (F.MASK_RIGHT_LUNG, F.MASK_LEFT_LUNG) are swapped in the mask, so they keep naming the patient's side.
      brightness: delta added to the image, drawn in [-brightness, brightness]; in [0, 1).
      contrast: factor drawn in [min, max] scaling each image about its mean; 0 <= min <= max <= 10.
      noise_stddev: standard deviation of additive Gaussian noise, in [0, 1).
    """

    rotation_degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift_fraction: float = 0.05
    horizontal_flip: bool = False
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.8, 1.2)
    noise_stddev: float = 0.02

    def __post_init__(self) -> None:
        rotation = _number("rotation_degrees", self.rotation_degrees)
        if not 0.0 <= rotation < 180.0:
            raise ValueError(f"rotation_degrees must be in [0, 180), got {self.rotation_degrees!r}")
        scale = _range("scale", self.scale, 0.0, 10.0)
        if scale[0] <= 0.0:
            raise ValueError(f"scale must be > 0, got {self.scale!r}")
        shift = _number("shift_fraction", self.shift_fraction)
        if not 0.0 <= shift < 0.5:
            raise ValueError(f"shift_fraction must be in [0, 0.5), got {self.shift_fraction!r}")
        if not isinstance(self.horizontal_flip, bool):
            raise ValueError(f"horizontal_flip must be a bool, got {self.horizontal_flip!r}")
        brightness = _number("brightness", self.brightness)
        if not 0.0 <= brightness < 1.0:
            raise ValueError(f"brightness must be in [0, 1), got {self.brightness!r}")
        contrast = _range("contrast", self.contrast, 0.0, 10.0)
        noise = _number("noise_stddev", self.noise_stddev)
        if not 0.0 <= noise < 1.0:
            raise ValueError(f"noise_stddev must be in [0, 1), got {self.noise_stddev!r}")
        # Normalised (lists from a JSON custom_config become tuples) so the config stays hashable.
        for name, value in (
            ("rotation_degrees", rotation),
            ("scale", scale),
            ("shift_fraction", shift),
            ("brightness", brightness),
            ("contrast", contrast),
            ("noise_stddev", noise),
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def identity(cls) -> AugmentConfig:
        """A config that changes nothing (augment returns its inputs exactly)."""
        return cls(
            rotation_degrees=0.0,
            scale=(1.0, 1.0),
            shift_fraction=0.0,
            horizontal_flip=False,
            brightness=0.0,
            contrast=(1.0, 1.0),
            noise_stddev=0.0,
        )

    @property
    def has_geometry(self) -> bool:
        """Whether any geometric change is on (else the affine warp is skipped)."""
        return bool(self.rotation_degrees or self.scale != (1.0, 1.0) or self.shift_fraction or self.horizontal_flip)

    @property
    def has_intensity(self) -> bool:
        """Whether any intensity change is on (else brightness, contrast, noise and clipping are skipped)."""
        return bool(self.brightness or self.contrast != (1.0, 1.0) or self.noise_stddev)


def _scaled(u: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """Maps a uniform [0, 1) draw onto [low, high); exactly `low` when low == high."""
    return low + (high - low) * u


def affine_transform(seed: tf.Tensor, height: tf.Tensor, width: tf.Tensor, config: AugmentConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """Draws one random affine map and returns it in ImageProjectiveTransformV3's output-to-input form.

    The forward map (input pixel -> output pixel) is: optional mirror, then rotation and zoom about the
    image centre, then translation. Pixel (row i, column j) has coordinates x = j, y = i, so the centre is
    ((W - 1) / 2, (H - 1) / 2) and the mirror x -> W - 1 - x maps the pixel grid exactly onto itself.

    Args:
      seed: (2,) int64 stateless seed of the geometry stream.
      height, width: () int32 image size.
      config: the ranges to draw from.

    Returns:
      (transform, flipped): (1, 8) float32 [a0, a1, a2, b0, b1, b2, 0, 0], mapping an output point (x, y)
      to the input point (a0 x + a1 y + a2, b0 x + b1 y + b2); () bool, whether the image is mirrored.
    """
    u = tf.random.stateless_uniform([_GEOMETRY_DRAWS], seed, dtype=tf.float32)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    angle = _scaled(u[0], -config.rotation_degrees, config.rotation_degrees) * (math.pi / 180.0)
    zoom = _scaled(u[1], *config.scale)
    tx = _scaled(u[2], -config.shift_fraction, config.shift_fraction) * w
    ty = _scaled(u[3], -config.shift_fraction, config.shift_fraction) * h
    flipped = tf.logical_and(tf.constant(config.horizontal_flip), u[4] < 0.5)
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    # Inverse of "rotate by angle and zoom, then shift": p = R(-angle) (q - c - t) / zoom + c.
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    ox, oy = cx + tx, cy + ty
    # Then undo the mirror: x_in = W - 1 - x_p (sign -1, offset W - 1).
    sign = tf.where(flipped, -1.0, 1.0)
    offset = tf.where(flipped, w - 1.0, 0.0)
    zero = tf.zeros([], tf.float32)
    row = tf.stack(
        [
            sign * cos,
            sign * sin,
            sign * (cx - cos * ox - sin * oy) + offset,
            -sin,
            cos,
            cy + sin * ox - cos * oy,
            zero,
            zero,
        ]
    )
    return tf.reshape(row, [1, 8]), flipped


def _warp(image: tf.Tensor, transform: tf.Tensor, interpolation: str) -> tf.Tensor:
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform,
        output_shape=tf.shape(image)[:2],
        fill_value=tf.zeros([], tf.float32),
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )[0]
    out.set_shape(image.shape)
    return out


def _swap_lungs(mask: tf.Tensor) -> tf.Tensor:
    right, left = float(F.MASK_RIGHT_LUNG), float(F.MASK_LEFT_LUNG)
    return tf.where(mask == right, left, tf.where(mask == left, right, mask))


def _intensity(image: tf.Tensor, seeds: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    u = tf.random.stateless_uniform([_INTENSITY_DRAWS], seeds[_STREAM_INTENSITY], dtype=tf.float32)
    if config.brightness:
        image = image + _scaled(u[0], -config.brightness, config.brightness)
    if config.contrast != (1.0, 1.0):
        mean = tf.reduce_mean(image)
        image = (image - mean) * _scaled(u[1], *config.contrast) + mean
    if config.noise_stddev:
        image = image + tf.random.stateless_normal(tf.shape(image), seeds[_STREAM_NOISE], stddev=config.noise_stddev)
    return tf.clip_by_value(image, 0.0, 1.0)


def _check(name: str, t: tf.Tensor) -> None:
    if t.shape.rank is not None and (t.shape.rank != 3 or (t.shape[-1] is not None and t.shape[-1] != 1)):
        raise ValueError(f"{name} must be (H, W, 1), got shape {t.shape}")
    if t.dtype != tf.float32:
        raise ValueError(f"{name} must be float32, got {t.dtype.name}")


def augment(
    image: tf.Tensor, mask: tf.Tensor | None, seed: tf.Tensor, config: AugmentConfig | None = None
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Augments one example: the same random affine map on image and mask, then intensity on the image.

    Stateless: the output depends only on the inputs, `seed` and `config`, so it is reproducible and works
    in a (parallel) tf.data map in graph mode.

    Args:
      image: (H, W, 1) float32 in [0, 1].
      mask: (H, W, 1) float32 label map in {0, 1, 2} (F.MASK_BACKGROUND, F.MASK_RIGHT_LUNG, F.MASK_LEFT_LUNG),
        or None.
      seed: (2,) int32/int64 stateless seed (common.example_seeds gives one per example).
      config: the ranges to draw from; None means AugmentConfig().

    Returns:
      (image, mask): image (H, W, 1) float32 in [0, 1], warped bilinearly (outside the input: 0), then
      brightness, contrast and noise, clipped to [0, 1]; mask (H, W, 1) float32 warped by nearest neighbour
      (so values stay exactly in the input's label set, outside: 0) with labels 1 and 2 swapped when the
      image was mirrored; None when mask is None.

    Raises:
      ValueError: image or mask is not (H, W, 1) float32, or seed is not of shape (2,).
    """
    config = AugmentConfig() if config is None else config
    if not isinstance(config, AugmentConfig):
        raise ValueError(f"config must be an AugmentConfig, got {type(config).__name__}")
    image = tf.convert_to_tensor(image)
    _check("image", image)
    if mask is not None:
        mask = tf.convert_to_tensor(mask)
        _check("mask", mask)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank is not None and seed.shape != [2]:
        raise ValueError(f"seed must have shape (2,), got {seed.shape}")
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), _NUM_STREAMS)
    if config.has_geometry:
        shape = tf.shape(image)
        transform, flipped = affine_transform(seeds[_STREAM_GEOMETRY], shape[0], shape[1], config)
        image = _warp(image, transform, "BILINEAR")
        if mask is not None:
            mask = _warp(mask, transform, "NEAREST")
            if config.horizontal_flip:
                mask = tf.where(flipped, _swap_lungs(mask), mask)
    if config.has_intensity:
        image = _intensity(image, seeds, config)
    return image, mask


def augment_image(image: tf.Tensor, seed: tf.Tensor, config: AugmentConfig | None = None) -> tf.Tensor:
    """Augments one image without a mask (classification): geometry and intensity as in `augment`.

    Args:
      image: (H, W, 1) float32 in [0, 1].
      seed: (2,) int32/int64 stateless seed.
      config: the ranges to draw from; None means AugmentConfig().

    Returns:
      (H, W, 1) float32 in [0, 1].
    """
    return augment(image, None, seed, config)[0]
