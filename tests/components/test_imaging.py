"""Image normalisation: modes, bit depth, bounded size, nearest-neighbour masks, refusal of bad bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from components import imaging


def _encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_16bit_png_keeps_values():
    arr = np.array([[0, 1000], [40000, 65535]], np.uint16)
    pixels, img = imaging.decode_image(_encode(Image.fromarray(arr)), max_pixels=100)
    assert pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels, arr)


def test_rgba_composited_on_black_then_gray():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 255, 255, 255)  # opaque white
    rgba[0, 1] = (255, 255, 255, 0)  # transparent white -> black background
    pixels, _ = imaging.decode_image(_encode(Image.fromarray(rgba, "RGBA")), max_pixels=100)
    assert pixels.dtype == np.uint8
    assert pixels[0, 0] == 255 and pixels[0, 1] == 0


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"not an image at all", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "not a readable image"),
    ],
)
def test_bad_bytes_are_refused_with_reason(data, reason):
    with pytest.raises(imaging.ImageError, match=reason):
        imaging.decode_image(data, max_pixels=100)


def test_truncated_png_is_refused():
    data = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)))
    with pytest.raises(imaging.ImageError, match="not a readable image"):
        imaging.decode_image(data[: len(data) // 2], max_pixels=10_000)


def test_too_many_pixels_is_refused():
    data = _encode(Image.fromarray(np.zeros((100, 100), np.uint8)))
    with pytest.raises(imaging.ImageError, match="exceeds the limit"):
        imaging.decode_image(data, max_pixels=9_999)


@pytest.mark.parametrize(
    "h, w, side, expected", [(100, 50, 200, (100, 50)), (1000, 500, 100, (100, 50)), (300, 1200, 600, (150, 600))]
)
def test_bounded_size(h, w, side, expected):
    assert imaging.bounded_size(h, w, side) == expected


def test_mask_resize_never_invents_labels():
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 5:25] = 1
    mask[10:30, 35:60] = 2
    small = imaging.resize_mask(mask, (23, 17))
    assert set(np.unique(small)) == {0, 1, 2}


def test_resize_keeps_16bit_range():
    arr = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    out = imaging.resize_image(arr, (32, 32))
    assert out.dtype == np.uint16 and out.max() > 60000 and out.min() < 2000


def test_png_reused_only_when_lossless_gray_and_in_size():
    gray = Image.fromarray(np.zeros((8, 8), np.uint8))
    opened = Image.open(io.BytesIO(_encode(gray)))
    assert imaging.reusable_png(opened, (8, 8))
    assert not imaging.reusable_png(opened, (4, 4))
    rgb = Image.open(io.BytesIO(_encode(Image.fromarray(np.zeros((8, 8, 3), np.uint8)))))
    assert not imaging.reusable_png(rgb, (8, 8))
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "patient DOE^JANE")
    with_text = Image.open(io.BytesIO(_encode(gray, pnginfo=info)))
    assert not imaging.reusable_png(with_text, (8, 8))
