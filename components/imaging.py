"""Image normalisation for ingestion: decode any supported file to a grayscale array and encode lossless PNG."""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

# PNG encoding dominates ingestion cost; level 1 is ~5x faster than PIL's default 6 for ~15% larger files.
PNG_COMPRESS_LEVEL = 1
# PNG chunks that carry no text: a file holding only these can be stored as it is.
_HARMLESS_PNG_INFO = {"dpi", "gamma", "srgb", "chromaticity", "transparency", "aspect"}
# Only the formats of IMAGE_EXTENSIONS (the JPEG plugin also opens MPO camera files). Without this list PIL
# tries every plugin it has on unknown bytes, some of which (EPS) run external programs.
DECODABLE_FORMATS = ("PNG", "JPEG")
# PIL's own decompression-bomb ceiling: IngestOptions.max_pixels may not exceed it (PIL would refuse first).
PIL_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 2**62
# What PIL raises on malformed bytes: its hand-written header parsers leak struct/index/key errors.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error, zlib.error)


class ImageError(ValueError):
    """The bytes are not an image this pipeline can ingest; the message is the quarantine reason."""


def check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    """Refuses a size read from a header before any pixel is decoded.

    Raises:
      ImageError: a zero dimension, or more than max_pixels pixels (a decompression bomb guard).
    """
    if width <= 0 or height <= 0:
        raise ImageError(f"image has a zero dimension ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise ImageError(f"decompression bomb guard: image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels")


def check_geometry(shape: tuple[int, ...], min_side: int, max_aspect_ratio: float) -> None:
    """Refuses decoded pixels that cannot be a chest radiograph: a tiny side or an extreme aspect ratio.

    Args:
      shape: (H, W) of the decoded image.
      min_side: the shortest side allowed, in pixels.
      max_aspect_ratio: the largest allowed longest-side / shortest-side ratio.

    Raises:
      ImageError: with the measured size as the quarantine reason.
    """
    if len(shape) != 2:
        raise ImageError(f"expected a (H, W) image, got shape {shape}")
    height, width = shape
    if min(height, width) < min_side:
        raise ImageError(f"image of {width}x{height} pixels is below the minimum side of {min_side} pixels")
    ratio = max(height, width) / min(height, width)
    if ratio > max_aspect_ratio:
        raise ImageError(f"image of {width}x{height} pixels has an aspect ratio of {ratio:.1f}, above {max_aspect_ratio:g}")


def decode_image(data: bytes, max_pixels: int) -> tuple[np.ndarray, Image.Image]:
    """Decodes PNG/JPEG bytes to a grayscale array, refusing oversized images before decoding them.

    Args:
      data: the encoded file.
      max_pixels: images with more pixels are refused from their header (decompression-bomb guard).

    Returns:
      (pixels, pil_image): pixels is (H, W) uint8 or uint16; pil_image is the opened file (for its format).

    Raises:
      ImageError: empty, unreadable, truncated, non-PNG/JPEG, zero-sized or oversized input.
    """
    if not data:
        raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            # PIL only warns between its limit and twice it; past its limit the file is refused, not decoded.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=DECODABLE_FORMATS)
        check_pixel_count(img.width, img.height, max_pixels)
        img.load()
        pixels = to_grayscale(img)
    except ImageError:
        raise
    except Image.UnidentifiedImageError as e:
        kind = _signature(data)
        raise ImageError(
            f"not a readable image: corrupt {kind} header" if kind else "not a readable image: not a PNG or JPEG file"
        ) from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"decompression bomb guard: {e}") from e
    except _DECODE_ERRORS as e:
        raise ImageError(f"not a readable image: {e} ({type(e).__name__})") from e
    return pixels, img


def _signature(data: bytes) -> str | None:
    """The format the first bytes announce ("PNG", "JPEG"), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    return None


def to_grayscale(img: Image.Image) -> np.ndarray:
    """Converts a PIL image of any mode to (H, W) uint8 or uint16 without losing bit depth."""
    mode = img.mode
    if mode == "L":
        return np.asarray(img)
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("1", "P", "RGB", "RGBA", "LA", "PA", "CMYK", "YCbCr"):
        if mode in ("RGBA", "LA", "PA"):
            # Composite on black, the background of an X-ray, so transparent borders do not turn white.
            background = Image.new("RGBA", img.size, (0, 0, 0, 255))
            img = Image.alpha_composite(background, img.convert("RGBA"))
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16, copy=False)
    if mode in ("I", "F"):
        arr = np.asarray(img)
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0 and hi <= 65535 and np.all(np.mod(arr, 1) == 0):
            return arr.astype(np.uint16)
        return rescale_to_uint16(arr.astype(np.float64))
    raise ImageError(f"unsupported image mode {mode}")


def rescale_to_uint16(arr: np.ndarray) -> np.ndarray:
    """Linearly maps a float array's range onto [0, 65535] (for DICOM values after LUTs)."""
    if arr.size == 0:
        raise ImageError("image has no pixels")
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ImageError("image values are not finite")
    if hi <= lo:
        return np.zeros(arr.shape, np.uint16)
    return np.round((arr - lo) * (65535.0 / (hi - lo))).astype(np.uint16)


def bounded_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The (height, width) with the longest side at most max_side, aspect ratio kept."""
    if max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    longest = max(height, width)
    if longest <= max_side:
        return height, width
    scale = max_side / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes a (H, W) uint8/uint16 image to size=(h, w), antialiased bilinear, same dtype."""
    if pixels.shape == size:
        return pixels
    resized = Image.fromarray(pixels.astype(np.float32), mode="F").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    info = np.iinfo(pixels.dtype)
    return np.clip(np.round(np.asarray(resized)), info.min, info.max).astype(pixels.dtype)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes a (H, W) uint8 label map to size=(h, w) with nearest neighbour, so no new labels appear."""
    if mask.shape == size:
        return mask
    return np.asarray(Image.fromarray(mask, mode="L").resize((size[1], size[0]), Image.Resampling.NEAREST))


def png_header(data: bytes) -> tuple[int, int, int]:
    """(height, width, bit depth) from a PNG's IHDR chunk, without decoding it.

    Raises:
      ValueError: the bytes are not a PNG.
    """
    if len(data) < 26 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return height, width, data[24]


def encode_png(pixels: np.ndarray) -> bytes:
    """Encodes (H, W) uint8 or uint16 pixels as a lossless grayscale PNG."""
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a (H, W) uint8/uint16 array, got {pixels.shape} {pixels.dtype}")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def reusable_png(img: Image.Image, size: tuple[int, int]) -> bool:
    """Whether the original file can be stored as it is: grayscale PNG, no resize, no text chunks."""
    return (
        img.format == "PNG"
        and img.mode in ("L", "I;16")
        and (img.height, img.width) == size
        and not getattr(img, "text", None)
        and set(img.info) <= _HARMLESS_PNG_INFO
    )
