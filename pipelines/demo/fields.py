"""Smooth random fields and the Gaussian blur the phantom renderer draws with."""

from __future__ import annotations

import math

import numpy as np

_FLOAT = np.float32


def smooth_1d(rng: np.random.Generator, t: np.ndarray, cells: int, amplitude: float) -> np.ndarray:
    """Smooth random function evaluated at ``t`` (any shape; ~``cells`` bumps over [0, 1]).

    Returns:
        float32 array shaped like ``t``, roughly N(0, amplitude^2).
    """
    knots = rng.standard_normal(cells + 4)
    grid = np.linspace(-1.0, 2.0, 3 * 256)
    weights = _gaussian_weights(grid, cells)
    values = (weights @ knots) / np.sqrt(np.square(weights).sum(axis=1))
    return (amplitude * np.interp(t, grid, values)).astype(_FLOAT)


def smooth_2d(rng: np.random.Generator, shape: tuple[int, ...], cells: tuple[int, int]) -> np.ndarray:
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


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
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


def blurred_noise_std(sigma: float) -> float:
    """Standard deviation of unit white noise after ``gaussian_blur(sigma)``.

    The 2-D kernel is the outer product of the 1-D one, so its squared norm is (sum k^2)^2.
    """
    if sigma <= 0.0:
        return 1.0
    return float(np.square(_gaussian_kernel(sigma).astype(np.float64)).sum())
