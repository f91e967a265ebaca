"""Procedural chest X-ray phantom with lung/heart masks and optional radiological findings."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

from pipelines.demo.anatomy import (
    Lung,
    draw_body,
    draw_breasts,
    draw_gastric_bubble,
    draw_heart,
    draw_lung,
    draw_trachea,
    lung_geometries,
)
from pipelines.demo.bones import add_bones, draw_skeleton
from pipelines.demo.canvas import Canvas
from pipelines.demo.fields import SmoothCurve, SmoothField, coarse_noise, gaussian_blur, grid_blur, smooth_noise, upsample2
from pipelines.demo.frame import BodyFrame, block_window, body_frame, row_chunks
from pipelines.demo.lesions import draw_effusion, draw_opacity, draw_tb
from pipelines.demo.markings import lung_markings

logger = logging.getLogger(__name__)

# The smallest and largest image side a phantom can be drawn at.
MIN_SIZE = 32
MAX_SIZE = 8192
_SUPPORTED_BIT_DEPTHS = (8, 16)
# 16-bit phantoms hold 12 significant bits, like most DR/CR detectors (BitsStored=12 in DICOM).
_MAX_VALUE_16 = 4095


# Independent random streams, so toggling one finding never shifts the draws of anything else:
# the same seed with and without a finding is the same patient.
_STREAM_ANATOMY = 0
_STREAM_PATIENT = 1
_STREAM_HEART = 2
_STREAM_TEXTURE = 3
_STREAM_NOISE = 4
_STREAM_EFFUSION = 5
_STREAM_OPACITY = 6
_STREAM_TB = 7

# Where the film curve starts compressing highlights, as a fraction of the reference attenuation.
_FILM_KNEE = 0.7


@dataclass(frozen=True)
class Findings:
    """Radiological findings that can be drawn into a phantom.

    Attributes:
        cardiomegaly: Enlarged heart, cardiothoracic ratio > 0.5 (normal phantoms stay < 0.45).
        effusion: Pleural effusion: homogeneous fluid with a meniscus filling one lung base; the
            fluid is excluded from the lung mask, as radiologists draw it.
        opacity: Consolidation-like blotchy brighter region inside one lung (mask unchanged).
        tb: Apical TB-like nodules and a cavity in an upper lung zone (mask unchanged).
    """

    cardiomegaly: bool = False
    effusion: bool = False
    opacity: bool = False
    tb: bool = False

    @property
    def any(self) -> bool:
        """Whether at least one finding is present."""
        return self.cardiomegaly or self.effusion or self.opacity or self.tb


@dataclass(frozen=True)
class Phantom:
    """A rendered phantom and its ground truth.

    Attributes:
        image: (H, W) uint8 (0..255) or uint16 (0..4095, 12 significant bits) X-ray image in the
            usual display convention: bone and soft tissue bright, aerated lung and air dark.
        mask: (H, W) uint8 label map: 0 background, 1 the patient's right lung (image left,
            radiological convention), 2 the patient's left lung (image right).
        body: (H, W) bool body outline.
        heart: (H, W) bool heart silhouette.
        findings: The findings drawn into the image.
        sex: 'M' or 'F'.
        age_years: Patient age in whole years, 18..85.
        cardiothoracic_ratio: Heart width divided by inner-ribcage width, both column extents of
            the drawn masks (the ribcage width is that of both lungs before any effusion).
    """

    image: np.ndarray
    mask: np.ndarray
    body: np.ndarray
    heart: np.ndarray
    findings: Findings
    sex: str
    age_years: int
    cardiothoracic_ratio: float


def random_findings(rng: np.random.Generator, prevalence: float = 0.4) -> Findings:
    """Draws a random set of findings.

    With probability ``prevalence`` the case is abnormal; an abnormal case gets a non-empty random
    subset of the four findings (each present with probability 0.4, one forced if none drawn).

    Args:
        rng: Source of randomness; the same number of values is drawn whatever the outcome.
        prevalence: Probability in [0, 1] that the returned findings are not all False.

    Returns:
        The drawn findings.

    Raises:
        ValueError: If ``rng`` is not a Generator or ``prevalence`` is not a number in [0, 1].
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(prevalence, bool) or not isinstance(prevalence, (int, float, np.floating)):
        raise ValueError(f"prevalence must be a number in [0, 1], got {prevalence!r}")
    if not 0.0 <= float(prevalence) <= 1.0:
        raise ValueError(f"prevalence must be in [0, 1], got {prevalence!r}")
    abnormal_draw = rng.random()
    picks = rng.random(4) < 0.4
    forced = int(rng.integers(0, 4))
    if abnormal_draw >= prevalence:
        return Findings()
    if not picks.any():
        picks[forced] = True
    return Findings(cardiomegaly=bool(picks[0]), effusion=bool(picks[1]), opacity=bool(picks[2]), tb=bool(picks[3]))


def render_phantom(
    seed: int,
    size: int = 256,
    findings: Findings | None = None,
    bit_depth: int = 8,
    *,
    height: int | None = None,
) -> Phantom:
    """Renders a synthetic PA chest X-ray with its lung, heart and body masks.

    Anatomy (patient size, position, tilt, lung shapes, heart, ribs, sex, age) depends only on
    ``seed`` (and ``findings.cardiomegaly`` for the heart size); every finding has its own random
    stream, so the same seed with and without a finding is the same patient. Rendering is
    deterministic: the same arguments give byte-identical arrays.

    Args:
        seed: Non-negative integer seed.
        size: Image width in pixels, in [32, 8192].
        findings: Findings to draw; ``None`` means a normal study.
        bit_depth: 8 (uint8, 0..255) or 16 (uint16 holding 12 bits, 0..4095).
        height: Image height in pixels, in [32, 8192]; defaults to ``size``.

    Returns:
        The phantom; all arrays have shape (height, size).

    Raises:
        ValueError: For a negative or non-integer seed, an out-of-range size/height, an
            unsupported bit depth or a ``findings`` that is not a ``Findings``.
    """
    seed = _check_int("seed", seed, 0, None)
    width = _check_int("size", size, MIN_SIZE, MAX_SIZE)
    height = width if height is None else _check_int("height", height, MIN_SIZE, MAX_SIZE)
    if isinstance(bit_depth, bool) or bit_depth not in _SUPPORTED_BIT_DEPTHS:
        raise ValueError(f"bit_depth must be one of {_SUPPORTED_BIT_DEPTHS}, got {bit_depth!r}")
    if findings is None:
        findings = Findings()
    if not isinstance(findings, Findings):
        raise ValueError(f"findings must be a Findings instance or None, got {type(findings).__name__}")

    # The matrix products (blur, smooth fields) run on one BLAS thread: how many threads share a product
    # changes its rounding, and a phantom must be the same in every process, whatever its cores.
    with _blas_controller().limit(limits=1, user_api="blas"):
        return _render(seed, width, height, findings, bit_depth)


def _render(seed: int, width: int, height: int, findings: Findings, bit_depth: int) -> Phantom:
    """``render_phantom`` on validated arguments."""
    sex, age_years = phantom_demographics(seed)

    anatomy_rng = _stream(seed, _STREAM_ANATOMY)
    frame = body_frame(anatomy_rng, height, width)
    thorax_half = float(anatomy_rng.uniform(0.31, 0.36)) * (0.96 if sex == "F" else 1.0)
    body, body_depth = draw_body(anatomy_rng, frame, thorax_half)
    lungs = lung_geometries(anatomy_rng, thorax_half)
    skeleton = draw_skeleton(anatomy_rng, thorax_half, lungs, age_years)
    breasts = draw_breasts(anatomy_rng, frame, thorax_half, lungs, body) if sex == "F" else []
    gastric_bubble = draw_gastric_bubble(anatomy_rng, frame, lungs[1])
    wobble = SmoothCurve(anatomy_rng, cells=6, amplitude=0.006)
    aortic_knob = float(anatomy_rng.uniform(0.012, 0.025))

    drawn = [draw_lung(geo, frame, body, wobble, aortic_knob if geo.side > 0 else None) for geo in lungs]
    lung_cols = [np.flatnonzero(lung.shape.any(axis=0)) + lung.window[1].start for lung in drawn]
    thorax_cols = np.concatenate(lung_cols)
    if thorax_cols.size == 0:
        raise ValueError(f"image too small to draw lungs: {height}x{width}")
    thorax_width_px = int(thorax_cols.max() - thorax_cols.min() + 1)

    heart = draw_heart(_stream(seed, _STREAM_HEART), frame, lungs, thorax_width_px, findings.cardiomegaly)
    for lung in drawn:
        lung.mask = lung.shape & ~heart.mask[lung.window]

    # Additive attenuation model: all structures are summed as line integrals, then displayed.
    # Each is added over its window, in a fixed order; the body's thickness becomes its attenuation in place.
    canvas = Canvas(frame, body_depth)
    body_on_canvas = canvas.mask(body)
    for chunk in row_chunks(canvas.whole):
        thickness = canvas.values[chunk]
        np.sqrt(thickness, out=thickness)
        thickness *= 0.5
        thickness += 0.1
        thickness *= body_on_canvas[chunk]
    for lung in drawn:
        _subtract_air(canvas, frame, lung)
    canvas.add_patch(heart.window, 0.03 * heart.depth)
    add_bones(frame, skeleton, body, canvas)
    canvas.add_patch(*draw_trachea(frame))
    for window, values in breasts:
        canvas.add_patch(window, values)
    window, values = gastric_bubble
    canvas.add_patch(window, np.negative(values))
    texture_rng = _stream(seed, _STREAM_TEXTURE)
    lung_markings(texture_rng, frame, lungs, drawn, canvas)
    # Smooth exposure variation (heel effect, scatter) so absolute intensity is not a shortcut.
    exposure = SmoothField(texture_rng, (height, width), (3, 3))
    canvas.add(frame.whole, lambda grid: 0.03 * grid.smooth(exposure))
    reference = canvas.reference(99.7)

    mask = np.zeros((height, width), dtype=np.uint8)
    for label, lung in enumerate(drawn, start=1):
        mask[lung.window][lung.mask] = label

    if findings.effusion:
        (window, gain), fluid = draw_effusion(_stream(seed, _STREAM_EFFUSION), frame, lungs, drawn)
        canvas.add_patch(window, gain)
        mask[window][fluid] = 0
    if findings.opacity:
        patch = draw_opacity(_stream(seed, _STREAM_OPACITY), frame, mask, drawn)
        if patch is not None:
            canvas.add_patch(*patch)
    if findings.tb:
        patch = draw_tb(_stream(seed, _STREAM_TB), frame, mask, lungs, drawn)
        if patch is not None:
            canvas.add_patch(*patch)

    pixel_scale = width / 256.0
    blur_sigma, noise_sigma = 0.6 * pixel_scale, 0.5 * pixel_scale
    noise_rng = _stream(seed, _STREAM_NOISE)
    if frame.coarse:
        # On the half-resolution grid the block means keep the masks' edges where they are, and the blurred
        # image and the noise hold nothing the grid cannot carry.
        exposed = grid_blur(canvas.values, blur_sigma)
        noise = coarse_noise(noise_rng, exposed.shape, noise_sigma)
    else:
        exposed = gaussian_blur(canvas.values, blur_sigma, out=canvas.values)
        noise = smooth_noise(noise_rng, (height, width), noise_sigma)
    noise *= 0.018
    exposed += noise

    # The anatomy's 99.7th percentile maps to white (the densest bone saturates, like a
    # windowed radiograph). It is taken before effusion/opacity/TB are drawn, so those findings
    # only ever add signal and never re-window the rest of the image.
    max_value = 255 if bit_depth == 8 else _MAX_VALUE_16
    image = _display(exposed, reference, max_value, (height, width), np.uint8 if bit_depth == 8 else np.uint16)

    logger.debug("rendered phantom seed=%d %dx%d %s ctr=%.3f", seed, height, width, findings, heart.ctr)
    return Phantom(
        image=image,
        mask=mask,
        body=body,
        heart=heart.mask,
        findings=findings,
        sex=sex,
        age_years=age_years,
        cardiothoracic_ratio=heart.ctr,
    )


def _subtract_air(canvas: Canvas, frame: BodyFrame, lung: Lung) -> None:
    """Takes a lung's air off the attenuation, inside its mask.

    On the half-resolution grid, from the air's thickness at the centres of the blocks (``Lung.field``), weighted
    by the fraction of each block in the mask; pixel by pixel, from ``Lung.air``.
    """
    if not frame.coarse:
        canvas.add_patch(lung.window, np.negative(0.42 * lung.air * lung.mask))
        return
    blocks = block_window(lung.window)
    if blocks[0].start < blocks[0].stop and blocks[1].start < blocks[1].stop:
        canvas.add_blocks(lung.window, -0.42 * lung.field.at_blocks(blocks)[1], lung.mask)


@functools.lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    """The controller of the BLAS libraries loaded with numpy (made once: it inspects the process)."""
    return ThreadpoolController()


def phantom_demographics(seed: int) -> tuple[str, int]:
    """The sex ('M' or 'F') and age in years (18..85) of the phantom ``seed``, without rendering it.

    Raises:
        ValueError: For a negative or non-integer seed.
    """
    patient_rng = _stream(_check_int("seed", seed, 0, None), _STREAM_PATIENT)
    sex = "F" if patient_rng.random() < 0.5 else "M"
    return sex, int(patient_rng.integers(18, 86))


def _display(attenuation: np.ndarray, reference: float, max_value: int, shape: tuple[int, int], dtype: type) -> np.ndarray:
    """Maps attenuation to rounded grey levels in [0, max_value] through the film curve: (H, W) of ``dtype``.

    ``attenuation`` is the (H, W) image (changed in place), or on the half-resolution grid its
    (ceil(H / 2), ceil(W / 2)) points: the film curve is applied to them, then interpolated to the pixels.
    """
    white = 1.0 / _film_curve(1.0)
    pixels = attenuation.shape == shape
    for chunk in row_chunks((slice(0, attenuation.shape[0]), slice(0, attenuation.shape[1]))):
        scaled = attenuation[chunk]
        scaled *= 1.0 / reference
        # The film curve is the identity below its knee: only the highlights need the tanh.
        over = scaled > _FILM_KNEE
        if over.any():
            scaled[over] = _film_curve(scaled[over])
        scaled *= white
        np.clip(scaled, 0.0, 1.0, out=scaled)
        scaled *= max_value
        if pixels:
            np.rint(scaled, out=scaled)
    if pixels:
        return attenuation.astype(dtype)
    # Interpolation stays within [0, max_value]: only the rounding is left to do on the pixels. The grid's border
    # points are repeated for the pixels outside its outermost points.
    points = np.pad(attenuation, 1, mode="edge")
    image = np.empty(shape, dtype=dtype)
    for chunk in row_chunks((slice(0, shape[0]), slice(0, shape[1]))):
        values = upsample2(points, (-1, -1), chunk)
        image[chunk] = np.rint(values, out=values)
    return image


def _film_curve(x: np.ndarray | float, knee: float = _FILM_KNEE) -> np.ndarray | float:
    """Identity below ``knee``, then a tanh shoulder: compresses highlights like film does."""
    span = 1.0 - knee
    return np.where(x <= knee, x, knee + span * np.tanh((x - knee) * (1.0 / span)))


def _check_int(name: str, value: object, low: int, high: int | None) -> int:
    """Validates an integer argument (bools rejected) and returns it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _stream(seed: int, stream: int) -> np.random.Generator:
    """Returns the independent generator number ``stream`` for ``seed``."""
    return np.random.default_rng([seed, stream])
