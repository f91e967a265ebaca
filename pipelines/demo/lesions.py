"""Radiological findings drawn into a phantom: pleural effusion, consolidation and TB lesions."""

from __future__ import annotations

import math

import numpy as np

from pipelines.demo.anatomy import Lung, LungGeometry
from pipelines.demo.fields import SmoothField
from pipelines.demo.frame import FLOAT, BodyFrame, Patch, Window, evaluate, intersect, relative, row_chunks


def draw_effusion(
    rng: np.random.Generator, frame: BodyFrame, lungs: tuple[LungGeometry, LungGeometry], drawn: list[Lung]
) -> tuple[Patch, np.ndarray]:
    """Pleural fluid in one lung base, with a meniscus rising along the lateral chest wall.

    Returns:
        ((window, gain), fluid): the added float32 attenuation over the lung's window, and the
        window-sized bool region removed from the mask.
    """
    index = int(rng.integers(0, 2))
    geo, lung = lungs[index], drawn[index]
    height_fraction = rng.uniform(0.14, 0.28)
    meniscus = rng.uniform(0.05, 0.09)
    level = geo.base_y - height_fraction * (geo.base_y - geo.apex_y)
    gain = np.empty(lung.mask.shape, dtype=FLOAT)
    fluid = np.empty(lung.mask.shape, dtype=bool)
    for chunk in row_chunks(lung.window):
        part = relative(chunk, lung.window)
        fx, fy = frame.x[chunk], frame.y[chunk]
        q = np.clip((geo.side * fx - geo.medial) * (1.0 / (geo.lateral - geo.medial)), 0.0, 1.0)
        surface = level - meniscus * q * np.square(q)
        fluid[part] = lung.mask[part] & (fy >= surface)
        # Fluid replaces the air below the surface and thins out into a haze just above it.
        ramp = np.clip((fy - surface) * 40.0 + 0.3, 0.0, 1.0)
        gain[part] = lung.mask[part] * ramp * (0.42 * lung.air[part] + 0.03)
    return (lung.window, gain), fluid


def _pick_pixel(rng: np.random.Generator, candidates: np.ndarray, window: Window) -> tuple[int, int]:
    """(row, col) in the image of a random True pixel of ``candidates`` (non-empty, over ``window``).

    The window holds every candidate, so counting them in row-major order over it picks the same pixel
    as counting over the whole image.
    """
    flat = np.flatnonzero(candidates)
    row, col = divmod(int(flat[int(rng.integers(0, flat.size))]), candidates.shape[1])
    return row + window[0].start, col + window[1].start


def _window(center: tuple[int, int], radius_px: float, shape: tuple[int, ...]) -> Window:
    """Slices of the square window of half-size ``radius_px`` around ``center``, clipped to ``shape``."""
    r = int(math.ceil(radius_px)) + 1
    row, col = center
    return slice(max(0, row - r), min(shape[0], row + r + 1)), slice(max(0, col - r), min(shape[1], col + r + 1))


def draw_opacity(rng: np.random.Generator, frame: BodyFrame, mask: np.ndarray, drawn: list[Lung]) -> Patch | None:
    """Blotchy consolidation-like density in the middle/lower zone of one lung (inside the mask).

    Returns:
        The added float32 attenuation over its window, or None when the chosen lung is empty.
    """
    label = int(rng.integers(1, 3))
    radius = rng.uniform(0.08, 0.12)
    lung_window = drawn[label - 1].window
    lung = mask[lung_window] == label
    if not lung.any():
        return None
    rows = np.flatnonzero(lung.any(axis=1)) + lung_window[0].start
    row_index = np.arange(lung_window[0].start, lung_window[0].stop)[:, None]
    span = rows[-1] - rows[0]
    lower = lung & (row_index >= rows[0] + 0.4 * span) & (row_index <= rows[0] + 0.8 * span)
    center = _pick_pixel(rng, lower if lower.any() else lung, lung_window)
    win = _window(center, 2.2 * radius * frame.px_per_unit * 1.1, frame.shape)
    blotches = SmoothField(rng, (win[0].stop - win[0].start, win[1].stop - win[1].start), (7, 7))
    center_x, center_y = frame.x[center], frame.y[center]

    def consolidation(chunk: Window) -> np.ndarray:
        part = relative(chunk, win)
        r2 = (np.square(frame.x[chunk] - center_x) + np.square(frame.y[chunk] - center_y)) * (1.0 / radius**2)
        # Flat-topped envelope: consolidation is a confluent region, not a soft Gaussian haze.
        envelope = np.exp(-np.square(r2))
        # Thresholding a smooth field gives patchy, confluent-looking airspace disease.
        patches = np.clip((blotches.window(*part) + 0.4) * 1.5, 0.0, 1.0)
        return 0.45 * envelope * (0.25 + 0.75 * patches) * (mask[chunk] == label)

    return win, evaluate(win, consolidation)


def draw_tb(
    rng: np.random.Generator,
    frame: BodyFrame,
    mask: np.ndarray,
    lungs: tuple[LungGeometry, LungGeometry],
    drawn: list[Lung],
) -> Patch | None:
    """Apical haze, small nodules and a thick-walled cavity in the upper zone of one lung.

    Returns:
        The added float32 attenuation over the lung's window, or None when the chosen lung is empty.
    """
    label = int(rng.integers(1, 3))
    geo, lung_window = lungs[label - 1], drawn[label - 1].window
    fy = frame.y[lung_window]
    lung = mask[lung_window] == label
    if not lung.any():
        return None
    out = np.zeros(lung.shape, dtype=FLOAT)
    zone_height = 0.38 * (geo.base_y - geo.apex_y)
    upper = lung & (fy <= geo.apex_y + zone_height)
    candidates = upper if upper.any() else lung
    rows = np.flatnonzero(candidates.any(axis=1))
    band = slice(rows[0], rows[-1] + 1)
    out[band] = 0.06 * np.clip(1.0 - (fy[band] - geo.apex_y) * (1.0 / zone_height), 0.0, 1.0)
    # Lesion windows reaching outside the lung's window add nothing there: the result is masked by the lung.
    for _ in range(int(rng.integers(4, 10))):
        center = _pick_pixel(rng, candidates, lung_window)
        r = rng.uniform(0.007, 0.016)
        strength = rng.uniform(0.18, 0.3)
        win = intersect(_window(center, 3.0 * r * frame.px_per_unit * 1.1, frame.shape), lung_window)
        r2 = (np.square(frame.x[win] - frame.x[center]) + np.square(frame.y[win] - frame.y[center])) * (1.0 / r**2)
        out[relative(win, lung_window)] += strength * np.exp(-r2)
    center = _pick_pixel(rng, candidates, lung_window)
    cavity_r = rng.uniform(0.018, 0.028)
    win = intersect(_window(center, 1.8 * cavity_r * frame.px_per_unit * 1.1, frame.shape), lung_window)
    ring = np.sqrt(np.square(frame.x[win] - frame.x[center]) + np.square(frame.y[win] - frame.y[center]))
    out[relative(win, lung_window)] += 0.28 * np.exp(-np.square((ring - cavity_r) * (1.0 / (0.35 * cavity_r))))
    out *= lung
    return lung_window, out
