"""Tests for the canvas the phantom's attenuation is summed on: pixels, or the half-resolution grid's blocks."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.demo.canvas import Canvas
from pipelines.demo.fields import downsample2
from pipelines.demo.frame import COARSE_MIN_SIZE, BodyFrame, Grid, Window, body_frame


def _term(grid: Grid) -> np.ndarray:
    """A smooth bump, zero outside |x| < 0.2, 0.3 < y < 0.7."""
    return np.clip(1.0 - np.square(grid.x / 0.2), 0.0, None) * np.clip(1.0 - np.square((grid.y - 0.5) / 0.2), 0.0, None)


def _pixels(frame: BodyFrame, window: Window) -> Grid:
    rows, cols = (np.arange(pixels.start, pixels.stop) + 0.5 for pixels in window)
    return Grid(frame.x[window], frame.y[window], rows, cols, window)


def test_small_canvas_adds_pixel_by_pixel() -> None:
    frame = body_frame(np.random.default_rng(0), 200, 180)
    assert not frame.coarse
    start = np.random.default_rng(1).random(frame.shape, dtype=np.float32)
    mask = np.random.default_rng(2).random(frame.shape) < 0.7
    canvas = Canvas(frame, start.copy())
    window = (slice(13, 170), slice(7, 151))
    canvas.add(window, _term, scale=0.9, mask=mask)
    expected = start.copy()
    values = _term(_pixels(frame, window))
    values *= 0.9
    values *= mask[window]
    expected[window] += values
    assert np.array_equal(canvas.values, expected)


@pytest.mark.parametrize("shape", [(COARSE_MIN_SIZE, COARSE_MIN_SIZE), (COARSE_MIN_SIZE + 1, COARSE_MIN_SIZE + 3)])
def test_coarse_canvas_holds_block_means(shape: tuple[int, int]) -> None:
    frame = body_frame(np.random.default_rng(0), *shape)
    assert frame.coarse
    start = np.random.default_rng(1).random(shape, dtype=np.float32)
    assert Canvas.shape(frame) == ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
    canvas = Canvas(frame, downsample2(start))

    # A patch at odd offsets, and one over the last row and column: exactly the block means of the pixels.
    full = start.copy()
    for window in [(slice(101, 240), slice(333, 480)), (slice(shape[0] - 37, shape[0]), slice(shape[1] - 21, shape[1]))]:
        patch = np.random.default_rng(3).random(
            (window[0].stop - window[0].start, window[1].stop - window[1].start), dtype=np.float32
        )
        canvas.add_patch(window, patch)
        full[window] += patch
    np.testing.assert_allclose(canvas.values, downsample2(full), atol=1e-5)


def test_coarse_canvas_term_matches_the_pixels_block_means() -> None:
    frame = body_frame(np.random.default_rng(4), COARSE_MIN_SIZE, COARSE_MIN_SIZE)
    mask = np.zeros(frame.shape, dtype=bool)
    mask[:, :517] = True  # an edge through the middle of a block column
    window = frame.window((-0.2, 0.2), (0.3, 0.7))
    canvas = Canvas(frame, np.zeros(Canvas.shape(frame), dtype=np.float32))
    canvas.add(window, _term, scale=2.0, mask=mask)
    full = np.zeros(frame.shape, dtype=np.float32)
    full[window] = 2.0 * _term(_pixels(frame, window)) * mask[window]
    # The term is evaluated once a block: the means agree to its curvature over a block, and where it is clipped to
    # zero, to its change over half a pixel (a slope of 20 a unit, 1 / 1024 of a unit a pixel).
    difference = np.abs(canvas.values - downsample2(full))
    assert difference.max() < 0.01
    assert difference.mean() < 1e-5
    assert canvas.values[:, 258].max() > 0.0 and canvas.values[:, 259].max() == 0.0


def test_coarse_canvas_mask_is_the_blocks_coverage() -> None:
    frame = body_frame(np.random.default_rng(5), COARSE_MIN_SIZE + 1, COARSE_MIN_SIZE)
    mask = np.random.default_rng(6).random(frame.shape) < 0.3
    canvas = Canvas(frame, np.zeros(Canvas.shape(frame), dtype=np.float32))
    np.testing.assert_allclose(canvas.mask(mask), downsample2(mask.astype(np.float32)), atol=1e-7)
    # Drawn pixel by pixel, the canvas multiplies by the mask itself.
    small, small_mask = body_frame(np.random.default_rng(5), 100, 90), mask[:100, :90]
    assert Canvas(small, np.zeros(small.shape, dtype=np.float32)).mask(small_mask) is small_mask
