"""Tests for the procedural chest X-ray phantom."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from pipelines.demo.frame import COARSE_MIN_SIZE
from pipelines.demo.phantom import Findings, Phantom, random_findings, render_phantom

SEEDS = range(20)
_ALL = Findings(cardiomegaly=True, effusion=True, opacity=True, tb=True)


def _lung_mean(phantom: Phantom, reference: Phantom) -> float:
    """Mean image value over the reference phantom's lungs."""
    return float(phantom.image[reference.mask > 0].astype(np.float64).mean())


def test_same_seed_gives_identical_arrays() -> None:
    findings = Findings(cardiomegaly=True, effusion=True, opacity=True, tb=True)
    first = render_phantom(7, 128, findings)
    second = render_phantom(7, 128, findings)
    for name in ("image", "mask", "body", "heart"):
        assert getattr(first, name).tobytes() == getattr(second, name).tobytes(), name
    assert (first.sex, first.age_years, first.cardiothoracic_ratio) == (
        second.sex,
        second.age_years,
        second.cardiothoracic_ratio,
    )


# Phantoms as rendered on 2026-11-30 (tests/pipelines/demo/reference/): the tests' archives (64 and 128 px) and the
# demo (256 px) depend on them, so speeding up large phantoms must never change them. Compared within one grey level
# on at most 0.1 % of the pixels, not byte for byte: the float32 maths may round differently on another CPU or BLAS
# build (here: x86-64 AVX2, the pinned numpy's OpenBLAS on one thread, where they are identical).
REFERENCE = Path(__file__).parent / "reference"
_PINNED = [
    (0, 64, Findings(), 8),
    (3, 128, Findings(effusion=True, tb=True), 8),
    (11, 128, _ALL, 16),
    (9, 256, _ALL, 8),
]


@pytest.mark.parametrize(("seed", "size", "findings", "bit_depth"), _PINNED)
def test_small_phantoms_keep_their_pixels(seed: int, size: int, findings: Findings, bit_depth: int) -> None:
    phantom = render_phantom(seed, size, findings, bit_depth)
    stem = REFERENCE / f"phantom_s{seed}_{size}px_{bit_depth}bit"
    image, mask = np.asarray(Image.open(f"{stem}.png")), np.asarray(Image.open(f"{stem}_mask.png"))
    assert phantom.image.dtype == image.dtype and phantom.image.shape == image.shape
    grey_level = (2**bit_depth - 1) // 255
    moved = np.abs(phantom.image.astype(np.int64) - image) > 0
    assert np.abs(phantom.image.astype(np.int64) - image).max() <= grey_level
    assert moved.mean() <= 0.001, f"{moved.sum()} of {moved.size} pixels moved"
    assert (phantom.mask != mask).mean() <= 0.001


def test_different_seeds_give_different_anatomy() -> None:
    a, b = render_phantom(1, 128), render_phantom(2, 128)
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.mask, b.mask)
    # Anatomy must vary enough that a segmentation model has to look at the pixels.
    masks = np.stack([render_phantom(seed, 128).mask > 0 for seed in range(8)])
    union, intersection = masks.any(axis=0).sum(), masks.all(axis=0).sum()
    assert intersection / union < 0.6


@pytest.mark.parametrize("size", [32, 128, 256])
def test_array_shapes_and_dtypes(size: int) -> None:
    phantom = render_phantom(3, size)
    assert phantom.image.shape == phantom.mask.shape == phantom.body.shape == phantom.heart.shape == (size, size)
    assert phantom.image.dtype == np.uint8
    assert phantom.mask.dtype == np.uint8
    assert phantom.body.dtype == np.bool_
    assert phantom.heart.dtype == np.bool_
    assert phantom.sex in ("M", "F")
    assert 18 <= phantom.age_years <= 85


def test_non_square_height() -> None:
    phantom = render_phantom(4, 96, height=160)
    assert phantom.image.shape == phantom.mask.shape == (160, 96)
    assert set(np.unique(phantom.mask)) == {0, 1, 2}


@pytest.mark.parametrize("seed", SEEDS)
def test_masks_are_consistent(seed: int) -> None:
    phantom = render_phantom(seed, 128, Findings(effusion=seed % 2 == 0, cardiomegaly=seed % 3 == 0))
    mask = phantom.mask
    assert set(np.unique(mask).tolist()) == {0, 1, 2}
    lungs = mask > 0
    assert not (lungs & ~phantom.body).any(), "lungs outside the body"
    assert not (lungs & phantom.heart).any(), "lungs overlap the heart"
    assert not (phantom.heart & ~phantom.body).any(), "heart outside the body"
    half = mask.shape[1] // 2
    # Radiological convention: the patient's right lung (label 1) is on the image left.
    assert (mask[:, :half] == 1).sum() > 0.95 * (mask == 1).sum()
    assert (mask[:, half:] == 2).sum() > 0.95 * (mask == 2).sum()
    for label in (1, 2):
        assert (mask == label).mean() > 0.04
    # Lungs are dark: aerated lung is darker than the rest of the body.
    body_only = phantom.body & ~lungs
    assert phantom.image[lungs].mean() < phantom.image[body_only].mean() - 40
    assert phantom.image[~phantom.body].mean() < phantom.image[lungs].mean()


def test_cardiothoracic_ratio_follows_cardiomegaly() -> None:
    for seed in SEEDS:
        normal = render_phantom(seed, 128)
        enlarged = render_phantom(seed, 128, Findings(cardiomegaly=True))
        assert 0.3 < normal.cardiothoracic_ratio < 0.45, seed
        assert 0.5 < enlarged.cardiothoracic_ratio < 0.7, seed
        assert enlarged.heart.sum() > normal.heart.sum()
        # Same patient: only the heart (and the lung it displaces) differs.
        assert np.array_equal(normal.body, enlarged.body)
        assert (normal.sex, normal.age_years) == (enlarged.sex, enlarged.age_years)


def test_cardiothoracic_ratio_matches_drawn_masks() -> None:
    phantom = render_phantom(11, 256, Findings(cardiomegaly=True))
    heart_cols = np.flatnonzero(phantom.heart.any(axis=0))
    lung_cols = np.flatnonzero((phantom.mask > 0).any(axis=0))
    heart_width = heart_cols[-1] - heart_cols[0] + 1
    thorax_width = lung_cols[-1] - lung_cols[0] + 1
    assert phantom.cardiothoracic_ratio == pytest.approx(heart_width / thorax_width, abs=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_effusion_removes_fluid_from_one_lung(seed: int) -> None:
    clear = render_phantom(seed, 128)
    wet = render_phantom(seed, 128, Findings(effusion=True))
    areas_clear = [int((clear.mask == label).sum()) for label in (1, 2)]
    areas_wet = [int((wet.mask == label).sum()) for label in (1, 2)]
    lost = [c - w for c, w in zip(areas_clear, areas_wet, strict=True)]
    assert sorted(lost)[0] == 0, "the other lung is unchanged"
    affected = int(np.argmax(lost))
    assert lost[affected] > 0.03 * areas_clear[affected]
    # The fluid is at the lung base and replaces dark air with bright fluid.
    fluid = (clear.mask == affected + 1) & (wet.mask == 0)
    rows = np.flatnonzero(fluid.any(axis=1))
    lung_rows = np.flatnonzero((clear.mask == affected + 1).any(axis=1))
    assert rows.mean() > lung_rows.mean()
    assert wet.image[fluid].mean() > clear.image[fluid].mean() + 30
    assert not (wet.mask > clear.mask).any()


@pytest.mark.parametrize("finding", ["opacity", "tb"])
def test_lesions_brighten_lungs_and_keep_the_mask(finding: str) -> None:
    for seed in range(10):
        clean = render_phantom(seed, 128)
        sick = render_phantom(seed, 128, replace(Findings(), **{finding: True}))
        assert np.array_equal(sick.mask, clean.mask)
        assert _lung_mean(sick, clean) > _lung_mean(clean, clean)
        # Outside the lungs the image is untouched (apart from blur spilling over the border).
        outside = ~(clean.mask > 0)
        changed = sick.image != clean.image
        assert (changed & outside).sum() < 0.1 * changed.sum()


def test_tb_lesions_are_in_an_upper_zone() -> None:
    for seed in range(6):
        clean = render_phantom(seed, 128)
        sick = render_phantom(seed, 128, Findings(tb=True))
        diff = sick.image.astype(np.int32) - clean.image.astype(np.int32)
        strong = diff > 20
        lung_rows = np.flatnonzero((clean.mask > 0).any(axis=1))
        middle = (lung_rows[0] + lung_rows[-1]) / 2
        assert strong.any()
        assert np.nonzero(strong)[0].mean() < middle


def test_findings_only_change_their_own_stream() -> None:
    base = render_phantom(5, 96)
    full = render_phantom(5, 96, Findings(effusion=True, opacity=True, tb=True))
    # Outside the lungs (and the blur margin) the patient is exactly the same.
    near = base.mask > 0
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            near |= np.roll(base.mask > 0, (dy, dx), axis=(0, 1))
    far = ~near
    assert far.sum() > 0.4 * far.size
    assert np.array_equal(base.image[far], full.image[far])
    assert not np.array_equal(base.image[near], full.image[near])
    assert np.array_equal(base.heart, full.heart)
    assert base.cardiothoracic_ratio == full.cardiothoracic_ratio


def test_bit_depth_16_uses_12_bits() -> None:
    phantom = render_phantom(9, 128, bit_depth=16)
    assert phantom.image.dtype == np.uint16
    assert phantom.image.max() >= 4000
    assert phantom.image.max() <= 4095
    assert phantom.image.min() < 200
    eight = render_phantom(9, 128, bit_depth=8)
    assert np.array_equal(eight.mask, phantom.mask)
    # Same picture at a different depth: 16-bit / 16 is close to the 8-bit image.
    assert np.abs(phantom.image.astype(np.float64) / 4095 * 255 - eight.image).max() <= 1.0
    assert len(np.unique(phantom.image)) > 1000


def test_large_image_renders() -> None:
    phantom = render_phantom(0, 1024, Findings(opacity=True))
    assert phantom.image.shape == (1024, 1024)
    assert set(np.unique(phantom.mask)) == {0, 1, 2}


@pytest.mark.parametrize(
    ("width", "height", "bit_depth"), [(COARSE_MIN_SIZE, None, 8), (COARSE_MIN_SIZE + 7, COARSE_MIN_SIZE + 1, 16)]
)
def test_phantoms_on_the_half_resolution_grid(width: int, height: int | None, bit_depth: int) -> None:
    findings = Findings(cardiomegaly=True, effusion=True, tb=True)
    phantom = render_phantom(6, width, findings, bit_depth, height=height)
    again = render_phantom(6, width, findings, bit_depth, height=height)
    for name in ("image", "mask", "body", "heart"):
        assert getattr(phantom, name).tobytes() == getattr(again, name).tobytes(), name
    assert phantom.image.shape == (height or width, width)
    assert phantom.image.max() <= (255 if bit_depth == 8 else 4095)
    lungs = phantom.mask > 0
    assert not (lungs & ~phantom.body).any() and not (lungs & phantom.heart).any()
    # The image takes its edges from the masks: across the lungs' outline (a few pixels either side, the blur's
    # width) it is darker inside, and the body's outline against the air outside.
    for mask, darker_inside in ((lungs, True), (phantom.body, False)):
        inside = mask & ~ndimage.binary_erosion(mask, iterations=3)
        outside = ndimage.binary_dilation(mask, iterations=3) & ~mask
        gap = phantom.image[outside].mean() - phantom.image[inside].mean()
        assert (gap if darker_inside else -gap) > 0.1 * phantom.image.max()


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"seed": -1}, "seed must be >= 0"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"seed": True}, "seed must be an integer"),
        ({"seed": 0, "size": 16}, r"size must be in \[32, 8192\]"),
        ({"seed": 0, "size": 100.0}, "size must be an integer"),
        ({"seed": 0, "height": 8}, r"height must be in \[32, 8192\]"),
        ({"seed": 0, "bit_depth": 12}, "bit_depth must be one of"),
        ({"seed": 0, "findings": {"tb": True}}, "findings must be a Findings"),
    ],
)
def test_invalid_render_arguments(kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        render_phantom(**kwargs)  # type: ignore[arg-type]


def test_random_findings_prevalence() -> None:
    rng = np.random.default_rng(0)
    draws = [random_findings(rng, prevalence=0.4) for _ in range(2000)]
    abnormal = np.mean([f.any for f in draws])
    assert 0.36 < abnormal < 0.44
    assert all(not f.any for f in (random_findings(rng, 0.0) for _ in range(50)))
    assert all(f.any for f in (random_findings(rng, 1.0) for _ in range(50)))
    for name in ("cardiomegaly", "effusion", "opacity", "tb"):
        assert any(getattr(f, name) for f in draws), name
    again = np.random.default_rng(0)
    assert [random_findings(again, prevalence=0.4) for _ in range(2000)] == draws


@pytest.mark.parametrize("prevalence", [-0.1, 1.5, "0.4", True])
def test_random_findings_rejects_bad_prevalence(prevalence: object) -> None:
    with pytest.raises(ValueError, match="prevalence must be"):
        random_findings(np.random.default_rng(0), prevalence)  # type: ignore[arg-type]


def test_random_findings_rejects_bad_rng() -> None:
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        random_findings(0)  # type: ignore[arg-type]
