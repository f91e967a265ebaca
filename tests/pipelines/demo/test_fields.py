"""Tests for the phantom's smooth random fields, its blur and its fast arctangent."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from pipelines.demo.anatomy import _arctan2
from pipelines.demo.fields import _CURVE_GRID, SmoothCurve, SmoothField, blurred_noise_std, gaussian_blur, smooth_noise


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
