"""The phantom's anatomy: body frame, body outline, lungs, heart, bones and lung markings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipelines.demo.fields import smooth_1d, smooth_2d

_NORMAL_CTR_RANGE = (0.36, 0.43)
_ENLARGED_CTR_RANGE = (0.55, 0.63)

_FLOAT = np.float32


@dataclass(frozen=True)
class LungGeometry:
    """Shape parameters of one lung in body-frame units (see ``BodyFrame``)."""

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
class BodyFrame:
    """Per-pixel body-frame coordinates: x is signed distance from the midline, y runs head->feet.

    Both are fractions of the image width/height, divided by the patient's scale and rotated by
    the patient's tilt, so anatomy is described once and positioned per seed.
    """

    x: np.ndarray  # (H, W) float32
    y: np.ndarray  # (H, W) float32
    px_per_unit: float  # pixels per body-frame unit, along the image width


def body_frame(rng: np.random.Generator, height: int, width: int) -> BodyFrame:
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
    return BodyFrame(x=x, y=y, px_per_unit=width * scale)


def draw_body(rng: np.random.Generator, fx: np.ndarray, fy: np.ndarray, thorax_half: float) -> tuple[np.ndarray, np.ndarray]:
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


def lung_geometries(rng: np.random.Generator, thorax_half: float) -> tuple[LungGeometry, LungGeometry]:
    """Draws the shape parameters of the right (image left) and left (image right) lungs."""
    right_base = rng.uniform(0.73, 0.81)
    # The left hemidiaphragm usually sits a little lower than the right one.
    left_base = right_base + rng.uniform(0.0, 0.035)
    geometries = []
    for side, base in ((-1, right_base), (1, left_base)):
        lateral = thorax_half * rng.uniform(0.97, 1.03)
        medial = rng.uniform(0.05, 0.07)
        geometries.append(
            LungGeometry(
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


def _diaphragm(geo: LungGeometry, distance: np.ndarray) -> np.ndarray:
    """Height of the diaphragm under a lung: a dome, lowest at the costophrenic angle."""
    q = np.clip((distance - geo.medial) * (1.0 / (geo.lateral - geo.medial)), 0.0, 1.0)
    return geo.base_y - geo.dome * np.sqrt(4.0 * q * (1.0 - q))


def draw_lung(
    geo: LungGeometry, distance: np.ndarray, fy: np.ndarray, medial_bump: np.ndarray | float
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


def draw_heart(
    rng: np.random.Generator,
    fx: np.ndarray,
    fy: np.ndarray,
    lungs: tuple[LungGeometry, LungGeometry],
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


def lung_markings(
    rng: np.random.Generator,
    fx: np.ndarray,
    fy: np.ndarray,
    lungs: tuple[LungGeometry, LungGeometry],
    lung_masks: list[np.ndarray],
) -> np.ndarray:
    """Hilar shadows and branching vessel-like streaks that fade towards the lung periphery."""
    out = np.zeros(fx.shape, dtype=_FLOAT)
    bend = smooth_2d(rng, fx.shape, (7, 7))
    mottle = smooth_2d(rng, fx.shape, (20, 20))
    for geo, lung in zip(lungs, lung_masks, strict=True):
        hilum_d = geo.medial + 0.025
        hilum_y = geo.apex_y + 0.45 * (geo.base_y - geo.apex_y)
        ddx, ddy = geo.side * fx - hilum_d, fy - hilum_y
        radius = np.sqrt(np.square(ddx) + np.square(ddy))
        # Bending the angle with a smooth field turns straight spokes into curving vessels.
        angle = np.arctan2(ddy, ddx) + 0.2 * bend
        # Capped so a rare large knot does not become a bone-bright vessel.
        streaks = np.clip(smooth_1d(rng, angle * (1.0 / (2 * np.pi)) + 0.5, cells=110, amplitude=1.0), 0.0, 1.2)
        # Streaks start outside the hilar shadow, where converging spokes would look artificial.
        fade = np.clip((radius - 0.02) * 15.0, 0.0, 1.0) * np.exp(radius * (-1.0 / 0.14))
        hilum = np.exp(-np.square(ddx * (1.0 / 0.035)) - np.square(ddy * (1.0 / 0.07)))
        texture = (0.08 * streaks * streaks) * fade * np.clip(0.3 + 0.7 * mottle, 0.0, None) + 0.08 * hilum
        out += lung * (texture + 0.012 * mottle)
    return out


def draw_bones(
    rng: np.random.Generator,
    fx: np.ndarray,
    fy: np.ndarray,
    thorax_half: float,
    lungs: tuple[LungGeometry, LungGeometry],
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


def draw_gastric_bubble(rng: np.random.Generator, fx: np.ndarray, fy: np.ndarray, left_lung: LungGeometry) -> np.ndarray:
    """Stomach gas under the left hemidiaphragm (image right): (H, W) float32 attenuation deficit."""
    center_x = left_lung.medial + rng.uniform(0.35, 0.55) * (left_lung.lateral - left_lung.medial)
    top = left_lung.base_y - left_lung.dome + rng.uniform(0.02, 0.035)
    half_x, half_y = rng.uniform(0.045, 0.07), rng.uniform(0.025, 0.04)
    strength = rng.uniform(0.06, 0.14)
    r2 = np.square((fx - center_x) * (1.0 / half_x)) + np.square((fy - top - half_y) * (1.0 / half_y))
    # Gas rises: flat fluid level at the bottom of the bubble.
    return strength * np.sqrt(np.clip(1.0 - r2, 0.0, None)) * (fy <= top + 1.2 * half_y)


def draw_trachea(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """Dark air column of the trachea down to the carina."""
    profile = np.sqrt(np.clip(1.0 - np.square(fx * (1.0 / 0.013)), 0.0, None))
    return -0.08 * profile * np.clip((0.33 - fy) * 33.0, 0.0, 1.0)


def breast_shadows(
    rng: np.random.Generator,
    fx: np.ndarray,
    fy: np.ndarray,
    thorax_half: float,
    lungs: tuple[LungGeometry, LungGeometry],
) -> np.ndarray:
    """Soft-tissue density over the lower lateral lung fields (female phantoms)."""
    center_y = min(lungs[0].base_y, lungs[1].base_y) - rng.uniform(0.02, 0.06)
    center_x = thorax_half * rng.uniform(0.55, 0.7)
    radius = rng.uniform(0.12, 0.16)
    r2 = (np.square(np.abs(fx) - center_x) + np.square((fy - center_y) * 1.2)) * (1.0 / radius**2)
    return 0.07 * np.sqrt(np.clip(1.0 - r2, 0.0, None))
