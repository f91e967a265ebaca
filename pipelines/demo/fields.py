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

# Pixel variance (in pixels squared, along each axis) that resampling adds to a blur done on the half-resolution
# grid: a 2x2 block's mean spreads a pixel over +-0.5 px (0.25), interpolating back over 0.5 and 1.5 px (0.75).
_BLOCK_MEAN_VARIANCE = 0.25
_INTERPOLATION_VARIANCE = 0.75
# Coarse grid points per block of work when a whole image is resampled.
_RESAMPLE_ROWS = 32


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
        self._knots, self._std, self._shape, self._cells = knots / std, std, shape, cells
        self._columns: tuple[np.ndarray, np.ndarray] | None = None

    def window(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """The field over ``rows`` x ``cols`` of the image: float32."""
        return self._left[rows] @ self._cols_t[:, cols]

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The field at the points ``rows`` x ``cols`` (positions in pixels, a pixel's centre at its index + 0.5).

        Returns:
            (len(rows), len(cols)) float32; at pixel centres, ``window``'s values to float32 rounding.
        """
        # The columns' weights are kept for the next call: a term's row chunks share their columns.
        if self._columns is None or not np.array_equal(self._columns[0], cols):
            self._columns = cols.copy(), _normalised(_gaussian_weights(cols / self._shape[1], self._cells[1])).T.astype(FLOAT)
        weights = _normalised(_gaussian_weights(rows / self._shape[0], self._cells[0]))
        return ((weights @ self._knots).astype(FLOAT)) @ self._columns[1]


@functools.lru_cache(maxsize=32)
def _curve_weights(cells: int) -> np.ndarray:
    """(grid size, cells + 4) weights of a SmoothCurve's knots at its grid points (read-only)."""
    weights = _gaussian_weights(_CURVE_GRID, cells)
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=32)
def _field_weights(size: int, cells: int) -> np.ndarray:
    """(size, cells + 4) normalised weights of a SmoothField's knots at pixel centres (read-only)."""
    weights = _normalised(_gaussian_weights((np.arange(size) + 0.5) / size, cells))
    weights.flags.writeable = False
    return weights


def _normalised(weights: np.ndarray) -> np.ndarray:
    """``weights`` with each row divided by its sum (in place)."""
    weights /= weights.sum(axis=1, keepdims=True)
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
    # np.pad(mode="edge") by hand: the same C-ordered array, without its overhead.
    moved = np.moveaxis(block, axis, 0)
    shape = list(block.shape)
    shape[axis] += before + after
    out = np.empty(shape, dtype=block.dtype)
    lines = np.moveaxis(out, axis, 0)
    lines[before : before + moved.shape[0]] = moved
    lines[:before] = moved[:1]
    lines[before + moved.shape[0] :] = moved[-1:]
    return out


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


def coarse_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """``smooth_noise`` for a phantom drawn on the half-resolution grid: drawn and blurred on the grid's points.

    The blur leaves out the width that interpolating back to the pixels adds, and the scale is the standard
    deviation after that interpolation (each pixel takes 3/4 and 1/4 of neighbouring points, on both axes), so
    the interpolated noise has ``sigma`` pixels of correlation and unit standard deviation, like ``smooth_noise``.

    Args:
        rng: Source of randomness.
        shape: (h, w) of the half-resolution grid.
        sigma: Correlation length in full-resolution pixels.

    Returns:
        (h, w) float32 noise on the grid's points.
    """
    coarse_sigma = _coarse_sigma(sigma, _INTERPOLATION_VARIANCE)
    noise = rng.standard_normal(shape, dtype=FLOAT)
    gaussian_blur(noise, coarse_sigma, out=noise)
    kernel = _gaussian_kernel(float(coarse_sigma)).astype(np.float64) if coarse_sigma > 0.0 else np.ones(1)
    lag0, lag1 = float(np.square(kernel).sum()), float((kernel[:-1] * kernel[1:]).sum())
    noise *= 1.0 / (0.625 * lag0 + 0.375 * lag1)
    return noise


def grid_blur(points: np.ndarray, sigma: float) -> np.ndarray:
    """``gaussian_blur(image, sigma)`` for the means of the image's 2x2 blocks (``downsample2``), in place.

    Interpolated back to the pixels (``upsample2``), it spreads the image as much as the full-resolution blur:
    the grid's blur leaves out the variance that the block means and the interpolation add.

    Returns:
        ``points``, blurred.
    """
    return gaussian_blur(points, _coarse_sigma(sigma, _BLOCK_MEAN_VARIANCE + _INTERPOLATION_VARIANCE), out=points)


def _coarse_sigma(sigma: float, resampling_variance: float) -> float:
    """The blur, in grid spacings, that resampling by 2 widens to ``sigma`` pixels."""
    return math.sqrt(max(sigma * sigma - resampling_variance, 0.0)) / 2.0


def downsample2(image: np.ndarray) -> np.ndarray:
    """Means of the 2x2 blocks of pixels of a (H, W) image: (ceil(H / 2), ceil(W / 2)) float32.

    Point (i, j) of the result is the block of pixels (2i, 2j) to (2i + 1, 2j + 1); an odd last row or column
    of pixels is repeated to make its blocks.
    """
    height, width = image.shape
    if height % 2 or width % 2:
        image = np.pad(image, ((0, height % 2), (0, width % 2)), mode="edge")
    out = np.empty((image.shape[0] // 2, image.shape[1] // 2), dtype=FLOAT)
    for start in range(0, out.shape[0], _RESAMPLE_ROWS):
        block = image[2 * start : 2 * (start + _RESAMPLE_ROWS)]
        pairs = block[0::2] + block[1::2]
        target = out[start : start + _RESAMPLE_ROWS]
        np.add(pairs[:, 0::2], pairs[:, 1::2], out=target)
        target *= 0.25
    return out


def upsample2(coarse: np.ndarray, origin: tuple[int, int], window: tuple[slice, slice]) -> np.ndarray:
    """Bilinear interpolation of values on the half-resolution grid at the pixels of ``window``.

    Point (i, j) of the grid is the centre of the pixels (2i, 2j) to (2i + 1, 2j + 1), so every pixel lies a
    quarter of the grid's spacing from one point and three quarters from the next: it takes 3/4 and 1/4 of them,
    along each axis.

    Args:
        coarse: (h, w) float32 values; ``coarse[a, b]`` is the point (origin[0] + a, origin[1] + b). It must hold
            the points around every pixel: rows (rows.start - 1) // 2 to (rows.stop - 2) // 2 + 1 (likewise columns).
        origin: The grid indices of ``coarse[0, 0]``.
        window: (rows, cols) of the pixels.

    Returns:
        Window-sized float32.
    """
    rows, cols = window
    first = (rows.start - 1) // 2 - origin[0]
    last = (rows.stop - 2) // 2 + 2 - origin[0]
    across = np.empty((last - first, cols.stop - cols.start), dtype=FLOAT)
    _interpolate(coarse[first:last], cols, origin[1], 1, across)
    out = np.empty((rows.stop - rows.start, cols.stop - cols.start), dtype=FLOAT)
    _interpolate(across, rows, origin[0] + first, 0, out)
    return out


def _interpolate(points: np.ndarray, pixels: slice, first: int, axis: int, out: np.ndarray) -> None:
    """``out`` along ``axis`` = ``points`` (point ``first`` first) interpolated at ``pixels``, even pixels then odd ones.

    Between points p and q, an even pixel is q - (q - p) / 4 and an odd one p + (q - p) / 4: one operation a pixel.
    """
    quarter_steps = np.diff(points, axis=axis)
    quarter_steps *= 0.25
    for parity in (0, 1):
        start = pixels.start + (parity - pixels.start) % 2
        if start >= pixels.stop:
            continue
        low = (start - 1) // 2 - first
        span, upper = slice(low, low + (pixels.stop - start + 1) // 2), slice(low + 1, low + 1 + (pixels.stop - start + 1) // 2)
        near = points[upper if parity == 0 else span] if axis == 0 else points[:, upper if parity == 0 else span]
        step = quarter_steps[span] if axis == 0 else quarter_steps[:, span]
        target = out[start - pixels.start :: 2] if axis == 0 else out[:, start - pixels.start :: 2]
        (np.subtract if parity == 0 else np.add)(near, step, out=target)


def upsample2_compare(
    coarse: np.ndarray, origin: tuple[int, int], window: tuple[slice, slice], compare: np.ufunc, level: float
) -> np.ndarray:
    """``compare(upsample2(coarse, origin, window), level)``, bit for bit, interpolating only where it can differ.

    A pixel's interpolated value lies between the least and the greatest of the four grid points around it (each
    float32 step ``q -+ (q - p) / 4`` stays within [p, q]), and the pixels of block i (2i and 2i + 1) use the
    points i - 1 to i + 1 along each axis: a block whose 3x3 points all pass (or all fail) the comparison passes
    (fails) whole. Only the band of blocks where the points disagree, along the outline, is interpolated.

    Returns:
        Window-sized bool (a view, when the window starts or ends inside a block).
    """
    rows, cols = window
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return np.zeros((max(0, rows.stop - rows.start), max(0, cols.stop - cols.start)), dtype=bool)
    # The blocks of the window, and the indices in ``coarse`` of their points, from one before the first block to one
    # after the last (the grid's edge point repeated where the window's pixels do not reach that far).
    spans = [(pixels.start // 2, (pixels.stop + 1) // 2) for pixels in window]
    wanted = [(start - 1 - first, stop + 1 - first) for (start, stop), first in zip(spans, origin, strict=True)]
    taken = [(max(0, low), min(size, high)) for (low, high), size in zip(wanted, coarse.shape, strict=True)]
    passes = np.empty((wanted[0][1] - wanted[0][0], wanted[1][1] - wanted[1][0]), dtype=bool)
    inner = tuple(slice(start - low, stop - low) for (low, _), (start, stop) in zip(wanted, taken, strict=True))
    compare(coarse[taken[0][0] : taken[0][1], taken[1][0] : taken[1][1]], level, out=passes[inner])
    # np.pad(mode="edge") by hand, for the one point a window's edge may lack.
    passes[: inner[0].start, inner[1]] = passes[inner[0].start, inner[1]]
    passes[inner[0].stop :, inner[1]] = passes[inner[0].stop - 1, inner[1]]
    passes[:, : inner[1].start] = passes[:, inner[1].start, None]
    passes[:, inner[1].stop :] = passes[:, inner[1].stop - 1, None]
    # Whether all (some) of the 3x3 points around each block pass.
    every, some = passes[:-2] & passes[1:-1], passes[:-2] | passes[1:-1]
    every &= passes[2:]
    some |= passes[2:]
    every = every[:, :-2] & every[:, 1:-1] & every[:, 2:]
    some = some[:, :-2] | some[:, 1:-1] | some[:, 2:]
    # The blocks' pixels: each column doubled as one 16-bit copy of its byte, each row written twice.
    doubled = (every.view(np.uint8).astype(np.uint16) * 257).view(bool)
    pixels = np.empty((2 * every.shape[0], doubled.shape[1]), dtype=bool)
    pixels[0::2] = doubled
    pixels[1::2] = doubled
    some &= ~every
    band = np.flatnonzero(some)
    if band.size:
        band_rows, band_cols = np.divmod(band, every.shape[1])
        # The 3x3 points around each block of the band, (3, 3, n): [row, column, block].
        near_rows, near_cols = (
            _clipped(index[None] + np.arange(low, low + 3)[:, None], size)
            for index, (low, _), size in zip((band_rows, band_cols), wanted, coarse.shape, strict=True)
        )
        near = coarse.reshape(-1).take(near_rows[:, None] * coarse.shape[1] + near_cols[None])
        # Along the columns, then the rows, as ``_interpolate`` does it: even pixels q - (q - p) / 4, odd p + (q - p) / 4.
        across = np.empty((3, 2, band.size), dtype=FLOAT)
        _towards(near[:, 0], near[:, 1], -1, across[:, 0])
        _towards(near[:, 1], near[:, 2], 1, across[:, 1])
        values = np.empty((2, 2, band.size), dtype=FLOAT)
        _towards(across[0], across[1], -1, values[0])
        _towards(across[1], across[2], 1, values[1])
        # values[row parity, column parity, block] to pixels (2 i + row parity, 2 j + column parity).
        corner = 2 * band_rows * pixels.shape[1] + 2 * band_cols
        offsets = np.array([[0, 1], [pixels.shape[1], pixels.shape[1] + 1]])
        pixels.reshape(-1)[corner + offsets[:, :, None]] = compare(values, level)
    first_row, first_col = rows.start - 2 * spans[0][0], cols.start - 2 * spans[1][0]
    return pixels[first_row : first_row + rows.stop - rows.start, first_col : first_col + cols.stop - cols.start]


def _towards(p: np.ndarray, q: np.ndarray, sign: int, out: np.ndarray) -> None:
    """``out`` = a quarter of the way from q to p (``sign`` -1: q - (q - p) / 4) or from p to q (+1: p + (q - p) / 4), in
    float32, like ``_interpolate``."""
    np.subtract(q, p, out=out)
    out *= 0.25
    if sign < 0:
        np.subtract(q, out, out=out)
    else:
        np.add(p, out, out=out)


def _clipped(index: np.ndarray, size: int) -> np.ndarray:
    """``index`` clipped to [0, size - 1], in place (``np.clip`` on integers is slow, and few need it)."""
    if index.size and index.min() < 0:
        np.maximum(index, 0, out=index)
    if index.size and index.max() >= size:
        np.minimum(index, size - 1, out=index)
    return index
