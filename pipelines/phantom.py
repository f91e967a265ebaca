"""Procedural chest X-ray phantom with lung/heart masks and optional radiological findings."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

_MIN_SIZE = 32
_MAX_SIZE = 8192
_SUPPORTED_BIT_DEPTHS = (8, 16)
# 16-bit phantoms hold 12 significant bits, like most DR/CR detectors (BitsStored=12 in DICOM).
_MAX_VALUE_16 = 4095

_NORMAL_CTR_RANGE = (0.36, 0.43)
_ENLARGED_CTR_RANGE = (0.55, 0.63)

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

_FLOAT = np.float32


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


@dataclass(frozen=True)
class _LungGeometry:
    """Shape parameters of one lung in body-frame units (see ``_BodyFrame``)."""

    side: int  # -1 image left (label 1), +1 image right (label 2)
    apex_y: float
    base_y: float  # height of the costophrenic angle
    lateral: float  # distance of the lateral wall from the midline
    medial: float  # distance of the mediastinal border from the midline
    apex_d: float  # distance of the apex from the midline
    dome: float  # how far the diaphragm dome rises above the costophrenic angle
    full_lateral_t: float  # fraction of lung height where the lateral wall reaches full width
    full_medial_t: float  # same for the mediastinal border


@dataclass(frozen=True)
class _BodyFrame:
    """Per-pixel body-frame coordinates: x is signed distance from the midline, y runs head->feet.

    Both are fractions of the image width/height, divided by the patient's scale and rotated by
    the patient's tilt, so anatomy is described once and positioned per seed.
    """

    x: np.ndarray  # (H, W) float32
    y: np.ndarray  # (H, W) float32
    px_per_unit: float  # pixels per body-frame unit, along the image width


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
    width = _check_int("size", size, _MIN_SIZE, _MAX_SIZE)
    height = width if height is None else _check_int("height", height, _MIN_SIZE, _MAX_SIZE)
    if isinstance(bit_depth, bool) or bit_depth not in _SUPPORTED_BIT_DEPTHS:
        raise ValueError(f"bit_depth must be one of {_SUPPORTED_BIT_DEPTHS}, got {bit_depth!r}")
    if findings is None:
        findings = Findings()
    if not isinstance(findings, Findings):
        raise ValueError(f"findings must be a Findings instance or None, got {type(findings).__name__}")

    patient_rng = _stream(seed, _STREAM_PATIENT)
    sex = "F" if patient_rng.random() < 0.5 else "M"
    age_years = int(patient_rng.integers(18, 86))

    anatomy_rng = _stream(seed, _STREAM_ANATOMY)
    frame = _body_frame(anatomy_rng, height, width)
    fx, fy = frame.x, frame.y
    thorax_half = float(anatomy_rng.uniform(0.31, 0.36)) * (0.96 if sex == "F" else 1.0)
    body, body_depth = _draw_body(anatomy_rng, fx, fy, thorax_half)
    lungs = _lung_geometries(anatomy_rng, thorax_half)
    bones = _draw_bones(anatomy_rng, fx, fy, thorax_half, lungs, age_years)
    breasts = _breast_shadows(anatomy_rng, fx, fy, thorax_half, lungs) if sex == "F" else None
    gastric_bubble = _gastric_bubble(anatomy_rng, fx, fy, lungs[1])
    wobble = _smooth_1d(anatomy_rng, fy, cells=6, amplitude=0.006)
    aortic_knob = float(anatomy_rng.uniform(0.012, 0.025)) * np.exp(-np.square((fy - 0.29) / 0.035))

    lung_shapes: list[np.ndarray] = []
    lung_air: list[np.ndarray] = []
    for geo in lungs:
        medial_bump = aortic_knob if geo.side > 0 else 0.0
        shape, air = _draw_lung(geo, geo.side * fx + wobble, fy, medial_bump)
        shape &= body
        lung_shapes.append(shape)
        lung_air.append(air * shape)

    thorax_cols = np.flatnonzero((lung_shapes[0] | lung_shapes[1]).any(axis=0))
    if thorax_cols.size == 0:
        raise ValueError(f"image too small to draw lungs: {height}x{width}")
    thorax_width_px = int(thorax_cols[-1] - thorax_cols[0] + 1)

    heart, heart_depth, ctr = _draw_heart(
        _stream(seed, _STREAM_HEART), fx, fy, lungs, thorax_width_px, frame.px_per_unit, findings.cardiomegaly
    )
    lung_masks = [shape & ~heart for shape in lung_shapes]

    # Additive attenuation model: all structures are summed as line integrals, then displayed.
    attenuation = np.where(body, 0.1 + 0.5 * np.sqrt(body_depth), 0.0).astype(_FLOAT)
    for air, lung in zip(lung_air, lung_masks, strict=True):
        attenuation -= 0.42 * air * lung
    attenuation += 0.03 * heart_depth
    attenuation += bones * body
    attenuation += _draw_trachea(fx, fy)
    if breasts is not None:
        attenuation += breasts * body
    attenuation -= gastric_bubble
    texture_rng = _stream(seed, _STREAM_TEXTURE)
    attenuation += _lung_markings(texture_rng, fx, fy, lungs, lung_masks)
    # Smooth exposure variation (heel effect, scatter) so absolute intensity is not a shortcut.
    attenuation += 0.03 * _smooth_2d(texture_rng, (height, width), (3, 3))
    stride_y, stride_x = max(1, height // 128), max(1, width // 128)
    reference = float(np.percentile(attenuation[::stride_y, ::stride_x], 99.7))

    mask = np.zeros((height, width), dtype=np.uint8)
    mask[lung_masks[0]] = 1
    mask[lung_masks[1]] = 2

    if findings.effusion:
        gain, fluid = _draw_effusion(_stream(seed, _STREAM_EFFUSION), fx, fy, lungs, lung_masks, lung_air)
        attenuation += gain
        mask[fluid] = 0
    if findings.opacity:
        attenuation += _draw_opacity(_stream(seed, _STREAM_OPACITY), fx, fy, mask, frame.px_per_unit)
    if findings.tb:
        attenuation += _draw_tb(_stream(seed, _STREAM_TB), fx, fy, mask, lungs, frame.px_per_unit)

    pixel_scale = width / 256.0
    attenuation = _gaussian_blur(attenuation, 0.6 * pixel_scale)
    noise_sigma = 0.5 * pixel_scale
    noise = _stream(seed, _STREAM_NOISE).standard_normal((height, width), dtype=_FLOAT)
    attenuation += (0.018 / _blurred_noise_std(noise_sigma)) * _gaussian_blur(noise, noise_sigma)

    # The anatomy's 99.7th percentile maps to white (the densest bone saturates, like a
    # windowed radiograph). It is taken before effusion/opacity/TB are drawn, so those findings
    # only ever add signal and never re-window the rest of the image.
    display = np.clip(_film_curve(attenuation * (1.0 / reference)) * (1.0 / _film_curve(1.0)), 0.0, 1.0)
    max_value = 255 if bit_depth == 8 else _MAX_VALUE_16
    image = np.rint(display * max_value).astype(np.uint8 if bit_depth == 8 else np.uint16)

    logger.debug("rendered phantom seed=%d %dx%d %s ctr=%.3f", seed, height, width, findings, ctr)
    return Phantom(
        image=image,
        mask=mask,
        body=body,
        heart=heart,
        findings=findings,
        sex=sex,
        age_years=age_years,
        cardiothoracic_ratio=ctr,
    )


def _film_curve(x: np.ndarray | float, knee: float = 0.7) -> np.ndarray | float:
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


def _body_frame(rng: np.random.Generator, height: int, width: int) -> _BodyFrame:
    """Builds body-frame coordinates with a random patient position, size and tilt."""
    center_x = 0.5 + rng.uniform(-0.03, 0.03)
    shift_y = rng.uniform(-0.03, 0.025)
    scale = rng.uniform(0.92, 1.04)
    tilt = math.radians(rng.uniform(-4.0, 4.0))
    cos_t, sin_t = math.cos(tilt) / scale, math.sin(tilt) / scale
    col = ((np.arange(width, dtype=np.float64) + 0.5) / width - center_x)[None, :]
    row = ((np.arange(height, dtype=np.float64) + 0.5) / height - 0.5)[:, None]
    x = (col * cos_t + row * sin_t).astype(_FLOAT)
    y = (0.5 + shift_y + row * cos_t - col * sin_t).astype(_FLOAT)
    return _BodyFrame(x=x, y=y, px_per_unit=width * scale)


def _draw_body(rng: np.random.Generator, fx: np.ndarray, fy: np.ndarray, thorax_half: float) -> tuple[np.ndarray, np.ndarray]:
    """Draws torso, sloping shoulders, neck and the upper arms.

    Returns:
        (body, depth): (H, W) bool outline and (H, W) float32 relative thickness in [0, 1].
    """
    torso_half = thorax_half + rng.uniform(0.05, 0.085)
    torso_exp = rng.uniform(2.4, 3.2)
    neck_half = rng.uniform(0.075, 0.095)
    neck_base = rng.uniform(0.07, 0.1)
    shoulder_slope = rng.uniform(0.3, 0.45)
    shoulder_half = thorax_half + rng.uniform(0.13, 0.17)
    arm_half = rng.uniform(0.05, 0.065)
    arm_drift = rng.uniform(0.0, 0.04)
    ax = np.abs(fx)

    torso_r = (ax / torso_half) ** torso_exp + (np.abs(fy - 0.66) / 0.6) ** torso_exp
    # Shoulder girdle: everything below a line sloping down from the neck, out to the shoulder tip.
    shoulder_top = neck_base + shoulder_slope * np.clip(ax - neck_half, 0.0, None)
    shoulder_in = np.clip((fy - shoulder_top) / 0.06, 0.0, 1.0) * np.clip((shoulder_half - ax) / 0.05, 0.0, 1.0)
    shoulder_in *= np.clip((0.42 - fy) / 0.1, 0.0, 1.0)
    tip_y = neck_base + shoulder_slope * (shoulder_half - neck_half)
    # Upper arm: a band hanging from a rounded deltoid cap at the shoulder tip.
    cap_y = tip_y + 0.5 * arm_half
    arm_center = shoulder_half - arm_half + arm_drift * np.clip(fy - cap_y, 0.0, None)
    above_cap = np.clip(cap_y - fy, 0.0, None)
    arm_in = np.clip(1.0 - (np.square(ax - arm_center) + np.square(above_cap)) * (1.0 / arm_half**2), 0.0, 1.0)
    neck_in = np.clip(1.0 - np.square(fx / neck_half), 0.0, 1.0) * (fy <= 0.3)
    depth = np.maximum(np.maximum(np.clip(1.0 - torso_r, 0.0, 1.0), 0.7 * shoulder_in), np.maximum(0.35 * arm_in, 0.5 * neck_in))
    body = (torso_r <= 1.0) | (shoulder_in > 0.0) | (arm_in > 0.0) | (neck_in > 0.0)
    return body, depth.astype(_FLOAT)


def _lung_geometries(rng: np.random.Generator, thorax_half: float) -> tuple[_LungGeometry, _LungGeometry]:
    """Draws the shape parameters of the right (image left) and left (image right) lungs."""
    right_base = rng.uniform(0.73, 0.81)
    # The left hemidiaphragm usually sits a little lower than the right one.
    left_base = right_base + rng.uniform(0.0, 0.035)
    geometries = []
    for side, base in ((-1, right_base), (1, left_base)):
        lateral = thorax_half * rng.uniform(0.97, 1.03)
        medial = rng.uniform(0.05, 0.07)
        geometries.append(
            _LungGeometry(
                side=side,
                apex_y=rng.uniform(0.13, 0.19),
                base_y=base,
                lateral=lateral,
                medial=medial,
                apex_d=medial + rng.uniform(0.38, 0.5) * (lateral - medial),
                dome=rng.uniform(0.05, 0.09),
                full_lateral_t=rng.uniform(0.5, 0.75),
                full_medial_t=rng.uniform(0.2, 0.35),
            )
        )
    return geometries[0], geometries[1]


def _quarter_ellipse(t: np.ndarray, full_t: float) -> np.ndarray:
    """Rises from 0 at t=0 to 1 at t=full_t along a quarter ellipse (rounded lung apex)."""
    s = np.clip(t * (1.0 / full_t), 0.0, 1.0)
    return np.sqrt(s * (2.0 - s))


def _diaphragm(geo: _LungGeometry, distance: np.ndarray) -> np.ndarray:
    """Height of the diaphragm under a lung: a dome, lowest at the costophrenic angle."""
    q = np.clip((distance - geo.medial) * (1.0 / (geo.lateral - geo.medial)), 0.0, 1.0)
    return geo.base_y - geo.dome * np.sqrt(4.0 * q * (1.0 - q))


def _draw_lung(
    geo: _LungGeometry, distance: np.ndarray, fy: np.ndarray, medial_bump: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Draws one lung.

    Args:
        geo: Lung shape parameters.
        distance: (H, W) distance from the midline towards this lung's side (negative across it).
        fy: (H, W) body-frame height.
        medial_bump: Extra medial border offset (aortic knob), scalar or (H, W).

    Returns:
        (shape, air): (H, W) bool lung shape before the heart is carved out, and (H, W) float32
        relative air thickness in [0, 1].
    """
    t = (fy - geo.apex_y) * (1.0 / (geo.base_y - geo.apex_y))
    # Lungs keep widening slightly down to the base, which is their widest part.
    widening = 0.96 + 0.04 * np.clip(t, 0.0, 1.0)
    lateral = geo.apex_d + (geo.lateral - geo.apex_d) * _quarter_ellipse(t, geo.full_lateral_t) * widening
    medial = geo.apex_d - (geo.apex_d - geo.medial) * _quarter_ellipse(t, geo.full_medial_t) + medial_bump
    floor = _diaphragm(geo, distance)
    shape = (t >= 0.0) & (distance >= medial) & (distance <= lateral) & (fy <= floor)
    half_width = np.maximum((lateral - medial) * 0.5, 1e-6)
    across = np.sqrt(np.clip((distance - medial) * (lateral - distance), 0.0, None)) / half_width
    vertical = np.sqrt(np.clip((floor - fy) * 20.0, 0.0, 1.0) * np.clip(t * 12.0, 0.0, 1.0))
    air = (0.35 + 0.65 * np.sqrt(np.clip(across, 0.0, 1.0))) * vertical
    return shape, air.astype(_FLOAT)


def _draw_heart(
    rng: np.random.Generator,
    fx: np.ndarray,
    fy: np.ndarray,
    lungs: tuple[_LungGeometry, _LungGeometry],
    thorax_width_px: int,
    px_per_unit: float,
    enlarged: bool,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Draws the heart as a tilted ellipse resting on the diaphragm, right of the image centre.

    The target cardiothoracic ratio is drawn from the normal or the enlarged range, then the
    ellipse is rescaled until the ratio measured on the drawn mask matches it.

    Returns:
        (heart, depth, ctr): (H, W) bool mask, (H, W) float32 thickness in [0, 1], measured ratio.
    """
    u_ctr = rng.random()
    low, high = _ENLARGED_CTR_RANGE if enlarged else _NORMAL_CTR_RANGE
    target = low + u_ctr * (high - low)
    angle = math.radians(rng.uniform(22.0, 40.0))
    aspect = rng.uniform(0.72, 0.85)
    offset_fraction = rng.uniform(0.2, 0.32)
    rest_fraction = rng.uniform(0.4, 0.6)
    floor_y = min(lungs[0].base_y, lungs[1].base_y) - 0.015

    cos_a, sin_a = math.cos(angle), math.sin(angle)
    width_factor = math.hypot(cos_a, aspect * sin_a)
    height_factor = math.hypot(sin_a, aspect * cos_a)
    half_width = target * thorax_width_px / px_per_unit / 2.0
    # Pixel quantisation and the patient tilt make the measured width drift from the analytic
    # one by a pixel or two, so the ellipse is rescaled a few times and the best drawing kept.
    # On tiny images one pixel is several percent of the ratio: drawings on the wrong side of
    # the normal (< 0.45) / enlarged (> 0.5) boundary are then only a last resort.
    best: tuple[tuple[bool, float], np.ndarray, np.ndarray, float] | None = None
    for _ in range(8):
        long_axis = half_width / width_factor
        short_axis = long_axis * aspect
        center_x = half_width * offset_fraction
        center_y = floor_y - rest_fraction * long_axis * height_factor
        dx, dy = fx - center_x, fy - center_y
        radius2 = np.square((dx * cos_a + dy * sin_a) * (1.0 / long_axis)) + np.square(
            (dy * cos_a - dx * sin_a) * (1.0 / short_axis)
        )
        heart = (radius2 <= 1.0) & (fy <= floor_y)
        cols = np.flatnonzero(heart.any(axis=0))
        if cols.size == 0:
            raise ValueError("image too small to draw the heart")
        ctr = (cols[-1] - cols[0] + 1) / thorax_width_px
        wrong_side = not (ctr > 0.5 if enlarged else ctr < 0.45)
        score = (wrong_side, abs(ctr - target))
        if best is None or score < best[0]:
            best = (score, heart, radius2, ctr)
        if not wrong_side and abs(ctr - target) < 0.004:
            break
        half_width *= target / ctr if abs(ctr - target) > 1e-9 else 1.0
    assert best is not None
    _, heart, radius2, ctr = best
    depth = np.sqrt(np.clip(1.0 - radius2, 0.0, 1.0)) * heart
    return heart, depth, float(ctr)


def _lung_markings(
    rng: np.random.Generator,
    fx: np.ndarray,
    fy: np.ndarray,
    lungs: tuple[_LungGeometry, _LungGeometry],
    lung_masks: list[np.ndarray],
) -> np.ndarray:
    """Hilar shadows and branching vessel-like streaks that fade towards the lung periphery."""
    out = np.zeros(fx.shape, dtype=_FLOAT)
    bend = _smooth_2d(rng, fx.shape, (7, 7))
    mottle = _smooth_2d(rng, fx.shape, (20, 20))
    for geo, lung in zip(lungs, lung_masks, strict=True):
        hilum_d = geo.medial + 0.025
        hilum_y = geo.apex_y + 0.45 * (geo.base_y - geo.apex_y)
        ddx, ddy = geo.side * fx - hilum_d, fy - hilum_y
        radius = np.sqrt(np.square(ddx) + np.square(ddy))
        # Bending the angle with a smooth field turns straight spokes into curving vessels.
        angle = np.arctan2(ddy, ddx) + 0.2 * bend
        # Capped so a rare large knot does not become a bone-bright vessel.
        streaks = np.clip(_smooth_1d(rng, angle * (1.0 / (2 * np.pi)) + 0.5, cells=110, amplitude=1.0), 0.0, 1.2)
        # Streaks start outside the hilar shadow, where converging spokes would look artificial.
        fade = np.clip((radius - 0.02) * 15.0, 0.0, 1.0) * np.exp(radius * (-1.0 / 0.14))
        hilum = np.exp(-np.square(ddx * (1.0 / 0.035)) - np.square(ddy * (1.0 / 0.07)))
        texture = (0.08 * streaks * streaks) * fade * np.clip(0.3 + 0.7 * mottle, 0.0, None) + 0.08 * hilum
        out += lung * (texture + 0.012 * mottle)
    return out


def _draw_bones(
    rng: np.random.Generator,
    fx: np.ndarray,
    fy: np.ndarray,
    thorax_half: float,
    lungs: tuple[_LungGeometry, _LungGeometry],
    age_years: int,
) -> np.ndarray:
    """Spine, posterior and anterior ribs, clavicles and humeral heads as additive attenuation."""
    density = 1.0 - 0.004 * max(0, age_years - 40)
    ax = np.abs(fx)
    out = np.zeros(fx.shape, dtype=_FLOAT)

    spine_half = rng.uniform(0.03, 0.04)
    spine_period = rng.uniform(0.045, 0.055)
    spine_phase = rng.uniform(0.0, 1.0)
    spine_profile = np.sqrt(np.clip(1.0 - np.square(fx * (1.0 / spine_half)), 0.0, None))
    vertebrae = np.square(np.cos((2 * np.pi / spine_period) * fy + 2 * np.pi * spine_phase))
    out += spine_profile * (0.08 + 0.05 * vertebrae)

    apex = min(lungs[0].apex_y, lungs[1].apex_y)
    base = max(lungs[0].base_y, lungs[1].base_y)
    rib_count = 10
    rib_top = apex - 0.02
    spacing = (base + 0.02 - rib_top) / rib_count
    rib_half = spacing * rng.uniform(0.2, 0.25)
    rise = rng.uniform(0.2, 0.3)
    droop = rng.uniform(1.3, 1.8)
    cage = thorax_half + 0.02
    d = np.clip(ax - 0.02, 0.0, None)
    d_rel = np.square(np.square(d * (1.0 / cage)))
    # Posterior ribs leave the spine going slightly up, arch, then droop at the lateral wall.
    posterior = (fy - rib_top - (droop * np.square(d) - rise * d + 0.04 * d_rel * d_rel)) * (1.0 / spacing)
    frac = posterior - np.floor(posterior) - 0.5
    bone = np.sqrt(np.clip(1.0 - np.square(frac * (spacing / rib_half)), 0.0, None))
    # Cortical rims make ribs read as tubes rather than bands.
    rim = np.clip(np.abs(frac) * (spacing / rib_half) * 1.6 - 0.6, 0.0, 1.0) * (bone > 0)
    inside = (posterior >= 0.0) & (posterior < rib_count) & (ax <= cage) & (ax >= 0.015)
    edge_fade = np.clip((cage - ax) * 50.0, 0.0, 1.0)
    out += (0.07 * bone + 0.05 * rim) * (inside * edge_fade)

    # Anterior ribs are fainter, run obliquely down towards the sternum, and their cartilage
    # (medial part) is invisible.
    anterior = (fy - apex - 0.05 - 0.5 * (cage - ax)) * (1.0 / spacing)
    frac_a = anterior - np.floor(anterior) - 0.5
    bone_a = np.sqrt(np.clip(1.0 - np.square(frac_a * (spacing / (0.8 * rib_half))), 0.0, None))
    inside_a = (anterior >= 0.0) & (anterior < 6) & (ax <= cage)
    out += 0.045 * bone_a * (inside_a * np.clip((ax - 0.1) * 16.0, 0.0, 1.0) * edge_fade)

    # Clavicles: S-shaped bars from the sternal notch up and out towards the shoulders.
    notch_y = apex + rng.uniform(-0.01, 0.02)
    clav_len = thorax_half * rng.uniform(0.9, 1.05)
    s = np.clip((ax - 0.03) * (1.0 / clav_len), 0.0, 1.0)
    clav_center = notch_y - 0.07 * s + 0.012 * np.sin((2 * np.pi) * s)
    clav_half = rng.uniform(0.011, 0.014) * (1.0 + 0.4 * s)
    clav = np.sqrt(np.clip(1.0 - np.square((fy - clav_center) / clav_half), 0.0, None))
    out += 0.16 * clav * ((ax >= 0.03) & (ax <= 0.03 + clav_len))

    # Humeral heads with the shafts going down.
    humerus_x = thorax_half + rng.uniform(0.1, 0.13)
    humerus_y = apex + rng.uniform(0.01, 0.04)
    humerus_r = rng.uniform(0.045, 0.06)
    head = 1.0 - (np.square(ax - humerus_x) + np.square(fy - humerus_y)) * (1.0 / humerus_r**2)
    shaft = (1.0 - np.square((ax - humerus_x - 0.01) * (1.0 / (0.55 * humerus_r)))) * (
        np.clip((humerus_y + 0.2 - fy) * 10.0, 0.0, 1.0) * (fy > humerus_y)
    )
    out += 0.2 * np.sqrt(np.clip(np.maximum(head, shaft), 0.0, None))
    return out * density


def _gastric_bubble(rng: np.random.Generator, fx: np.ndarray, fy: np.ndarray, left_lung: _LungGeometry) -> np.ndarray:
    """Stomach gas under the left hemidiaphragm (image right): (H, W) float32 attenuation deficit."""
    center_x = left_lung.medial + rng.uniform(0.35, 0.55) * (left_lung.lateral - left_lung.medial)
    top = left_lung.base_y - left_lung.dome + rng.uniform(0.02, 0.035)
    half_x, half_y = rng.uniform(0.045, 0.07), rng.uniform(0.025, 0.04)
    strength = rng.uniform(0.06, 0.14)
    r2 = np.square((fx - center_x) * (1.0 / half_x)) + np.square((fy - top - half_y) * (1.0 / half_y))
    # Gas rises: flat fluid level at the bottom of the bubble.
    return strength * np.sqrt(np.clip(1.0 - r2, 0.0, None)) * (fy <= top + 1.2 * half_y)


def _draw_trachea(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """Dark air column of the trachea down to the carina."""
    profile = np.sqrt(np.clip(1.0 - np.square(fx * (1.0 / 0.013)), 0.0, None))
    return -0.08 * profile * np.clip((0.33 - fy) * 33.0, 0.0, 1.0)


def _breast_shadows(
    rng: np.random.Generator,
    fx: np.ndarray,
    fy: np.ndarray,
    thorax_half: float,
    lungs: tuple[_LungGeometry, _LungGeometry],
) -> np.ndarray:
    """Soft-tissue density over the lower lateral lung fields (female phantoms)."""
    center_y = min(lungs[0].base_y, lungs[1].base_y) - rng.uniform(0.02, 0.06)
    center_x = thorax_half * rng.uniform(0.55, 0.7)
    radius = rng.uniform(0.12, 0.16)
    r2 = (np.square(np.abs(fx) - center_x) + np.square((fy - center_y) * 1.2)) * (1.0 / radius**2)
    return 0.07 * np.sqrt(np.clip(1.0 - r2, 0.0, None))


def _draw_effusion(
    rng: np.random.Generator,
    fx: np.ndarray,
    fy: np.ndarray,
    lungs: tuple[_LungGeometry, _LungGeometry],
    lung_masks: list[np.ndarray],
    lung_air: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Pleural fluid in one lung base, with a meniscus rising along the lateral chest wall.

    Returns:
        (gain, fluid): (H, W) float32 added attenuation, (H, W) bool region removed from the mask.
    """
    index = int(rng.integers(0, 2))
    geo = lungs[index]
    height_fraction = rng.uniform(0.14, 0.28)
    meniscus = rng.uniform(0.05, 0.09)
    level = geo.base_y - height_fraction * (geo.base_y - geo.apex_y)
    q = np.clip((geo.side * fx - geo.medial) * (1.0 / (geo.lateral - geo.medial)), 0.0, 1.0)
    surface = level - meniscus * q * np.square(q)
    lung = lung_masks[index]
    fluid = lung & (fy >= surface)
    # Fluid replaces the air below the surface and thins out into a haze just above it.
    ramp = np.clip((fy - surface) * 40.0 + 0.3, 0.0, 1.0)
    gain = lung * ramp * (0.42 * lung_air[index] + 0.03)
    return gain, fluid


def _pick_pixel(rng: np.random.Generator, candidates: np.ndarray) -> tuple[int, int]:
    """(row, col) of a random True pixel of ``candidates`` ((H, W) bool, non-empty)."""
    flat = np.flatnonzero(candidates)
    pick = int(flat[int(rng.integers(0, flat.size))])
    return divmod(pick, candidates.shape[1])


def _window(center: tuple[int, int], radius_px: float, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """Slices of the square window of half-size ``radius_px`` around ``center``, clipped to ``shape``."""
    r = int(math.ceil(radius_px)) + 1
    row, col = center
    return slice(max(0, row - r), min(shape[0], row + r + 1)), slice(max(0, col - r), min(shape[1], col + r + 1))


def _draw_opacity(rng: np.random.Generator, fx: np.ndarray, fy: np.ndarray, mask: np.ndarray, px_per_unit: float) -> np.ndarray:
    """Blotchy consolidation-like density in the middle/lower zone of one lung (inside the mask)."""
    out = np.zeros(fx.shape, dtype=_FLOAT)
    label = int(rng.integers(1, 3))
    radius = rng.uniform(0.08, 0.12)
    lung = mask == label
    if not lung.any():
        return out
    rows = np.flatnonzero(lung.any(axis=1))
    row_index = np.arange(mask.shape[0])[:, None]
    span = rows[-1] - rows[0]
    lower = lung & (row_index >= rows[0] + 0.4 * span) & (row_index <= rows[0] + 0.8 * span)
    center = _pick_pixel(rng, lower if lower.any() else lung)
    win = _window(center, 2.2 * radius * px_per_unit * 1.1, fx.shape)
    wx, wy = fx[win], fy[win]
    blotches = _smooth_2d(rng, wx.shape, (7, 7))
    r2 = (np.square(wx - fx[center]) + np.square(wy - fy[center])) * (1.0 / radius**2)
    # Flat-topped envelope: consolidation is a confluent region, not a soft Gaussian haze.
    envelope = np.exp(-np.square(r2))
    # Thresholding a smooth field gives patchy, confluent-looking airspace disease.
    patches = np.clip((blotches + 0.4) * 1.5, 0.0, 1.0)
    out[win] = 0.45 * envelope * (0.25 + 0.75 * patches) * lung[win]
    return out


def _draw_tb(
    rng: np.random.Generator,
    fx: np.ndarray,
    fy: np.ndarray,
    mask: np.ndarray,
    lungs: tuple[_LungGeometry, _LungGeometry],
    px_per_unit: float,
) -> np.ndarray:
    """Apical haze, small nodules and a thick-walled cavity in the upper zone of one lung."""
    out = np.zeros(fx.shape, dtype=_FLOAT)
    label = int(rng.integers(1, 3))
    geo = lungs[label - 1]
    lung = mask == label
    if not lung.any():
        return out
    zone_height = 0.38 * (geo.base_y - geo.apex_y)
    upper = lung & (fy <= geo.apex_y + zone_height)
    candidates = upper if upper.any() else lung
    rows = np.flatnonzero(candidates.any(axis=1))
    band = slice(rows[0], rows[-1] + 1)
    out[band] = 0.06 * np.clip(1.0 - (fy[band] - geo.apex_y) * (1.0 / zone_height), 0.0, 1.0)
    for _ in range(int(rng.integers(4, 10))):
        center = _pick_pixel(rng, candidates)
        r = rng.uniform(0.007, 0.016)
        strength = rng.uniform(0.18, 0.3)
        win = _window(center, 3.0 * r * px_per_unit * 1.1, fx.shape)
        r2 = (np.square(fx[win] - fx[center]) + np.square(fy[win] - fy[center])) * (1.0 / r**2)
        out[win] += strength * np.exp(-r2)
    center = _pick_pixel(rng, candidates)
    cavity_r = rng.uniform(0.018, 0.028)
    win = _window(center, 1.8 * cavity_r * px_per_unit * 1.1, fx.shape)
    ring = np.sqrt(np.square(fx[win] - fx[center]) + np.square(fy[win] - fy[center]))
    out[win] += 0.28 * np.exp(-np.square((ring - cavity_r) * (1.0 / (0.35 * cavity_r))))
    return out * lung


def _smooth_1d(rng: np.random.Generator, t: np.ndarray, cells: int, amplitude: float) -> np.ndarray:
    """Smooth random function evaluated at ``t`` (any shape; ~``cells`` bumps over [0, 1]).

    Returns:
        float32 array shaped like ``t``, roughly N(0, amplitude^2).
    """
    knots = rng.standard_normal(cells + 4)
    grid = np.linspace(-1.0, 2.0, 3 * 256)
    weights = _gaussian_weights(grid, cells)
    values = (weights @ knots) / np.sqrt(np.square(weights).sum(axis=1))
    return (amplitude * np.interp(t, grid, values)).astype(_FLOAT)


def _smooth_2d(rng: np.random.Generator, shape: tuple[int, ...], cells: tuple[int, int]) -> np.ndarray:
    """Smooth random float32 field of ``shape`` with about ``cells`` bumps per axis, unit variance."""
    knots = rng.standard_normal((cells[0] + 4, cells[1] + 4))
    rows = _gaussian_weights((np.arange(shape[0]) + 0.5) / shape[0], cells[0])
    cols = _gaussian_weights((np.arange(shape[1]) + 0.5) / shape[1], cells[1])
    rows /= rows.sum(axis=1, keepdims=True)
    cols /= cols.sum(axis=1, keepdims=True)
    field = rows @ knots @ cols.T
    return (field / max(float(field.std()), 1e-12)).astype(_FLOAT)


def _gaussian_weights(pos: np.ndarray, cells: int) -> np.ndarray:
    """(len(pos), cells + 4) Gaussian weights from knots spaced 1/cells apart to positions."""
    centers = (np.arange(cells + 4) - 1.5) / cells
    # Positions far outside [0, 1] are clamped so every row keeps non-zero weights.
    pos = np.clip(pos, centers[0], centers[-1])
    return np.exp(-0.5 * np.square((pos[:, None] - centers[None, :]) * (cells / 0.8)))


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised float32 1-D Gaussian kernel with radius ceil(3 sigma)."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * np.square(x / sigma))
    return (kernel / kernel.sum()).astype(_FLOAT)


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding; returns a new (H, W) float32 array."""
    out = image.astype(_FLOAT, copy=True)
    if sigma <= 0.0:
        return out
    kernel = _gaussian_kernel(sigma)
    radius = kernel.size // 2
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for k, weight in enumerate(kernel):
            acc += weight * (padded[k : k + n, :] if axis == 0 else padded[:, k : k + n])
        out = acc
    return out


def _blurred_noise_std(sigma: float) -> float:
    """Standard deviation of unit white noise after ``_gaussian_blur(sigma)``.

    The 2-D kernel is the outer product of the 1-D one, so its squared norm is (sum k^2)^2.
    """
    if sigma <= 0.0:
        return 1.0
    return float(np.square(_gaussian_kernel(sigma).astype(np.float64)).sum())
