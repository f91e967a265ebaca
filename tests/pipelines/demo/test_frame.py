"""Tests for the body frame's coordinates and windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.demo.frame import Field, Grid, body_frame, evaluate, row_chunks, side_windows


def _coordinates(seed: int, height: int, width: int):
    frame = body_frame(np.random.default_rng(seed), height, width)
    return frame, frame.x[frame.whole].astype(np.float64), frame.y[frame.whole].astype(np.float64)


@pytest.mark.parametrize("seed", range(6))
def test_window_holds_every_pixel_of_its_region(seed: int) -> None:
    frame, x, y = _coordinates(seed, 150, 120)
    rng = np.random.default_rng(100 + seed)
    for _ in range(40):
        x_low, x_high = np.sort(rng.uniform(-0.6, 0.6, 2))
        y_low, y_high = np.sort(rng.uniform(-0.1, 1.1, 2))
        rows, cols = frame.window((x_low, x_high), (y_low, y_high))
        inside = (x >= x_low) & (x <= x_high) & (y >= y_low) & (y <= y_high)
        outside_window = np.ones_like(inside)
        outside_window[rows, cols] = False
        assert not (inside & outside_window).any()


def test_window_of_a_region_off_the_image_is_empty() -> None:
    frame, _, _ = _coordinates(0, 64, 64)
    rows, cols = frame.window((2.0, 3.0), (0.0, 1.0))
    assert rows.stop - rows.start == 0 or cols.stop - cols.start == 0
    assert frame.window() == frame.whole
    assert frame.window((-math.inf, math.inf), (0.2, math.inf))[1] == slice(0, 64)


def test_coordinates_index_like_arrays() -> None:
    frame, x, y = _coordinates(3, 40, 30)
    assert frame.x[(7, 9)] == np.float32(x[7, 9])
    np.testing.assert_array_equal(frame.y[slice(5, 9), slice(2, 30)], y[5:9, 2:30].astype(np.float32))


def test_side_windows_never_overlap() -> None:
    frame, _, _ = _coordinates(1, 128, 128)
    far = side_windows(frame, (0.3, 0.45), (0.1, 0.9))
    near = side_windows(frame, (0.001, 0.2), (0.1, 0.9))
    assert len(far) == 2 and far[0][1].stop <= far[1][1].start
    assert len(near) == 1


def test_row_chunks_cover_a_window_once() -> None:
    window = (slice(3, 1000), slice(10, 900))
    chunks = list(row_chunks(window))
    assert len(chunks) > 1
    assert [c[1] for c in chunks] == [window[1]] * len(chunks)
    assert chunks[0][0].start == 3 and chunks[-1][0].stop == 1000
    assert all(a[0].stop == b[0].start for a, b in zip(chunks, chunks[1:], strict=False))


@pytest.mark.parametrize("size", [200, 1024])
def test_field_compare_is_the_threshold_of_the_field(size: int) -> None:
    # Pixel by pixel (200 px) and on the half-resolution grid (1024 px), over a window with odd edges.
    frame = body_frame(np.random.default_rng(3), size, size)

    def terms(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        return grid.x * grid.x + np.square(grid.y - 0.5) - 0.04, grid.x

    window = (slice(size // 7 + 1, size - size // 5), slice(size // 9, size - size // 6 + 1))
    field = Field(frame, window, terms)
    for index, compare, level in ((0, np.less_equal, 0.0), (1, np.greater, 0.0)):
        expected = evaluate(window, lambda chunk, index=index: field(chunk)[index])
        np.testing.assert_array_equal(field.compare(window, index, compare, level), compare(expected, level))
