"""Joint augmentation: one affine map reaches image and mask, flips swap the lungs, seeds reproduce, configs validate."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from components import features as F
from components.trainer import common
from components.trainer.augment import AugmentConfig, augment, augment_image

SIZE = 64
# Geometry strong enough that a mask warped differently from its image would visibly miss it.
STRONG = AugmentConfig(rotation_degrees=25.0, scale=(0.8, 1.2), shift_fraction=0.1)
FLIP_ONLY = dataclasses.replace(AugmentConfig.identity(), horizontal_flip=True)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """A bright rectangle (right lung, image left) and disc (left lung, image right) and their label map.

    Returns:
      image (SIZE, SIZE, 1) float32 in {0, 1}; mask (SIZE, SIZE, 1) float32 in {0, 1, 2}.
    """
    yy, xx = np.mgrid[:SIZE, :SIZE]
    right = (yy >= 16) & (yy < 48) & (xx >= 10) & (xx < 26)
    left = (yy - 30) ** 2 + (xx - 44) ** 2 < 11**2
    image = (right | left).astype(np.float32)[..., None]
    mask = (right * F.MASK_RIGHT_LUNG + left * F.MASK_LEFT_LUNG).astype(np.float32)[..., None]
    return image, mask


def _seed(i: int) -> tf.Tensor:
    return tf.constant([7, i], tf.int64)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("seed", range(8))
def test_image_and_mask_get_the_same_geometry(seed):
    image, mask = _scene()
    out_image, out_mask = (t.numpy() for t in augment(image, mask, _seed(seed), STRONG))
    assert out_image.shape == out_mask.shape == (SIZE, SIZE, 1)
    assert out_image.min() >= 0.0 and out_image.max() <= 1.0
    assert set(np.unique(out_mask)) <= {0.0, 1.0, 2.0}
    assert not np.array_equal(out_mask, mask), "the geometry did not change the mask"
    assert _iou(out_image > 0.5, out_mask > 0) > 0.9
    # Without a flip each lung stays on its side.
    right_x = np.argwhere(out_mask[..., 0] == F.MASK_RIGHT_LUNG)[:, 1].mean()
    left_x = np.argwhere(out_mask[..., 0] == F.MASK_LEFT_LUNG)[:, 1].mean()
    assert right_x < left_x


def test_the_overlap_check_catches_a_mask_warped_differently():
    image, mask = _scene()
    out_image, _ = augment(image, mask, _seed(0), STRONG)
    _, other_mask = augment(image, mask, _seed(1), STRONG)
    assert _iou(out_image.numpy() > 0.5, other_mask.numpy() > 0) < 0.9


def test_flip_mirrors_and_swaps_the_lung_labels():
    image, mask = _scene()
    mirrored_mask = np.flip(mask, 1).copy()
    swapped = np.where(mirrored_mask == 1, 2.0, np.where(mirrored_mask == 2, 1.0, mirrored_mask)).astype(np.float32)
    flipped = kept = 0
    for i in range(16):
        out_image, out_mask = (t.numpy() for t in augment(image, mask, _seed(i), FLIP_ONLY))
        if np.array_equal(out_image, np.flip(image, 1)):
            flipped += 1
            np.testing.assert_array_equal(out_mask, swapped)
        else:
            kept += 1
            np.testing.assert_array_equal(out_image, image)
            np.testing.assert_array_equal(out_mask, mask)
    assert flipped >= 3 and kept >= 3, (flipped, kept)


def test_flip_with_geometry_keeps_labels_on_their_shapes():
    image, mask = _scene()
    image = np.where(mask == F.MASK_LEFT_LUNG, 0.6, image).astype(np.float32)  # rectangle 1.0, disc 0.6
    config = dataclasses.replace(STRONG, horizontal_flip=True, brightness=0.0, contrast=(1.0, 1.0), noise_stddev=0.0)
    disc_is_right_lung = set()
    for i in range(12):
        out_image, out_mask = (t.numpy() for t in augment(image, mask, _seed(i), config))
        right, left = out_mask == F.MASK_RIGHT_LUNG, out_mask == F.MASK_LEFT_LUNG
        assert _iou(out_image > 0.3, out_mask > 0) > 0.9
        # Mirrored or not, the patient's right lung (label 1) stays on the image left: the labels follow the side.
        assert np.argwhere(right[..., 0])[:, 1].mean() < np.argwhere(left[..., 0])[:, 1].mean()
        # Which shape carries label 1 tells whether this draw mirrored: the disc (0.6) or the rectangle (1.0).
        right_mean, left_mean = out_image[right].mean(), out_image[left].mean()
        assert abs(right_mean - left_mean) > 0.3
        disc_is_right_lung.add(bool(right_mean < left_mean))
    assert disc_is_right_lung == {True, False}, "expected both mirrored and unmirrored draws"


def test_outside_the_input_is_filled_with_zero():
    ones = np.ones((SIZE, SIZE, 1), np.float32)
    shrink = dataclasses.replace(AugmentConfig.identity(), scale=(0.7, 0.7))
    out_image, out_mask = (t.numpy() for t in augment(ones, ones * F.MASK_LEFT_LUNG, _seed(0), shrink))
    assert out_image[0, 0, 0] == 0.0 and out_mask[0, 0, 0] == 0.0  # a corner: outside the shrunken input
    assert out_image[SIZE // 2, SIZE // 2, 0] == 1.0 and out_mask[SIZE // 2, SIZE // 2, 0] == F.MASK_LEFT_LUNG
    assert set(np.unique(out_mask)) == {0.0, float(F.MASK_LEFT_LUNG)}


def test_same_seed_same_output_and_different_seeds_differ():
    image, mask = _scene()
    a_image, a_mask = augment(image, mask, _seed(3), AugmentConfig())
    b_image, b_mask = augment(image, mask, _seed(3), AugmentConfig())
    c_image, _ = augment(image, mask, _seed(4), AugmentConfig())
    np.testing.assert_array_equal(a_image.numpy(), b_image.numpy())
    np.testing.assert_array_equal(a_mask.numpy(), b_mask.numpy())
    assert np.abs(a_image.numpy() - c_image.numpy()).max() > 0.05


def test_identity_config_returns_the_input_exactly():
    image, mask = _scene()
    image = image * 0.5 + 0.25  # not only 0/1 values
    zero = AugmentConfig(
        rotation_degrees=0, scale=(1, 1), shift_fraction=0, horizontal_flip=False, brightness=0, contrast=(1, 1), noise_stddev=0
    )
    assert zero == AugmentConfig.identity()
    out_image, out_mask = augment(image, mask, _seed(0), zero)
    np.testing.assert_array_equal(out_image.numpy(), image)
    np.testing.assert_array_equal(out_mask.numpy(), mask)


def test_intensity_changes_only_the_image_and_keeps_it_in_range():
    image, mask = _scene()
    intensity_only = AugmentConfig(rotation_degrees=0, scale=(1, 1), shift_fraction=0, brightness=0.3, noise_stddev=0.2)
    out_image, out_mask = augment(image, mask, _seed(1), intensity_only)
    np.testing.assert_array_equal(out_mask.numpy(), mask)
    assert not np.array_equal(out_image.numpy(), image)
    assert out_image.numpy().min() >= 0.0 and out_image.numpy().max() <= 1.0


def test_intensity_settings_do_not_shift_the_geometry_draws():
    image, mask = _scene()
    quiet = dataclasses.replace(STRONG, brightness=0.0, contrast=(1.0, 1.0), noise_stddev=0.0)
    _, loud_mask = augment(image, mask, _seed(5), STRONG)
    _, quiet_mask = augment(image, mask, _seed(5), quiet)
    np.testing.assert_array_equal(loud_mask.numpy(), quiet_mask.numpy())


def test_augment_image_matches_the_image_of_augment():
    image, mask = _scene()
    alone = augment_image(image, _seed(2), STRONG)
    with_mask, _ = augment(image, mask, _seed(2), STRONG)
    np.testing.assert_array_equal(alone.numpy(), with_mask.numpy())
    assert augment(image, None, _seed(2), STRONG)[1] is None


def test_works_in_a_parallel_tf_data_map_with_example_seeds():
    image, mask = _scene()
    ds = tf.data.Dataset.from_tensors((image, mask)).repeat(4)
    ds = common.example_seeds(ds, 7).map(
        lambda pair, seed: (*augment(pair[0], pair[1], seed, STRONG), seed), num_parallel_calls=tf.data.AUTOTUNE
    )
    seen = []
    for out_image, out_mask, seed in ds:
        assert out_image.shape == (SIZE, SIZE, 1) and out_mask.shape == (SIZE, SIZE, 1)
        eager_image, eager_mask = augment(image, mask, seed, STRONG)
        # Graph mode inside tf.data draws exactly what eager mode draws for the same seed.
        np.testing.assert_allclose(out_image.numpy(), eager_image.numpy(), atol=1e-6)
        np.testing.assert_array_equal(out_mask.numpy(), eager_mask.numpy())
        seen.append(out_mask.numpy())
    assert len(seen) == 4 and not np.array_equal(seen[0], seen[1])


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"rotation_degrees": -1.0}, r"rotation_degrees must be in \[0, 180\)"),
        ({"rotation_degrees": True}, "rotation_degrees must be a finite number"),
        ({"rotation_degrees": float("nan")}, "rotation_degrees must be a finite number"),
        ({"scale": (1.1, 0.9)}, "scale must satisfy"),
        ({"scale": (0.0, 1.0)}, "scale must be > 0"),
        ({"scale": (1.0,)}, r"scale must be a \(min, max\) pair"),
        ({"shift_fraction": 0.5}, r"shift_fraction must be in \[0, 0.5\)"),
        ({"horizontal_flip": "yes"}, "horizontal_flip must be a bool"),
        ({"brightness": 1.0}, r"brightness must be in \[0, 1\)"),
        ({"contrast": (1.2, 0.8)}, "contrast must satisfy"),
        ({"contrast": ("a", 1.0)}, r"contrast\[0\] must be a finite number"),
        ({"noise_stddev": -0.1}, r"noise_stddev must be in \[0, 1\)"),
    ],
)
def test_bad_config_is_refused(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        AugmentConfig(**kwargs)


def test_lists_from_a_json_config_become_tuples():
    config = AugmentConfig(scale=[0.9, 1.1], contrast=[0.8, 1.2])
    assert config.scale == (0.9, 1.1) and config.contrast == (0.8, 1.2)
    assert hash(config) == hash(AugmentConfig())


@pytest.mark.parametrize(
    "image, mask, seed, pattern",
    [
        (np.zeros((8, 8), np.float32), None, [0, 1], r"image must be \(H, W, 1\)"),
        (np.zeros((8, 8, 3), np.float32), None, [0, 1], r"image must be \(H, W, 1\)"),
        (np.zeros((8, 8, 1), np.uint8), None, [0, 1], "image must be float32"),
        (np.zeros((8, 8, 1), np.float32), np.zeros((8, 8), np.float32), [0, 1], r"mask must be \(H, W, 1\)"),
        (np.zeros((8, 8, 1), np.float32), None, [0, 1, 2], r"seed must have shape \(2,\)"),
    ],
)
def test_bad_inputs_are_refused(image, mask, seed, pattern):
    with pytest.raises(ValueError, match=pattern):
        augment(image, mask, tf.constant(seed, tf.int64))


def test_bad_config_type_is_refused():
    with pytest.raises(ValueError, match="config must be an AugmentConfig"):
        augment(np.zeros((8, 8, 1), np.float32), None, [0, 1], {"rotation_degrees": 5})
