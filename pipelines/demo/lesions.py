"""Radiological findings drawn into a phantom: pleural effusion, consolidation and TB lesions."""

from __future__ import annotations

import math

import numpy as np

from pipelines.demo.anatomy import LungGeometry
from pipelines.demo.fields import smooth_2d

_FLOAT = np.float32


def draw_effusion(
    rng: np.random.Generator,
    fx: np.ndarray,
    fy: np.ndarray,
    lungs: tuple[LungGeometry, LungGeometry],
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


def draw_opacity(rng: np.random.Generator, fx: np.ndarray, fy: np.ndarray, mask: np.ndarray, px_per_unit: float) -> np.ndarray:
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
    blotches = smooth_2d(rng, wx.shape, (7, 7))
    r2 = (np.square(wx - fx[center]) + np.square(wy - fy[center])) * (1.0 / radius**2)
    # Flat-topped envelope: consolidation is a confluent region, not a soft Gaussian haze.
    envelope = np.exp(-np.square(r2))
    # Thresholding a smooth field gives patchy, confluent-looking airspace disease.
    patches = np.clip((blotches + 0.4) * 1.5, 0.0, 1.0)
    out[win] = 0.45 * envelope * (0.25 + 0.75 * patches) * lung[win]
    return out


def draw_tb(
    rng: np.random.Generator,
    fx: np.ndarray,
    fy: np.ndarray,
    mask: np.ndarray,
    lungs: tuple[LungGeometry, LungGeometry],
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
