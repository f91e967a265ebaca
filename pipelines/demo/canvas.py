"""Where a phantom's attenuation is summed: its pixels, or for large phantoms the means of its 2x2 pixel blocks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipelines.demo.fields import downsample2
from pipelines.demo.frame import FLOAT, BodyFrame, Field, Grid, Window, block_window, relative, row_chunks

# The 99.7th percentile that maps to white is taken over about this many samples along each axis.
_REFERENCE_SAMPLES = 128


class Canvas:
    """A phantom's attenuation, summed structure by structure from the body's depth.

    A phantom drawn pixel by pixel adds every term to its pixels. On the half-resolution grid
    (``BodyFrame.coarse``) the canvas holds the means of the 2x2 pixel blocks (the blur, the noise and the film
    curve work on them, ``phantom.py``), and a term is evaluated once a block, at its centre, weighted by the
    fraction of the block's pixels inside the term's mask and window: the masks stay exact at full resolution,
    and a term costs a quarter of the work and no interpolation.

    Attributes:
        values: (H, W) float32 attenuation, or (ceil(H / 2), ceil(W / 2)) block means on the grid.
    """

    def __init__(self, frame: BodyFrame, values: np.ndarray) -> None:
        """Starts from float32 ``values`` on the canvas's grid: (H, W), or (ceil(H / 2), ceil(W / 2)) block means."""
        self._frame = frame
        self.values = values
        self._coverage: dict[int, np.ndarray] = {}
        self._extents: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @staticmethod
    def shape(frame: BodyFrame) -> tuple[int, int]:
        """The shape of the values of ``frame``'s canvas."""
        height, width = frame.shape
        return ((height + 1) // 2, (width + 1) // 2) if frame.coarse else (height, width)

    @property
    def whole(self) -> Window:
        """The window of all the canvas's values."""
        return slice(0, self.values.shape[0]), slice(0, self.values.shape[1])

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """An (H, W) bool mask on the canvas's grid: itself, or the fraction of each block's pixels in it."""
        return self._mask_coverage(mask, self._frame.whole) if self._frame.coarse else mask

    def add(
        self,
        window: Window,
        compute: Callable[[Grid], np.ndarray],
        *,
        scale: float | None = None,
        mask: np.ndarray | None = None,
        mask_window: Window | None = None,
    ) -> None:
        """Adds ``compute(grid)`` (times ``scale``, times ``mask``) over the pixels of ``window``.

        Args:
            window: The pixels where the term can be non-zero.
            compute: The term at the points of a ``Grid``, float32.
            scale: A factor applied before the mask.
            mask: Bool mask the term is multiplied by, over ``mask_window`` (default: the whole image), which
                holds ``window``.
            mask_window: The pixels ``mask`` covers.
        """
        mask_window = self._frame.whole if mask_window is None else mask_window
        if not self._frame.coarse:
            term_of = Field(self._frame, window, compute)
            for chunk in row_chunks(window):
                values = term_of(chunk)
                if scale is not None:
                    values *= scale
                if mask is not None:
                    values *= mask[relative(chunk, mask_window)]
                self.values[chunk] += values
            return
        blocks, rows, cols = _blocks(window, self._frame.shape)
        if blocks[0].start >= blocks[0].stop or blocks[1].start >= blocks[1].stop:
            return
        coverage = None
        if mask is not None:
            inner = relative(blocks, _blocks(mask_window, self._frame.shape)[0])
            coverage = self._mask_coverage(mask, mask_window)[inner]
            extent = self._extents[id(mask)]
        positions = [2.0 * np.arange(span.start, span.stop) + 1.0 for span in blocks]
        for chunk, _ in row_chunks(blocks):
            part, inside = slice(chunk.start - blocks[0].start, chunk.stop - blocks[0].start), slice(0, cols.size)
            if coverage is not None:
                # Only the blocks the mask reaches: the term is zero on the others.
                part, inside = _reached(extent, inner, part)
                if part.start >= part.stop:
                    continue
            grid_rows = slice(part.start + blocks[0].start + 1, part.stop + blocks[0].start + 1)
            grid_cols = slice(inside.start + blocks[1].start + 1, inside.stop + blocks[1].start + 1)
            values = compute(
                Grid(
                    self._frame.grid_x[grid_rows, grid_cols],
                    self._frame.grid_y[grid_rows, grid_cols],
                    positions[0][part],
                    positions[1][inside],
                    None,
                )
            )
            if scale is not None:
                values *= scale
            if coverage is not None:
                values *= coverage[part, inside]
            # Blocks cut by the window's edges: the term counts for the window's pixels only.
            if rows[part][0] != 1.0 or rows[part][-1] != 1.0:
                values *= rows[part, None]
            if cols[inside][0] != 1.0 or cols[inside][-1] != 1.0:
                values *= cols[inside]
            self.values[grid_rows.start - 1 : grid_rows.stop - 1, grid_cols.start - 1 : grid_cols.stop - 1] += values

    def add_blocks(self, window: Window, values: np.ndarray, mask: np.ndarray) -> None:
        """On the half-resolution grid, adds a term given at the centres of the blocks of ``window`` (``block_window``),
        times the window-sized bool ``mask`` (the term is zero outside it)."""
        self.values[block_window(window)] += values * self._mask_coverage(mask, window)

    def add_patch(self, window: Window, values: np.ndarray) -> None:
        """Adds window-sized float32 ``values`` (zero outside the window) to the pixels of ``window``."""
        if not self._frame.coarse:
            self.values[window] += values
            return
        blocks, _, _ = _blocks(window, self._frame.shape)
        self.values[blocks] += downsample2(_pad_to_blocks(values, window, self._frame.shape))

    def reference(self, percentile: float) -> float:
        """The ``percentile`` of the attenuation over a sub-sampled grid of about 128 x 128 of its values."""
        height, width = self.values.shape
        stride_y, stride_x = max(1, height // _REFERENCE_SAMPLES), max(1, width // _REFERENCE_SAMPLES)
        return float(np.percentile(self.values[::stride_y, ::stride_x], percentile))

    def _mask_coverage(self, mask: np.ndarray, mask_window: Window) -> np.ndarray:
        """The fraction of each block's pixels in ``mask`` (over the blocks of ``mask_window``), made once a mask."""
        if id(mask) not in self._coverage:
            padded = _pad_to_blocks(mask, mask_window, self._frame.shape).view(np.uint8)
            pairs = padded[0::2] + padded[1::2]
            counts = pairs[:, 0::2] + pairs[:, 1::2]
            self._coverage[id(mask)] = counts.astype(FLOAT) * FLOAT(0.25)
            # Each row's first and last block (plus one) the mask reaches; (width, 0) where it reaches none.
            reached = counts > 0
            some = reached.any(axis=1)
            first = np.where(some, reached.argmax(axis=1), counts.shape[1])
            self._extents[id(mask)] = (
                first,
                np.where(some, counts.shape[1] - np.ascontiguousarray(reached[:, ::-1]).argmax(axis=1), 0),
            )
        return self._coverage[id(mask)]


def _reached(extent: tuple[np.ndarray, np.ndarray], inner: Window, rows: slice) -> tuple[slice, slice]:
    """The bounding box, within ``rows`` of the blocks ``inner`` of a mask's blocks, of those the mask reaches
    (``extent``: each row's first and last block plus one): (rows, columns) relative to ``inner``."""
    part = slice(inner[0].start + rows.start, inner[0].start + rows.stop)
    first = np.maximum(extent[0][part] - inner[1].start, 0)
    last = np.minimum(extent[1][part] - inner[1].start, inner[1].stop - inner[1].start)
    found = np.flatnonzero(last > first)
    if found.size == 0:
        return slice(rows.start, rows.start), slice(0, 0)
    low, high = int(found[0]), int(found[-1]) + 1
    return slice(rows.start + low, rows.start + high), slice(int(first[low:high].min()), int(last[low:high].max()))


def _blocks(window: Window, shape: tuple[int, int]) -> tuple[Window, np.ndarray, np.ndarray]:
    """The blocks holding the pixels of ``window``, and along each axis the fraction of their pixels in it.

    Block i holds pixels 2i and 2i + 1; an odd image's last block is its last pixel, repeated (``downsample2``).
    """
    spans, fractions = [], []
    for pixels, size in zip(window, shape, strict=True):
        first, stop = pixels.start // 2, (pixels.stop + 1) // 2
        fraction = np.ones(max(0, stop - first), dtype=FLOAT)
        if fraction.size:
            if pixels.start % 2:
                fraction[0] *= 0.5
            if pixels.stop % 2 and pixels.stop < size:
                fraction[-1] *= 0.5
        spans.append(slice(first, stop))
        fractions.append(fraction)
    return (spans[0], spans[1]), fractions[0], fractions[1]


def _pad_to_blocks(values: np.ndarray, window: Window, shape: tuple[int, int]) -> np.ndarray:
    """Window-sized ``values`` padded to whole blocks: zeros outside the window, an odd image's last pixel repeated."""
    pads = []
    for pixels, size in zip(window, shape, strict=True):
        before = pixels.start % 2
        after = (pixels.stop - pixels.start + before) % 2
        pads.append((before, after, pixels.stop == size))
    if not any(before or after for before, after, _ in pads):
        return values
    # np.pad by hand (zeros around the window), without its overhead.
    padded = np.zeros(
        [size + before + after for size, (before, after, _) in zip(values.shape, pads, strict=True)], dtype=values.dtype
    )
    padded[pads[0][0] : pads[0][0] + values.shape[0], pads[1][0] : pads[1][0] + values.shape[1]] = values
    for axis, (_, after, at_edge) in enumerate(pads):
        if after and at_edge:
            # The image's last row (column) stands for the whole of its block.
            if axis == 0:
                padded[-1] = padded[-2]
            else:
                padded[:, -1] = padded[:, -2]
    return padded
