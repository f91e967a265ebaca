"""Smooth random fields and the Gaussian blur the phantom renderer draws with."""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage

FLOAT = np.float32

# Where a SmoothCurve is tabulated; it is interpolated linearly in between.
_CURVE_GRID = np.linspace(-1.0, 2.0, 3 * 256)

# Output rows (or columns) per matrix product of the banded blur: small enough that the band's zeros cost
# little, large enough that each product is an efficient BLAS call.
_BLUR_BLOCK = 64


class SmoothCurve:
    """A smooth random function of one variable with about ``cells`` bumps over [0, 1].

    Its knots are drawn when it is made, so it can be evaluated later, on any part of the image.
    Values are roughly N(0, amplitude^2); outside [-1, 2] the curve is constant.
    """

    def __init__(self, rng: np.random.Generator, cells: int, amplitude: float) -> None:
        knots = rng.standard_normal(cells + 4)
        weights = _curve_weights(cells)
        values = amplitude * ((weights @ knots) / np.sqrt(np.square(weights).sum(axis=1)))
        self._values = values.astype(FLOAT)
        self._steps = np.diff(values).astype(FLOAT)

    @property
    def bound(self) -> float:
        """The largest absolute value the curve takes."""
        return float(np.abs(self._values).max())

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """Evaluates the curve: float32 array shaped like ``t``.

        Linear interpolation between the grid values, as ``np.interp`` does; the grid is uniform, so each
        position's interval is computed rather than searched for (several times faster).
        """
        last = _CURVE_GRID.size - 1
        position = t + FLOAT(1.0)
        position *= FLOAT(last / 3.0)
        np.clip(position, 0.0, last, out=position)
        start = np.floor(position)
        np.minimum(start, last - 1, out=start)
        index = start.astype(np.intp)
        position -= start
        position *= self._steps[index]
        position += self._values[index]
        return position


class SmoothField:
    """A smooth random float32 field over an image, unit variance, with about ``cells`` bumps per axis.

    The field is separable in its construction (row weights x knots x column weights), so any window of it
    can be evaluated alone; its variance over the whole image comes from the two factors' Gram matrices.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> None:
        knots = rng.standard_normal((cells[0] + 4, cells[1] + 4))
        rows = _field_weights(shape[0], cells[0])
        cols = _field_weights(shape[1], cells[1])
        left = rows @ knots
        count = shape[0] * shape[1]
        mean = float(left.sum(axis=0) @ cols.sum(axis=0)) / count
        mean_square = float(((left.T @ left) * (cols.T @ cols)).sum()) / count
        std = max(math.sqrt(max(mean_square - mean * mean, 0.0)), 1e-12)
        self._left = (left / std).astype(FLOAT)
        self._cols_t = np.ascontiguousarray(cols.T, dtype=FLOAT)

    def window(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """The field over ``rows`` x ``cols`` of the image: float32."""
        return self._left[rows] @ self._cols_t[:, cols]


@functools.lru_cache(maxsize=32)
def _curve_weights(cells: int) -> np.ndarray:
    """(grid size, cells + 4) weights of a SmoothCurve's knots at its grid points (read-only)."""
    weights = _gaussian_weights(_CURVE_GRID, cells)
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=32)
def _field_weights(size: int, cells: int) -> np.ndarray:
    """(size, cells + 4) normalised weights of a SmoothField's knots at pixel centres (read-only)."""
    weights = _gaussian_weights((np.arange(size) + 0.5) / size, cells)
    weights /= weights.sum(axis=1, keepdims=True)
    weights.flags.writeable = False
    return weights


def _gaussian_weights(pos: np.ndarray, cells: int) -> np.ndarray:
    """(len(pos), cells + 4) Gaussian weights from knots spaced 1/cells apart to positions."""
    centers = (np.arange(cells + 4) - 1.5) / cells
    # Positions far outside [0, 1] are clamped so every row keeps non-zero weights.
    pos = np.clip(pos, centers[0], centers[-1])
    return np.exp(-0.5 * np.square((pos[:, None] - centers[None, :]) * (cells / 0.8)))


@functools.lru_cache(maxsize=16)
def _gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of ``scipy.ndimage.gaussian_filter1d``, radius ceil(3 sigma), float32."""
    radius = max(1, math.ceil(3.0 * sigma))
    impulse = np.zeros(2 * radius + 1)
    impulse[radius] = 1.0
    return ndimage.gaussian_filter1d(impulse, sigma, mode="constant", radius=radius).astype(FLOAT)


@functools.lru_cache(maxsize=16)
def _band(sigma: float) -> np.ndarray:
    """(block, block + 2 radius) float32 matrix: row i holds the kernel at columns i .. i + 2 radius."""
    kernel = _gaussian_kernel(sigma)
    band = np.zeros((_BLUR_BLOCK, _BLUR_BLOCK + kernel.size - 1), dtype=FLOAT)
    for offset, weight in enumerate(kernel):
        band[np.arange(_BLUR_BLOCK), np.arange(_BLUR_BLOCK) + offset] = weight
    return band


def gaussian_blur(image: np.ndarray, sigma: float, *, out: np.ndarray | None = None) -> np.ndarray:
    """Gaussian blur of a (H, W) image: ``ndimage.gaussian_filter(image, sigma, mode="nearest")``, faster.

    The kernel is scipy.ndimage's, truncated at ceil(3 sigma) pixels; the filter is applied as products of
    the edge-padded image with the banded matrix of that kernel, ``_BLUR_BLOCK`` rows or columns at a
    time. At 1024 px this takes about a quarter of ``ndimage.gaussian_filter``'s time, which converts
    every image line to float64 and filters it in a scalar loop.

    Args:
        image: (H, W) image.
        sigma: Standard deviation of the Gaussian in pixels; 0 or less copies the image.
        out: (H, W) float32 C-contiguous array for the result, which may be ``image`` itself; a new
            one if None.

    Returns:
        The (H, W) float32 blurred image (``out`` when given).
    """
    source = np.ascontiguousarray(image, dtype=FLOAT)
    if out is None:
        out = np.empty_like(source)
    if sigma <= 0.0:
        out[...] = source
        return out
    band = _band(float(sigma))
    radius = (band.shape[1] - band.shape[0]) // 2
    # Down the columns into a scratch array, then along the rows into ``out``.
    across = np.empty_like(source)
    for axis, (lines_of, target) in enumerate(((source, across), (across, out))):
        size = lines_of.shape[axis]
        for start in range(0, size, _BLUR_BLOCK):
            stop = min(size, start + _BLUR_BLOCK)
            low, high = start - radius, stop + radius
            weights = band[: stop - start, : stop - start + 2 * radius]
            if axis == 0:
                lines = _lines(lines_of[max(0, low) : min(size, high)], 0, max(0, -low), max(0, high - size))
                np.matmul(weights, lines, out=target[start:stop])
            else:
                lines = _lines(lines_of[:, max(0, low) : min(size, high)], 1, max(0, -low), max(0, high - size))
                np.matmul(lines, weights.T, out=target[:, start:stop])
    return out


def _lines(block: np.ndarray, axis: int, before: int, after: int) -> np.ndarray:
    """``block`` with its first/last line along ``axis`` repeated ``before``/``after`` times (mode "nearest").

    Only the blocks at the image edges need it; the others are returned as they are.
    """
    if before == 0 and after == 0:
        return block
    return np.pad(block, [(before, after) if a == axis else (0, 0) for a in (0, 1)], mode="edge")


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """White Gaussian noise blurred by a Gaussian of ``sigma`` pixels, scaled to unit standard deviation.

    Returns:
        (H, W) float32, zero mean, unit standard deviation away from the edges.
    """
    noise = rng.standard_normal(shape, dtype=FLOAT)
    gaussian_blur(noise, sigma, out=noise)
    noise *= 1.0 / blurred_noise_std(sigma)
    return noise


def blurred_noise_std(sigma: float) -> float:
    """Standard deviation of unit white noise after ``gaussian_blur(sigma)``, away from the image edges.

    The 2-D kernel is the outer product of the 1-D one, so its squared norm is (sum k^2)^2.
    """
    if sigma <= 0.0:
        return 1.0
    return float(np.square(_gaussian_kernel(float(sigma)).astype(np.float64)).sum())
