"""The phantom's skeleton: spine, posterior and anterior ribs, clavicles and humeri."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipelines.demo.anatomy import LungGeometry
from pipelines.demo.canvas import Canvas
from pipelines.demo.frame import BodyFrame, Grid, Window, side_windows

_RIB_COUNT = 10
_ANTERIOR_RIB_COUNT = 6


@dataclass(frozen=True)
class Skeleton:
    """The drawn parameters of the bones, in body-frame units (see ``draw_skeleton``)."""

    density: float
    spine_half: float
    spine_period: float
    spine_phase: float
    apex: float
    rib_top: float
    spacing: float
    rib_half: float
    rise: float
    droop: float
    cage: float
    notch_y: float
    clav_len: float
    clav_base_half: float
    humerus_x: float
    humerus_y: float
    humerus_r: float


def draw_skeleton(
    rng: np.random.Generator, thorax_half: float, lungs: tuple[LungGeometry, LungGeometry], age_years: int
) -> Skeleton:
    """Draws the spine, ribs, clavicles and humeri of a patient; ``add_bones`` draws them into the image."""
    apex = min(lungs[0].apex_y, lungs[1].apex_y)
    base = max(lungs[0].base_y, lungs[1].base_y)
    rib_top = apex - 0.02
    spacing = (base + 0.02 - rib_top) / _RIB_COUNT
    spine_half = rng.uniform(0.03, 0.04)
    spine_period = rng.uniform(0.045, 0.055)
    spine_phase = rng.uniform(0.0, 1.0)
    rib_half = spacing * rng.uniform(0.2, 0.25)
    rise = rng.uniform(0.2, 0.3)
    droop = rng.uniform(1.3, 1.8)
    return Skeleton(
        density=1.0 - 0.004 * max(0, age_years - 40),
        spine_half=spine_half,
        spine_period=spine_period,
        spine_phase=spine_phase,
        apex=apex,
        rib_top=rib_top,
        spacing=spacing,
        rib_half=rib_half,
        rise=rise,
        droop=droop,
        cage=thorax_half + 0.02,
        notch_y=apex + rng.uniform(-0.01, 0.02),
        clav_len=thorax_half * rng.uniform(0.9, 1.05),
        clav_base_half=rng.uniform(0.011, 0.014),
        humerus_x=thorax_half + rng.uniform(0.1, 0.13),
        humerus_y=apex + rng.uniform(0.01, 0.04),
        humerus_r=rng.uniform(0.045, 0.06),
    )


def add_bones(frame: BodyFrame, bones: Skeleton, body: np.ndarray, canvas: Canvas) -> None:
    """Adds the bones' attenuation inside the body: spine, posterior and anterior ribs, clavicles, humeral heads.

    Every bone is drawn only in the window where it can be non-zero.
    """

    def add(window: Window, bone: Callable[[Grid], np.ndarray]) -> None:
        canvas.add(window, bone, scale=bones.density, mask=body)

    def spine(grid: Grid) -> np.ndarray:
        spine_profile = np.sqrt(np.clip(1.0 - np.square(grid.x * (1.0 / bones.spine_half)), 0.0, None))
        vertebrae = np.square(np.cos((2 * np.pi / bones.spine_period) * grid.y + 2 * np.pi * bones.spine_phase))
        return spine_profile * (0.08 + 0.05 * vertebrae)

    add(frame.window((-bones.spine_half, bones.spine_half)), spine)
    add(_posterior_window(frame, bones), functools.partial(_posterior_ribs, bones=bones))
    for win in _anterior_windows(frame, bones):
        add(win, functools.partial(_anterior_ribs, bones=bones))

    # Clavicles: S-shaped bars from the sternal notch up and out towards the shoulders.
    notch_y, clav_len = bones.notch_y, bones.clav_len

    def clavicle(grid: Grid) -> np.ndarray:
        ax = np.abs(grid.x)
        s = np.clip((ax - 0.03) * (1.0 / clav_len), 0.0, 1.0)
        clav_center = notch_y - 0.07 * s + 0.012 * np.sin((2 * np.pi) * s)
        clav_half = bones.clav_base_half * (1.0 + 0.4 * s)
        clav = np.sqrt(np.clip(1.0 - np.square((grid.y - clav_center) / clav_half), 0.0, None))
        return 0.16 * clav * ((ax >= 0.03) & (ax <= 0.03 + clav_len))

    # The bar's centre line stays within [notch - 0.082, notch + 0.012]; its half width is at most 1.4x the base.
    y_range = (notch_y - 0.082 - 1.4 * bones.clav_base_half, notch_y + 0.012 + 1.4 * bones.clav_base_half)
    for win in side_windows(frame, (0.03, 0.03 + clav_len), y_range):
        add(win, clavicle)

    # Humeral heads with the shafts going down; the shaft (0.55 r wide, 0.01 outwards) lies within the head's width.
    humerus_x, humerus_y, humerus_r = bones.humerus_x, bones.humerus_y, bones.humerus_r

    def humerus(grid: Grid) -> np.ndarray:
        ax, fy = np.abs(grid.x), grid.y
        head = 1.0 - (np.square(ax - humerus_x) + np.square(fy - humerus_y)) * (1.0 / humerus_r**2)
        shaft = (1.0 - np.square((ax - humerus_x - 0.01) * (1.0 / (0.55 * humerus_r)))) * (
            np.clip((humerus_y + 0.2 - fy) * 10.0, 0.0, 1.0) * (fy > humerus_y)
        )
        return 0.2 * np.sqrt(np.clip(np.maximum(head, shaft), 0.0, None))

    y_range = (humerus_y - humerus_r, humerus_y + 0.2)
    for win in side_windows(frame, (humerus_x - humerus_r, humerus_x + humerus_r), y_range):
        add(win, humerus)


def _rib_curve(d: np.ndarray, rise: float, droop: float, cage: float) -> np.ndarray:
    """Height of a posterior rib above its start, at distance ``d`` from the spine's edge."""
    d_rel = np.square(np.square(d * (1.0 / cage)))
    return droop * np.square(d) - rise * d + 0.04 * d_rel * d_rel


def _posterior_window(frame: BodyFrame, bones: Skeleton) -> Window:
    """The pixels the posterior ribs can reach."""
    rib_top, spacing, cage = bones.rib_top, bones.spacing, bones.cage
    # Rib n lies at rib_top + n * spacing + curve(d), d in [0, cage - 0.02]: the curve's range bounds the window.
    curve = _rib_curve(np.linspace(0.0, max(cage - 0.02, 0.0), 2049), bones.rise, bones.droop, cage)
    y_range = (rib_top + float(curve.min()) - 0.001, rib_top + _RIB_COUNT * spacing + float(curve.max()) + 0.001)
    return frame.window((-cage, cage), y_range)


def _posterior_ribs(grid: Grid, bones: Skeleton) -> np.ndarray:
    """The posterior ribs: they leave the spine going slightly up, arch, then droop at the lateral wall."""
    rib_top, spacing, rib_half, cage = bones.rib_top, bones.spacing, bones.rib_half, bones.cage
    ax = np.abs(grid.x)
    d = np.clip(ax - 0.02, 0.0, None)
    posterior = (grid.y - rib_top - _rib_curve(d, bones.rise, bones.droop, cage)) * (1.0 / spacing)
    frac = posterior - np.floor(posterior) - 0.5
    bone = np.sqrt(np.clip(1.0 - np.square(frac * (spacing / rib_half)), 0.0, None))
    # Cortical rims make ribs read as tubes rather than bands.
    rim = np.clip(np.abs(frac) * (spacing / rib_half) * 1.6 - 0.6, 0.0, 1.0) * (bone > 0)
    inside = (posterior >= 0.0) & (posterior < _RIB_COUNT) & (ax <= cage) & (ax >= 0.015)
    edge_fade = np.clip((cage - ax) * 50.0, 0.0, 1.0)
    return (0.07 * bone + 0.05 * rim) * (inside * edge_fade)


def _anterior_windows(frame: BodyFrame, bones: Skeleton) -> list[Window]:
    """The pixels the anterior ribs can reach.

    They are visible for 0.1 < |x| <= cage, at heights apex + 0.05 + 0.5 (cage - |x|) + [0, 6) spacings.
    """
    apex, spacing, cage = bones.apex, bones.spacing, bones.cage
    y_range = (apex + 0.05, apex + 0.05 + 0.5 * (cage - 0.1) + _ANTERIOR_RIB_COUNT * spacing)
    return side_windows(frame, (0.1, cage), y_range)


def _anterior_ribs(grid: Grid, bones: Skeleton) -> np.ndarray:
    """The anterior ribs: fainter, running obliquely down to the sternum, their cartilage (medial part) invisible."""
    apex, spacing, rib_half, cage = bones.apex, bones.spacing, bones.rib_half, bones.cage
    ax = np.abs(grid.x)
    anterior = (grid.y - apex - 0.05 - 0.5 * (cage - ax)) * (1.0 / spacing)
    frac_a = anterior - np.floor(anterior) - 0.5
    bone_a = np.sqrt(np.clip(1.0 - np.square(frac_a * (spacing / (0.8 * rib_half))), 0.0, None))
    inside_a = (anterior >= 0.0) & (anterior < _ANTERIOR_RIB_COUNT) & (ax <= cage)
    edge_fade = np.clip((cage - ax) * 50.0, 0.0, 1.0)
    return 0.045 * bone_a * (inside_a * np.clip((ax - 0.1) * 16.0, 0.0, 1.0) * edge_fade)
