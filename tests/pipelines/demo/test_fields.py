"""Tests for the phantom's smooth random fields, its blur and its fast arctangent."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from pipelines.demo.fields import (
    _CURVE_GRID,
    SmoothCurve,
    SmoothField,
    blurred_noise_std,
    coarse_noise,
    downsample2,
    gaussian_blur,
    grid_blur,
    smooth_noise,
    upsample2,
    upsample2_compare,
)
from pipelines.demo.markings import _arctan2


@pytest.mark.parametrize(("shape", "sigma"), [((100, 77), 1.2), ((256, 256), 0.6), ((40, 300), 2.4), ((33, 35), 19.0)])
def test_blur_is_ndimage_gaussian_filter(shape: tuple[int, int], sigma: float) -> None:
    image = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = ndimage.gaussian_filter(image.astype(np.float64), sigma, mode="nearest", radius=max(1, math.ceil(3 * sigma)))
    blurred = gaussian_blur(image, sigma)
    assert blurred.dtype == np.float32 and blurred.shape == shape
    np.testing.assert_allclose(blurred, expected, atol=1e-6)


def test_blur_of_zero_sigma_is_a_copy() -> None:
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    blurred = gaussian_blur(image, 0.0)
    np.testing.assert_array_equal(blurred, image)
    assert blurred is not image


def test_smooth_noise_has_unit_std_and_gaussian_autocorrelation() -> None:
    noise = smooth_noise(np.random.default_rng(1), (512, 512), 2.0)[20:-20, 20:-20].astype(np.float64)
    assert abs(noise.mean()) < 0.05
    assert noise.std() == pytest.approx(1.0, abs=0.03)
    for lag in (1, 2, 4):
        correlation = np.mean(noise[:, :-lag] * noise[:, lag:]) / noise.var()
        assert correlation == pytest.approx(math.exp(-(lag**2) / 16), abs=0.03)
    assert blurred_noise_std(0.0) == 1.0


def test_smooth_curve_interpolates_like_np_interp() -> None:
    rng = np.random.default_rng(2)
    curve = SmoothCurve(np.random.default_rng(3), cells=110, amplitude=1.0)
    t = rng.uniform(-1.5, 2.5, size=(64, 50)).astype(np.float32)
    expected = np.interp(t, _CURVE_GRID, curve._values.astype(np.float64))
    values = curve(t)
    assert values.dtype == np.float32 and values.shape == t.shape
    # Positions are computed in float32: 1e-4 of the curve's unit amplitude at worst.
    np.testing.assert_allclose(values, expected, atol=1e-4)
    assert np.abs(values).max() <= curve.bound + 1e-6


def test_smooth_field_windows_match_the_whole_field() -> None:
    field = SmoothField(np.random.default_rng(4), (90, 70), (7, 5))
    whole = field.window()
    assert whole.dtype == np.float32 and whole.shape == (90, 70)
    assert whole.std() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(field.window(slice(10, 40), slice(5, 66)), whole[10:40, 5:66], atol=1e-6)


def test_arctan2_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    y = rng.standard_normal(100_000).astype(np.float32)
    x = rng.standard_normal(100_000).astype(np.float32)
    y[:4], x[:4] = [0.0, 0.0, -0.0, 1.0], [0.0, -1.0, -1.0, 0.0]
    expected = np.arctan2(y.astype(np.float64), x.astype(np.float64))
    np.testing.assert_allclose(_arctan2(y, x), expected, atol=1e-6)


def _interpolated(points: np.ndarray, origin: tuple[int, int], rows: range, cols: range) -> np.ndarray:
    """np.interp along each axis: pixel r lies at grid position r / 2 - 0.25."""
    positions = [(np.array(pixels) / 2 - 0.25 - first) for pixels, first in zip((rows, cols), origin, strict=True)]
    across = np.array([np.interp(positions[1], np.arange(points.shape[1]), row) for row in points.astype(np.float64)])
    return np.array([np.interp(positions[0], np.arange(points.shape[0]), col) for col in across.T]).T


@pytest.mark.parametrize(("rows", "cols"), [((-4, 70), (12, 100)), ((-3, 69), (11, 99)), ((5, 6), (20, 21)), ((0, 10), (30, 31))])
def test_upsample2_is_bilinear_between_block_centres(rows: tuple[int, int], cols: tuple[int, int]) -> None:
    points = np.random.default_rng(0).standard_normal((40, 50)).astype(np.float32)
    origin = (-3, 5)
    window = (slice(*rows), slice(*cols))
    values = upsample2(points, origin, window)
    assert values.dtype == np.float32 and values.shape == (rows[1] - rows[0], cols[1] - cols[0])
    np.testing.assert_allclose(values, _interpolated(points, origin, range(*rows), range(*cols)), atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 10), (7, 9)])
def test_downsample2_takes_block_means(shape: tuple[int, int]) -> None:
    image = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    padded = np.pad(image, ((0, shape[0] % 2), (0, shape[1] % 2)), mode="edge").astype(np.float64)
    expected = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(downsample2(image), expected, atol=1e-6)


def test_smooth_field_at_pixel_centres_is_its_window() -> None:
    field = SmoothField(np.random.default_rng(4), (90, 70), (7, 5))
    rows, cols = np.arange(10, 40) + 0.5, np.arange(5, 66) + 0.5
    np.testing.assert_allclose(field.at(rows, cols), field.window(slice(10, 40), slice(5, 66)), atol=1e-5)


def test_coarse_noise_interpolated_matches_smooth_noise() -> None:
    # 2 px of correlation, as a 1024 px phantom's noise: drawn on a 256 x 256 grid, interpolated to 512 x 512.
    points = coarse_noise(np.random.default_rng(1), (256, 256), 2.0)
    noise = upsample2(np.pad(points, 1, mode="edge"), (-1, -1), (slice(0, 512), slice(0, 512)))[20:-20, 20:-20]
    noise = noise.astype(np.float64)
    assert abs(noise.mean()) < 0.05
    assert noise.std() == pytest.approx(1.0, abs=0.03)
    # The correlation of smooth_noise's (a Gaussian of 2 px) to within the interpolation's unevenness.
    for lag in (1, 2, 4):
        correlation = np.mean(noise[:, :-lag] * noise[:, lag:]) / noise.var()
        assert correlation == pytest.approx(math.exp(-(lag**2) / 16), abs=0.04)


def test_grid_blur_interpolated_matches_the_full_blur() -> None:
    # A bright disc with a sharp edge: the two blurs agree to a few thousandths of its contrast.
    yy, xx = np.mgrid[0:256, 0:256]
    image = ((yy - 120.3) ** 2 + (xx - 131.7) ** 2 < 60.0**2).astype(np.float32)
    full = gaussian_blur(image, 2.4)
    coarse = grid_blur(downsample2(image), 2.4)
    interpolated = upsample2(np.pad(coarse, 1, mode="edge"), (-1, -1), (slice(0, 256), slice(0, 256)))
    assert np.abs(interpolated - full).max() < 0.02


@pytest.mark.parametrize("seed", range(6))
def test_upsample2_compare_is_the_threshold_of_upsample2(seed: int) -> None:
    # Wavy fields with ties (rounded values) and windows starting and ending on odd and even pixels.
    rng = np.random.default_rng(seed)
    for _ in range(40):
        height, width = (int(size) for size in rng.integers(3, 30, 2))
        rows, cols = np.mgrid[0:height, 0:width]
        points = np.sin(rows * rng.uniform(0.1, 1.0)) + np.cos(cols * rng.uniform(0.1, 1.0)) + rng.normal(0, 0.3, (height, width))
        points = (np.round(points) if rng.random() < 0.3 else points).astype(np.float32)
        origin = (int(rng.integers(-3, 4)), int(rng.integers(-3, 4)))
        first = [2 * start + 1 + int(rng.integers(0, 3)) for start in origin]
        last = [2 * (start + size - 1) - int(rng.integers(0, 3)) for start, size in zip(origin, (height, width), strict=True)]
        if last[0] <= first[0] or last[1] <= first[1]:
            continue
        window = (slice(first[0], last[0]), slice(first[1], last[1]))
        for compare, level in ((np.greater, 0.0), (np.greater_equal, 0.0), (np.less_equal, 1.0)):
            expected = compare(upsample2(points, origin, window), level)
            np.testing.assert_array_equal(upsample2_compare(points, origin, window, compare, level), expected)
