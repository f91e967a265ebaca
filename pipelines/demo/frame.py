"""The body frame: per-pixel patient coordinates, and the pixel windows that hold a region of them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipelines.demo.fields import upsample2, upsample2_compare

FLOAT = np.float32

# Phantoms at least this many pixels high and wide (the NIH originals' 1024 px and up) are drawn on the
# half-resolution grid of 2x2 pixel blocks: the terms that reach the image only through the blur are evaluated
# once a block and summed there (``canvas.Canvas``), the outlines are interpolated from it (``Field``) and
# thresholded at the pixels, so the masks and the edges they give the image stay at full resolution, and the blur,
# the noise and the film curve work on the grid (``phantom.py``). This one rule (``BodyFrame.coarse``) is the only
# switch by size: smaller phantoms are drawn pixel by pixel, and their bytes (the tests' archives, the demo's) do
# not change.
COARSE_MIN_SIZE = 1024

# (rows, cols) of a rectangle of pixels.
Window = tuple[slice, slice]
# Values of a term over a window of the image (zero outside it).
Patch = tuple[Window, np.ndarray]

# Pixels per chunk of work. numpy expressions over whole windows at 1024 px make temporaries of
# megabytes, which the allocator maps and the kernel zero-fills afresh each time: evaluated over
# chunks this small, the same expressions run about three times faster.
_CHUNK_PIXELS = 65536

# Pixels added around every window: the float32 coordinates may round a pixel just outside the region's
# exact bounds, and a pixel left out of a window would silently lose its share of a structure.
_MARGIN_PX = 2


@dataclass(frozen=True)
class BodyFrame:
    """Body-frame coordinates of every pixel: x is signed distance from the midline, y runs head->feet.

    Both are fractions of the image width/height, divided by the patient's scale and rotated by
    the patient's tilt, so anatomy is described once and positioned per seed. Every structure is
    drawn only inside the window of pixels its region of the frame can reach (``window``), which
    is what makes rendering cheap: most structures cover a small part of the image.

    Attributes:
        x: (H, W) float32 signed distance from the midline (read-only; on the half-resolution grid a
            ``LazyCoordinate``, indexed like it).
        y: (H, W) float32 height, head to feet (likewise).
        px_per_unit: Pixels per body-frame unit, along the image width.
        center_x: Image-width fraction of the midline (before the tilt).
        shift_y: Vertical shift of the patient, in image-height fractions.
        cos_t: cos(tilt) / scale.
        sin_t: sin(tilt) / scale.
        grid_x: On the half-resolution grid (``COARSE_MIN_SIZE``), the float32 x of its points (i, j), the centres
            of the pixel blocks (2i, 2j) to (2i + 1, 2j + 1), at [i + 1, j + 1] for i from -1 to ceil(H / 2)
            (the points around every pixel); None for a phantom drawn pixel by pixel.
        grid_y: Likewise the y of the grid's points.
    """

    x: np.ndarray | LazyCoordinate
    y: np.ndarray | LazyCoordinate
    px_per_unit: float
    center_x: float
    shift_y: float
    cos_t: float
    sin_t: float
    grid_x: np.ndarray | None = None
    grid_y: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return self.x.shape[0], self.x.shape[1]

    @property
    def coarse(self) -> bool:
        """Whether the phantom's smooth terms are drawn on the half-resolution grid (see ``COARSE_MIN_SIZE``)."""
        return self.grid_x is not None

    @property
    def whole(self) -> Window:
        """The window of the whole image."""
        return slice(0, self.x.shape[0]), slice(0, self.x.shape[1])

    @property
    def y_extent(self) -> tuple[float, float]:
        """Lowest and highest y over the image."""
        height, width = self.shape
        ys = [self._to_frame(col, row)[1] for col in (-0.5, width - 0.5) for row in (-0.5, height - 0.5)]
        return min(ys), max(ys)

    def window(
        self,
        x_range: tuple[float, float] = (-math.inf, math.inf),
        y_range: tuple[float, float] = (-math.inf, math.inf),
    ) -> Window:
        """The smallest window (plus a margin) holding every pixel whose (x, y) lies in the given box.

        Args:
            x_range: (low, high) bounds on x; infinite bounds are allowed.
            y_range: (low, high) bounds on y; infinite bounds are allowed.

        Returns:
            (rows, cols) slices, clipped to the image; empty when the box misses the image.
        """
        height, width = self.shape
        # The image's own extent in the frame makes infinite bounds finite.
        corners = [self._to_frame(col, row) for col in (-0.5, width - 0.5) for row in (-0.5, height - 0.5)]
        x_low = max(x_range[0], min(x for x, _ in corners))
        x_high = min(x_range[1], max(x for x, _ in corners))
        y_low = max(y_range[0], min(y for _, y in corners))
        y_high = min(y_range[1], max(y for _, y in corners))
        if x_low > x_high or y_low > y_high:
            return slice(0, 0), slice(0, 0)
        pixels = [self._to_pixel(x, y) for x in (x_low, x_high) for y in (y_low, y_high)]
        cols = [col for col, _ in pixels]
        rows = [row for _, row in pixels]
        return (
            _slice(math.floor(min(rows)) - _MARGIN_PX, math.ceil(max(rows)) + _MARGIN_PX + 1, height),
            _slice(math.floor(min(cols)) - _MARGIN_PX, math.ceil(max(cols)) + _MARGIN_PX + 1, width),
        )

    def _to_frame(self, col: float, row: float) -> tuple[float, float]:
        """Frame (x, y) of the pixel position (col, row), in float64 (``x`` and ``y`` hold it in float32)."""
        height, width = self.shape
        c = (col + 0.5) / width - self.center_x
        r = (row + 0.5) / height - 0.5
        return c * self.cos_t + r * self.sin_t, 0.5 + self.shift_y + r * self.cos_t - c * self.sin_t

    def _to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Pixel position (col, row) of the frame point (x, y): the inverse of ``_to_frame``."""
        height, width = self.shape
        det = self.cos_t**2 + self.sin_t**2
        y_rel = y - 0.5 - self.shift_y
        c = (self.cos_t * x - self.sin_t * y_rel) / det
        r = (self.sin_t * x + self.cos_t * y_rel) / det
        return (c + self.center_x) * width - 0.5, (r + 0.5) * height - 0.5


def body_frame(rng: np.random.Generator, height: int, width: int) -> BodyFrame:
    """Builds body-frame coordinates with a random patient position, size and tilt."""
    center_x = 0.5 + rng.uniform(-0.03, 0.03)
    shift_y = rng.uniform(-0.03, 0.025)
    scale = rng.uniform(0.92, 1.04)
    tilt = math.radians(rng.uniform(-4.0, 4.0))
    cos_t, sin_t = math.cos(tilt) / scale, math.sin(tilt) / scale
    params = (height, width, center_x, shift_y, cos_t, sin_t)
    coarse = min(height, width) >= COARSE_MIN_SIZE
    # Pixel centres are at index + 0.5; the grid's points at 2 i + 1, from i = -1.
    pixels = np.arange(height) + 0.5, np.arange(width) + 0.5
    if not coarse:
        return BodyFrame(*_coordinates(params, *pixels), width * scale, center_x, shift_y, cos_t, sin_t)
    points = 2.0 * np.arange(-1, (height + 1) // 2 + 1) + 1.0, 2.0 * np.arange(-1, (width + 1) // 2 + 1) + 1.0
    grid = _coordinates(params, *points, exact=False)
    return BodyFrame(*_coordinates(params, *pixels, lazy=True), width * scale, center_x, shift_y, cos_t, sin_t, *grid)


class LazyCoordinate:
    """A float32 body-frame coordinate of every pixel, ``row[r] + col[c]``, computed when indexed like an array.

    For phantoms on the half-resolution grid, which read the pixels' coordinates only over small windows (the
    heart, the trachea, the findings): filling image-sized arrays would cost more than all of those reads.

    Attributes:
        shape: (H, W) of the image.
    """

    def __init__(self, row: np.ndarray, col: np.ndarray) -> None:
        self._row, self._col = row.astype(FLOAT), col.astype(FLOAT)
        self.shape = (row.size, col.size)

    def __getitem__(self, key: tuple[slice | int, slice | int]) -> np.ndarray:
        """The coordinate over (rows, cols): a new float32 array, or a float32 scalar for one pixel."""
        row, col = self._row[key[0]], self._col[key[1]]
        return row[:, None] + col[None, :] if np.ndim(row) and np.ndim(col) else row + col


def _coordinates(
    params: tuple[int, int, float, float, float, float],
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    exact: bool = True,
    lazy: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[LazyCoordinate, LazyCoordinate]:
    """Read-only float32 (x, y) of the points ``rows`` x ``cols`` (positions in pixels).

    ``exact``: summed in float64 and rounded once, chunk by chunk, through one float64 scratch array (a ufunc
    that casts into its float32 output is three times slower); otherwise summed in float32, three times faster
    again, to a float32 rounding or two (the rule for phantoms on the half-resolution grid, ``COARSE_MIN_SIZE``).
    ``lazy``: summed in float32 when indexed (``LazyCoordinate``).
    """
    height, width, center_x, shift_y, cos_t, sin_t = params
    col = cols / width - center_x
    row = rows / height - 0.5
    row_x, col_x = row * sin_t, col * cos_t
    row_y, col_y = 0.5 + shift_y + row * cos_t, col * sin_t
    if lazy:
        # y = row_y - col_y: adding the negated term rounds the same.
        return LazyCoordinate(row_x, col_x), LazyCoordinate(row_y, -col_y)
    if not exact:
        row_x, col_x, row_y, col_y = (term.astype(FLOAT) for term in (row_x, col_x, row_y, col_y))
    x = np.empty((rows.size, cols.size), dtype=FLOAT)
    y = np.empty_like(x)
    step = max(1, _CHUNK_PIXELS // max(1, cols.size))
    scratch = np.empty((min(step, rows.size), cols.size), dtype=row_x.dtype)
    for start in range(0, rows.size, step):
        band = slice(start, min(rows.size, start + step))
        part = scratch[: band.stop - band.start]
        np.add(row_x[band, None], col_x[None, :], out=part)
        x[band] = part
        np.subtract(row_y[band, None], col_y[None, :], out=part)
        y[band] = part
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


@dataclass(frozen=True)
class Grid:
    """The points a term is evaluated at: a chunk of the image's pixels, or points of the half-resolution grid.

    Attributes:
        x: (h, w) float32 body-frame x of the points.
        y: (h, w) float32 body-frame y of the points.
        rows: (h,) float64 positions of the points' rows in pixels (a pixel's centre is its index + 0.5).
        cols: (w,) float64 positions of the points' columns in pixels.
        window: The pixels, when the points are pixels; None on the half-resolution grid.
    """

    x: np.ndarray
    y: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    window: Window | None

    def smooth(self, field: SmoothFieldLike) -> np.ndarray:
        """A ``fields.SmoothField`` at the points: (h, w) float32."""
        return field.window(*self.window) if self.window is not None else field.at(self.rows, self.cols)


class SmoothFieldLike(Protocol):
    """What ``Grid.smooth`` needs of a ``fields.SmoothField``."""

    def window(self, rows: slice, cols: slice) -> np.ndarray: ...

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray: ...


class Field:
    """One or more terms of a structure over a window, as functions of the points: ``compute(grid)``.

    ``field(chunk)`` gives the terms over a chunk of the window's pixels. On a phantom drawn pixel by pixel it
    is ``compute`` evaluated on the chunk's pixels. On the half-resolution grid (``BodyFrame.coarse``),
    ``compute`` runs once, on the grid's points around the window, and ``field(chunk)`` interpolates them
    (``fields.upsample2``): a quarter of the work, for terms that are continuous, or smooth over a few pixels.
    A mask made from a field (a threshold on it) is exact for the image when the image takes its edge from that
    mask, whatever grid the field came from.
    """

    def __init__(self, frame: BodyFrame, window: Window, compute: Callable[[Grid], np.ndarray | tuple[np.ndarray, ...]]) -> None:
        self._frame, self._compute = frame, compute
        self._points: list[np.ndarray] | None = None
        rows, cols = window
        if not frame.coarse or rows.start >= rows.stop or cols.start >= cols.stop:
            return
        # The grid points around the window's pixels (see ``upsample2``), evaluated in chunks.
        self._origin = ((rows.start - 1) // 2, (cols.start - 1) // 2)
        size = ((rows.stop - 2) // 2 + 2 - self._origin[0], (cols.stop - 2) // 2 + 2 - self._origin[1])
        positions = [2.0 * (origin + np.arange(count)) + 1.0 for origin, count in zip(self._origin, size, strict=True)]
        grid_cols = slice(self._origin[1] + 1, self._origin[1] + 1 + size[1])
        self._tuple = False
        for chunk_rows, _ in row_chunks((slice(0, size[0]), slice(0, size[1]))):
            grid_rows = slice(chunk_rows.start + self._origin[0] + 1, chunk_rows.stop + self._origin[0] + 1)
            x, y = frame.grid_x[grid_rows, grid_cols], frame.grid_y[grid_rows, grid_cols]
            terms = compute(Grid(x, y, positions[0][chunk_rows], positions[1], None))
            self._tuple = isinstance(terms, tuple)
            terms = terms if self._tuple else (terms,)
            if self._points is None:
                self._points = [np.empty(size, dtype=FLOAT) for _ in terms]
            for points, term in zip(self._points, terms, strict=True):
                points[chunk_rows] = term

    def __call__(self, chunk: Window) -> np.ndarray | tuple[np.ndarray, ...]:
        """The terms over ``chunk`` (inside the window): chunk-sized float32 arrays, as ``compute`` returns them."""
        if self._points is None:
            rows, cols = chunk
            grid = Grid(
                self._frame.x[chunk],
                self._frame.y[chunk],
                np.arange(rows.start, rows.stop) + 0.5,
                np.arange(cols.start, cols.stop) + 0.5,
                chunk,
            )
            return self._compute(grid)
        terms = tuple(upsample2(points, self._origin, chunk) for points in self._points)
        return terms if self._tuple else terms[0]

    def term(self, chunk: Window, index: int) -> np.ndarray:
        """Term ``index`` of a tuple of terms over ``chunk``: on the half-resolution grid, the only one interpolated."""
        if self._points is None:
            return self(chunk)[index]
        return upsample2(self._points[index], self._origin, chunk)

    def compare(self, window: Window, index: int | None, compare: np.ufunc, level: float) -> np.ndarray:
        """``compare(term, level)`` over ``window`` (inside the field's window), term ``index`` of a tuple (None: the
        one term): window-sized bool. On the half-resolution grid only the blocks along the outline are interpolated
        (``fields.upsample2_compare``), with the same result."""
        if self._points is None:
            out = np.empty((window[0].stop - window[0].start, window[1].stop - window[1].start), dtype=bool)
            for chunk in row_chunks(window):
                terms = self(chunk)
                compare(terms if index is None else terms[index], level, out=out[relative(chunk, window)])
            return out
        return upsample2_compare(self._points[0 if index is None else index], self._origin, window, compare, level)

    def at_blocks(self, blocks: Window) -> np.ndarray | tuple[np.ndarray, ...]:
        """On the half-resolution grid, the terms at the centres of ``blocks`` (of the window, ``block_window``).

        Returns:
            Views of the grid's values, as ``compute`` returns them.
        """
        assert self._points is not None, "a field of a phantom drawn pixel by pixel, or of an empty window"
        part = tuple(slice(span.start - origin, span.stop - origin) for span, origin in zip(blocks, self._origin, strict=True))
        terms = tuple(points[part] for points in self._points)
        return terms if self._tuple else terms[0]


def block_window(window: Window) -> Window:
    """The 2x2 pixel blocks of the half-resolution grid that hold the pixels of ``window`` (block i: pixels 2i, 2i + 1)."""
    return slice(window[0].start // 2, (window[0].stop + 1) // 2), slice(window[1].start // 2, (window[1].stop + 1) // 2)


def _slice(start: int, stop: int, size: int) -> slice:
    """slice(start, stop) clipped to [0, size], with stop >= start."""
    start = min(max(0, start), size)
    return slice(start, max(start, min(stop, size)))


def intersect(first: Window, second: Window) -> Window:
    """The overlap of two windows of the same image (possibly empty)."""
    rows = slice(max(first[0].start, second[0].start), max(first[0].start, second[0].start, min(first[0].stop, second[0].stop)))
    cols = slice(max(first[1].start, second[1].start), max(first[1].start, second[1].start, min(first[1].stop, second[1].stop)))
    return rows, cols


def relative(inner: Window, outer: Window) -> Window:
    """``inner`` (inside ``outer``) in the coordinates of an array that holds ``outer``."""
    return (
        slice(inner[0].start - outer[0].start, inner[0].stop - outer[0].start),
        slice(inner[1].start - outer[1].start, inner[1].stop - outer[1].start),
    )


def side_windows(frame: BodyFrame, distance: tuple[float, float], y_range: tuple[float, float]) -> list[Window]:
    """Windows of a region mirrored about the midline: low <= |x| <= high and y in ``y_range``.

    Two windows, one per side, when their pixels do not overlap; otherwise the one window holding both,
    so that a term added over the returned windows is added once to every pixel.
    """
    low, high = distance
    windows = [frame.window((-high, -low), y_range), frame.window((low, high), y_range)]
    overlap = intersect(windows[0], windows[1])
    if overlap[0].start < overlap[0].stop and overlap[1].start < overlap[1].stop:
        return [frame.window((-high, high), y_range)]
    return windows


def row_chunks(window: Window) -> Iterator[Window]:
    """Splits a window into bands of whole rows, about ``_CHUNK_PIXELS`` pixels each."""
    rows, cols = window
    step = max(1, _CHUNK_PIXELS // max(1, cols.stop - cols.start))
    for start in range(rows.start, rows.stop, step):
        yield slice(start, min(rows.stop, start + step)), cols


def evaluate(window: Window, compute: Callable[[Window], np.ndarray], dtype: type = FLOAT) -> np.ndarray:
    """``compute(chunk)`` over the row chunks of ``window``, assembled into one window-sized array."""
    out = np.empty((window[0].stop - window[0].start, window[1].stop - window[1].start), dtype=dtype)
    for chunk in row_chunks(window):
        out[relative(chunk, window)] = compute(chunk)
    return out
