"""The lungs' markings: hilar shadows and branching vessel-like streaks that fade towards the lung periphery."""

from __future__ import annotations

import functools

import numpy as np

from pipelines.demo.anatomy import Lung, LungGeometry
from pipelines.demo.canvas import Canvas
from pipelines.demo.fields import SmoothCurve, SmoothField
from pipelines.demo.frame import BodyFrame, Grid

# atan(t) ~ t * P(t^2) on [0, 1], least-squares fit weighted towards minimax: max error 3e-7 rad in float32.
_ATAN_COEFFICIENTS = (
    0.9999961116041614,
    -0.3331736811715629,
    0.19807815691519065,
    -0.132333417052001,
    0.07962365590895833,
    -0.03360420120406547,
    0.006811785775463028,
)


def lung_markings(
    rng: np.random.Generator, frame: BodyFrame, lungs: tuple[LungGeometry, LungGeometry], drawn: list[Lung], canvas: Canvas
) -> None:
    """Adds hilar shadows and branching vessel-like streaks that fade towards the lung periphery, inside each lung."""
    bend = SmoothField(rng, frame.shape, (7, 7))
    mottle = SmoothField(rng, frame.shape, (20, 20))
    for geo, lung in zip(lungs, drawn, strict=True):
        streak_curve = SmoothCurve(rng, cells=110, amplitude=1.0)
        markings = functools.partial(_markings, geo=geo, streak_curve=streak_curve, bend=bend, mottle=mottle)
        canvas.add(lung.window, markings, mask=lung.mask, mask_window=lung.window)


def _markings(grid: Grid, geo: LungGeometry, streak_curve: SmoothCurve, bend: SmoothField, mottle: SmoothField) -> np.ndarray:
    """The lung markings of one lung at the points of ``grid``, before the lung's mask."""
    hilum_d = geo.medial + 0.025
    hilum_y = geo.apex_y + 0.45 * (geo.base_y - geo.apex_y)
    ddx, ddy = geo.side * grid.x - hilum_d, grid.y - hilum_y
    radius = np.sqrt(np.square(ddx) + np.square(ddy))
    # Bending the angle with a smooth field turns straight spokes into curving vessels.
    angle = _arctan2(ddy, ddx) + 0.2 * grid.smooth(bend)
    # Capped so a rare large knot does not become a bone-bright vessel.
    streaks = np.clip(streak_curve(angle * (1.0 / (2 * np.pi)) + 0.5), 0.0, 1.2)
    # Streaks start outside the hilar shadow, where converging spokes would look artificial.
    fade = np.clip((radius - 0.02) * 15.0, 0.0, 1.0) * np.exp(radius * (-1.0 / 0.14))
    hilum = np.exp(-np.square(ddx * (1.0 / 0.035)) - np.square(ddy * (1.0 / 0.07)))
    lung_mottle = grid.smooth(mottle)
    texture = (0.08 * streaks * streaks) * fade * np.clip(0.3 + 0.7 * lung_mottle, 0.0, None) + 0.08 * hilum
    return texture + 0.012 * lung_mottle


def _arctan2(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``np.arctan2`` of float32 arrays to within 3e-7 rad, from a polynomial: numpy's is a slow scalar loop."""
    ax, ay = np.abs(x), np.abs(y)
    steep = ay > ax
    low, high = np.minimum(ax, ay), np.maximum(ax, ay)
    # 0/0 where x = y = 0: arctan2 gives 0 there, as the polynomial does from t = 0.
    t = np.divide(low, high, out=np.zeros_like(low), where=high > 0)
    square = t * t
    angle = np.full_like(t, _ATAN_COEFFICIENTS[-1])
    for coefficient in _ATAN_COEFFICIENTS[-2::-1]:
        angle *= square
        angle += coefficient
    angle *= t
    # Fold the octant back: atan(y/x) = pi/2 - atan(x/y) above the diagonal, pi - a left of the axis.
    angle = np.where(steep, np.float32(np.pi / 2) - angle, angle)
    angle = np.where(x < 0, np.float32(np.pi) - angle, angle)
    return np.copysign(angle, y)
