"""The phantom's soft-tissue anatomy: body outline, lungs, heart, trachea, stomach gas and lung markings."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipelines.demo.canvas import Canvas
from pipelines.demo.fields import SmoothCurve
from pipelines.demo.frame import (
    FLOAT,
    BodyFrame,
    Field,
    Grid,
    Patch,
    Window,
    block_window,
    evaluate,
    relative,
    row_chunks,
    side_windows,
)

_NORMAL_CTR_RANGE = (0.36, 0.43)
_ENLARGED_CTR_RANGE = (0.55, 0.63)


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


@dataclass
class Lung:
    """One drawn lung, over the window that holds it.

    Attributes:
        window: The pixels the lung can reach; everything outside is not lung.
        shape: Window-sized bool lung shape inside the body, before the heart is carved out.
        air: Window-sized float32 air thickness in [0, 1], zero outside ``shape`` (on the half-resolution grid,
            computed when first indexed).
        mask: Window-sized bool lung mask (``shape`` minus the heart), set by the renderer.
        field: The lung's terms (its edge term, and its air thickness before the mask, ``Field``).
    """

    window: Window
    shape: np.ndarray
    air: np.ndarray
    mask: np.ndarray
    field: Field


@dataclass(frozen=True)
class Heart:
    """The drawn heart.

    Attributes:
        mask: (H, W) bool silhouette.
        window: The pixels the silhouette can reach.
        depth: Window-sized float32 thickness in [0, 1].
        ctr: Cardiothoracic ratio measured on the drawn masks.
    """

    mask: np.ndarray
    window: Window
    depth: np.ndarray
    ctr: float


def draw_body(rng: np.random.Generator, frame: BodyFrame, thorax_half: float) -> tuple[np.ndarray, np.ndarray]:
    """Draws torso, sloping shoulders, neck and the upper arms.

    Returns:
        (body, depth): (H, W) bool outline, and the float32 relative thickness in [0, 1] on the canvas's grid
        (``Canvas.shape``): at each pixel, or on the half-resolution grid at each 2x2 block's centre.
    """
    torso_half = thorax_half + rng.uniform(0.05, 0.085)
    torso_exp = rng.uniform(2.4, 3.2)
    neck_half = rng.uniform(0.075, 0.095)
    neck_base = rng.uniform(0.07, 0.1)
    shoulder_slope = rng.uniform(0.3, 0.45)
    shoulder_half = thorax_half + rng.uniform(0.13, 0.17)
    arm_half = rng.uniform(0.05, 0.065)
    arm_drift = rng.uniform(0.0, 0.04)
    body = np.zeros(frame.shape, dtype=bool)
    depth = np.zeros(Canvas.shape(frame), dtype=FLOAT)

    # Each part is drawn in the window where it can be non-zero and merged with max/or, which
    # do not mind a pixel drawn twice.
    def torso(grid: Grid) -> np.ndarray:
        torso_r = _power(np.abs(grid.x) / torso_half, torso_exp)
        torso_r += _power(np.abs(grid.y - 0.66) / 0.6, torso_exp)
        return torso_r

    window = frame.window((-torso_half, torso_half), (0.06, 1.26))
    torso_r_of = Field(frame, window, torso)
    if frame.coarse:
        body[window] = torso_r_of.compare(window, None, np.less_equal, 1.0)
        blocks = block_window(window)
        if blocks[0].start < blocks[0].stop and blocks[1].start < blocks[1].stop:
            depth[blocks] = np.clip(1.0 - torso_r_of.at_blocks(blocks), 0.0, 1.0)
    else:
        for chunk in row_chunks(window):
            torso_r = torso_r_of(chunk)
            np.less_equal(torso_r, 1.0, out=body[chunk])
            # Into a scratch array first: a ufunc writing into a strided window of the image is three times slower.
            depth[chunk] = np.clip(1.0 - torso_r, 0.0, 1.0)

    # The other parts give a signed distance-like term, positive exactly inside the part (a continuous term: its
    # sign is the part's outline wherever it was evaluated), and the part's thickness in [0, 1].
    # Shoulder girdle: everything below a line sloping down from the neck, out to the shoulder tip
    # (which lies below the neck's base).
    def shoulder(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        ax, fy = np.abs(grid.x), grid.y
        shoulder_top = neck_base + shoulder_slope * np.clip(ax - neck_half, 0.0, None)
        below_top, inside_tip, above_base = (fy - shoulder_top) / 0.06, (shoulder_half - ax) / 0.05, (0.42 - fy) / 0.1
        shoulder_in = np.clip(below_top, 0.0, 1.0) * np.clip(inside_tip, 0.0, 1.0)
        shoulder_in *= np.clip(above_base, 0.0, 1.0)
        return np.minimum(below_top, np.minimum(inside_tip, above_base)), shoulder_in

    _merge(frame, frame.window((-shoulder_half, shoulder_half), (neck_base, 0.42)), shoulder, 0.7, body, depth)

    # Upper arm: a band hanging from a rounded deltoid cap at the shoulder tip.
    tip_y = neck_base + shoulder_slope * (shoulder_half - neck_half)
    cap_y = tip_y + 0.5 * arm_half
    # The arm drifts outwards as it hangs, at most down to the bottom of the image.
    reach = shoulder_half + arm_drift * max(0.0, frame.y_extent[1] - cap_y)

    def arm(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        arm_center = shoulder_half - arm_half + arm_drift * np.clip(grid.y - cap_y, 0.0, None)
        above_cap = np.clip(cap_y - grid.y, 0.0, None)
        distance2 = np.square(np.abs(grid.x) - arm_center) + np.square(above_cap)
        arm_in = 1.0 - distance2 * (1.0 / arm_half**2)
        return arm_in, np.clip(arm_in, 0.0, 1.0)

    for win in side_windows(frame, (shoulder_half - 2 * arm_half, reach), (cap_y - arm_half, math.inf)):
        _merge(frame, win, arm, 0.35, body, depth)

    def neck(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        neck_in = np.where(grid.y <= 0.3, 1.0 - np.square(grid.x / neck_half), -1.0)
        return neck_in, np.clip(neck_in, 0.0, 1.0)

    _merge(frame, frame.window((-neck_half, neck_half), (-math.inf, 0.3)), neck, 0.5, body, depth)
    return body, depth


def _merge(
    frame: BodyFrame,
    window: Window,
    part: Callable[[Grid], tuple[np.ndarray, np.ndarray]],
    thickness: float,
    body: np.ndarray,
    depth: np.ndarray,
) -> None:
    """Merges a body part into ``body`` (or) and ``depth`` (max of its thickness times ``thickness``, on the canvas's grid).

    ``part`` gives a term positive exactly inside the part, and the part's thickness in [0, 1].
    """
    part_of = Field(frame, window, part)
    if frame.coarse:
        # The outline at the pixels, the thickness at the blocks' centres (``depth`` is on the canvas's grid).
        body[window] |= part_of.compare(window, 0, np.greater, 0.0)
        blocks = block_window(window)
        if blocks[0].start < blocks[0].stop and blocks[1].start < blocks[1].stop:
            np.maximum(depth[blocks], thickness * part_of.at_blocks(blocks)[1], out=depth[blocks])
        return
    for chunk in row_chunks(window):
        inside, part_thickness = part_of(chunk)
        np.maximum(depth[chunk], thickness * part_thickness, out=depth[chunk])
        body[chunk] |= inside > 0.0


def _power(base: np.ndarray, exponent: float) -> np.ndarray:
    """``base ** exponent`` for non-negative float32 ``base``, as exp(exponent * log(base)).

    numpy's float32 power is a scalar loop; its exp and log are vectorised, three times faster together.
    """
    with np.errstate(divide="ignore"):
        out = np.log(base)
    out *= exponent
    return np.exp(out, out=out)


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


def draw_lung(geo: LungGeometry, frame: BodyFrame, body: np.ndarray, wobble: SmoothCurve, aortic_knob: float | None) -> Lung:
    """Draws one lung.

    Args:
        geo: Lung shape parameters.
        frame: The body frame.
        body: (H, W) bool body outline; the lung is clipped to it.
        wobble: Smooth offset of the lung's distance from the midline, a function of height.
        aortic_knob: Height of the aortic knob bulging into the medial border, or None for no knob.

    Returns:
        The lung (its mask still equal to its shape).
    """
    # The lung lies between its apex and base, and its borders between the medial and lateral
    # distances (shifted by the wobble at most by the wobble's bound).
    slack = wobble.bound
    near, far = geo.medial - slack, geo.lateral + slack
    x_range = (near, far) if geo.side > 0 else (-far, -near)
    win = frame.window(x_range, (geo.apex_y, geo.base_y))

    def lung(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        fy = grid.y
        distance = geo.side * grid.x + wobble(fy)
        medial_bump = aortic_knob * np.exp(-np.square((fy - 0.29) / 0.035)) if aortic_knob is not None else 0.0
        t = (fy - geo.apex_y) * (1.0 / (geo.base_y - geo.apex_y))
        # Lungs keep widening slightly down to the base, which is their widest part.
        widening = 0.96 + 0.04 * np.clip(t, 0.0, 1.0)
        lateral = geo.apex_d + (geo.lateral - geo.apex_d) * _quarter_ellipse(t, geo.full_lateral_t) * widening
        medial = geo.apex_d - (geo.apex_d - geo.medial) * _quarter_ellipse(t, geo.full_medial_t) + medial_bump
        floor = _diaphragm(geo, distance)
        # Inside where all four are >= 0: below the apex, between the borders, above the diaphragm (in float32,
        # a >= b exactly when a - b >= 0). Their minimum is continuous, so it can be interpolated.
        edge = np.minimum(np.minimum(t, distance - medial), np.minimum(lateral - distance, floor - fy))
        half_width = np.maximum((lateral - medial) * 0.5, 1e-6)
        across = np.sqrt(np.clip((distance - medial) * (lateral - distance), 0.0, None)) / half_width
        vertical = np.sqrt(np.clip((floor - fy) * 20.0, 0.0, 1.0) * np.clip(t * 12.0, 0.0, 1.0))
        return edge, (0.35 + 0.65 * np.sqrt(np.clip(across, 0.0, 1.0))) * vertical

    lung_of = Field(frame, win, lung)
    if frame.coarse:
        # The air reaches the image from the grid (``Canvas.add_blocks``): only the effusion reads it here.
        shape = lung_of.compare(win, 0, np.greater_equal, 0.0)
        shape &= body[win]
        return Lung(window=win, shape=shape, air=_LazyAir(lung_of, win, shape), mask=shape, field=lung_of)
    shape = np.empty((win[0].stop - win[0].start, win[1].stop - win[1].start), dtype=bool)
    air = np.empty(shape.shape, dtype=FLOAT)
    for chunk in row_chunks(win):
        part = relative(chunk, win)
        edge, thickness = lung_of(chunk)
        inside = edge >= 0.0
        inside &= body[chunk]
        shape[part] = inside
        air[part] = thickness * inside
    return Lung(window=win, shape=shape, air=air, mask=shape, field=lung_of)


class _LazyAir:
    """A lung's window-sized air thickness, interpolated from the half-resolution grid when first read."""

    def __init__(self, lung_of: Field, window: Window, shape: np.ndarray) -> None:
        self._lung_of, self._window, self._shape = lung_of, window, shape
        self._air: np.ndarray | None = None

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        if self._air is None:
            self._air = np.empty(self._shape.shape, dtype=FLOAT)
            for chunk in row_chunks(self._window):
                part = relative(chunk, self._window)
                self._air[part] = self._lung_of.term(chunk, 1) * self._shape[part]
        return self._air[key]


def draw_heart(
    rng: np.random.Generator,
    frame: BodyFrame,
    lungs: tuple[LungGeometry, LungGeometry],
    thorax_width_px: int,
    enlarged: bool,
) -> Heart:
    """Draws the heart as a tilted ellipse resting on the diaphragm, right of the image centre.

    The target cardiothoracic ratio is drawn from the normal or the enlarged range, then the
    ellipse is rescaled until the ratio measured on the drawn mask matches it.
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
    half_width = target * thorax_width_px / frame.px_per_unit / 2.0
    # Pixel quantisation and the patient tilt make the measured width drift from the analytic
    # one by a pixel or two, so the ellipse is rescaled a few times and the best drawing kept.
    # On tiny images one pixel is several percent of the ratio: drawings on the wrong side of
    # the normal (< 0.45) / enlarged (> 0.5) boundary are then only a last resort.
    best: tuple[tuple[bool, float], Window, np.ndarray, np.ndarray, float] | None = None
    for _ in range(8):
        long_axis = half_width / width_factor
        short_axis = long_axis * aspect
        center_x = half_width * offset_fraction
        center_y = floor_y - rest_fraction * long_axis * height_factor
        # The tilted ellipse's half extents along x and y bound its window.
        extent_x = math.hypot(long_axis * cos_a, short_axis * sin_a)
        extent_y = math.hypot(long_axis * sin_a, short_axis * cos_a)
        win = frame.window((center_x - extent_x, center_x + extent_x), (center_y - extent_y, floor_y))
        radius2 = np.empty((win[0].stop - win[0].start, win[1].stop - win[1].start), dtype=FLOAT)
        heart = np.empty(radius2.shape, dtype=bool)
        for chunk in row_chunks(win):
            dx, dy = frame.x[chunk] - center_x, frame.y[chunk] - center_y
            part = relative(chunk, win)
            radius2[part] = np.square((dx * cos_a + dy * sin_a) * (1.0 / long_axis)) + np.square(
                (dy * cos_a - dx * sin_a) * (1.0 / short_axis)
            )
            heart[part] = (radius2[part] <= 1.0) & (frame.y[chunk] <= floor_y)
        cols = np.flatnonzero(heart.any(axis=0))
        if cols.size == 0:
            raise ValueError("image too small to draw the heart")
        ctr = (cols[-1] - cols[0] + 1) / thorax_width_px
        wrong_side = not (ctr > 0.5 if enlarged else ctr < 0.45)
        score = (wrong_side, abs(ctr - target))
        if best is None or score < best[0]:
            best = (score, win, heart, radius2, ctr)
        if not wrong_side and abs(ctr - target) < 0.004:
            break
        half_width *= target / ctr if abs(ctr - target) > 1e-9 else 1.0
    assert best is not None
    _, win, heart, radius2, ctr = best
    mask = np.zeros(frame.shape, dtype=bool)
    mask[win] = heart
    depth = np.sqrt(np.clip(1.0 - radius2, 0.0, 1.0)) * heart
    return Heart(mask=mask, window=win, depth=depth, ctr=float(ctr))


def draw_gastric_bubble(rng: np.random.Generator, frame: BodyFrame, left_lung: LungGeometry) -> Patch:
    """Stomach gas under the left hemidiaphragm (image right): float32 attenuation deficit."""
    center_x = left_lung.medial + rng.uniform(0.35, 0.55) * (left_lung.lateral - left_lung.medial)
    top = left_lung.base_y - left_lung.dome + rng.uniform(0.02, 0.035)
    half_x, half_y = rng.uniform(0.045, 0.07), rng.uniform(0.025, 0.04)
    strength = rng.uniform(0.06, 0.14)
    win = frame.window((center_x - half_x, center_x + half_x), (top, top + 1.2 * half_y))
    fx, fy = frame.x[win], frame.y[win]
    r2 = np.square((fx - center_x) * (1.0 / half_x)) + np.square((fy - top - half_y) * (1.0 / half_y))
    # Gas rises: flat fluid level at the bottom of the bubble.
    return win, strength * np.sqrt(np.clip(1.0 - r2, 0.0, None)) * (fy <= top + 1.2 * half_y)


def draw_trachea(frame: BodyFrame) -> Patch:
    """Dark air column of the trachea down to the carina."""
    win = frame.window((-0.013, 0.013), (-math.inf, 0.33))
    fx, fy = frame.x[win], frame.y[win]
    profile = np.sqrt(np.clip(1.0 - np.square(fx * (1.0 / 0.013)), 0.0, None))
    return win, -0.08 * profile * np.clip((0.33 - fy) * 33.0, 0.0, 1.0)


def draw_breasts(
    rng: np.random.Generator,
    frame: BodyFrame,
    thorax_half: float,
    lungs: tuple[LungGeometry, LungGeometry],
    body: np.ndarray,
) -> list[Patch]:
    """Soft-tissue density over the lower lateral lung fields, inside the body (female phantoms)."""
    center_y = min(lungs[0].base_y, lungs[1].base_y) - rng.uniform(0.02, 0.06)
    center_x = thorax_half * rng.uniform(0.55, 0.7)
    radius = rng.uniform(0.12, 0.16)
    patches = []
    y_range = (center_y - radius / 1.2, center_y + radius / 1.2)

    def breast(chunk: Window) -> np.ndarray:
        fx, fy = frame.x[chunk], frame.y[chunk]
        r2 = (np.square(np.abs(fx) - center_x) + np.square((fy - center_y) * 1.2)) * (1.0 / radius**2)
        return 0.07 * np.sqrt(np.clip(1.0 - r2, 0.0, None)) * body[chunk]

    for win in side_windows(frame, (max(0.0, center_x - radius), center_x + radius), y_range):
        patches.append((win, evaluate(win, breast)))
    return patches
