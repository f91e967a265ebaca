"""The image-domain part of the data contract, checked by the gate on a bounded sample of the Examples themselves.

TFDV's image statistics (the schema's `image_domain`) exist only for a feature with at least 100 sampled values
of which 80 % are images, so a small run, or one whose images are mostly broken, gets none and nothing is checked.
Here every sampled value is decoded: up to `limit` Examples per split, all of them in a smaller split.
"""

from __future__ import annotations

import collections
import io
import posixpath
import struct
from collections.abc import Iterable, Mapping

import numpy as np
import tensorflow as tf
from PIL import Image
from tensorflow_metadata.proto.v0 import schema_pb2

from components import features as F
from components.validation.checks import Finding

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_GRAY = 0  # IHDR colour type of a grayscale PNG without alpha
MASK_VALUES = (F.MASK_BACKGROUND, F.MASK_RIGHT_LUNG, F.MASK_LEFT_LUNG)


def image_features(schema: schema_pb2.Schema) -> dict[str, float | None]:
    """{feature: its image_domain's minimum_supported_image_fraction (None when unset)} for every image feature."""
    out = {}
    for f in schema.feature:
        if f.HasField("image_domain"):
            domain = f.image_domain
            out[f.name] = domain.minimum_supported_image_fraction if domain.HasField("minimum_supported_image_fraction") else None
    return out


def sample(paths: Iterable[str], limit: int) -> list[tf.train.Example]:
    """Up to `limit` Examples from TFRecord files (`*.gz` read as GZIP), spread over the files in name order.

    Raises:
      ValueError: limit < 1.
    """
    if limit < 1:
        raise ValueError(f"the number of Examples to check must be >= 1, got {limit}")
    paths = sorted(paths)
    out: list[tf.train.Example] = []
    for i, path in enumerate(paths):
        share = -(-(limit - len(out)) // (len(paths) - i))  # what is left, spread over the files left
        compression = "GZIP" if path.endswith(".gz") else ""
        for record in tf.data.TFRecordDataset(path, compression_type=compression).take(share):
            out.append(tf.train.Example.FromString(record.numpy()))
    return out


def split_files(split_uri: str) -> list[str]:
    """The TFRecord files of one split of an Examples artifact."""
    return [p for p in tf.io.gfile.glob(posixpath.join(split_uri, "*")) if not tf.io.gfile.isdir(p)]


def _bytes(ex: tf.train.Example, key: str) -> bytes:
    values = ex.features.feature[key].bytes_list.value
    return values[0] if values else b""


def _int(ex: tf.train.Example, key: str) -> int | None:
    values = ex.features.feature[key].int64_list.value
    return int(values[0]) if values else None


def _decode(data: bytes) -> tuple[Image.Image | None, str]:
    """(the decoded image, "") or (None, why it is no image)."""
    if not data:
        return None, "empty"
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:  # any failure to decode means "not an image", which is the finding
        return None, f"does not decode ({type(e).__name__})"
    return img, ""


def _png_header(data: bytes) -> tuple[int, int, int, int]:
    """(height, width, bit depth, colour type) from a PNG's IHDR chunk."""
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    return height, width, depth, colour


def _image_problems(ex: tf.train.Example, img: Image.Image, data: bytes) -> list[str]:
    """What breaks the contract of features.IMAGE: lossless grayscale PNG, 8 or 16 bit, not larger than the original."""
    if img.format != "PNG":
        return [f"Wrong image format {str(img.format).lower()}; the contract is ['png']"]
    height, width, depth, colour = _png_header(data)
    problems = []
    if colour != PNG_GRAY:
        problems.append(f"not a grayscale PNG (mode {img.mode})")
    if depth not in (8, 16):
        problems.append(f"bit depth {depth}, not 8 or 16")
    orig = (_int(ex, F.ORIG_HEIGHT), _int(ex, F.ORIG_WIDTH))
    if None not in orig and (height > orig[0] or width > orig[1]):
        problems.append("stored larger than its original size")
    return problems


def _mask_problems(ex: tf.train.Example, img: Image.Image | None, data: bytes, why: str) -> list[str]:
    """What breaks the contract of features.MASK: an 8-bit 0/1/2 label map of the image's size iff has_mask."""
    has_mask = _int(ex, F.HAS_MASK)
    if not data:
        return ["empty although has_mask is 1"] if has_mask == 1 else []
    if has_mask == 0:
        return ["not empty although has_mask is 0"]
    if img is None:
        return [f"not an image: {why}"]
    if img.format != "PNG":
        return [f"Wrong image format {str(img.format).lower()}; the contract is ['png']"]
    height, width, depth, colour = _png_header(data)
    if (depth, colour) != (8, PNG_GRAY):
        return [f"not an 8-bit grayscale label map (mode {img.mode})"]
    problems = []
    image, _ = _decode(_bytes(ex, F.IMAGE))
    if image is not None and image.size != img.size:
        problems.append("not the size of its image")
    if not np.isin(np.asarray(img), MASK_VALUES).all():
        problems.append(f"values outside {list(MASK_VALUES)}")
    return problems


def findings(examples: Iterable[tf.train.Example], features: Mapping[str, float | None], split: str) -> list[Finding]:
    """The image-domain findings of sampled Examples, one per source, feature and problem, naming an example.

    Args:
      examples: the sample of one split.
      features: image_features(schema): the features to check and their minimum share of decodable images.
      split: the split's name, for the findings' `where`.
    """
    checked: collections.Counter[str] = collections.Counter()
    found: dict[tuple[str, str, str], list[str]] = {}
    not_images: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for ex in examples:
        source = _bytes(ex, F.SOURCE).decode() or "?"
        image_id = _bytes(ex, F.IMAGE_ID).decode()
        checked[source] += 1
        for feature in features:
            data = _bytes(ex, feature)
            img, why = _decode(data)
            if feature == F.MASK:  # empty where has_mask is 0: its share of images is the source's business
                problems = _mask_problems(ex, img, data, why)
            elif img is None:
                not_images.setdefault((source, feature), []).append((image_id, why))
                problems = []
            else:
                problems = _image_problems(ex, img, data) if feature == F.IMAGE else []
            for problem in problems:
                found.setdefault((source, feature, problem), []).append(image_id)
    for (source, feature), bad in not_images.items():
        minimum = features[feature]
        if minimum is not None and (checked[source] - len(bad)) / checked[source] < minimum:
            image_id, why = bad[0]
            problem = f"Not an image ({why}); the schema's image_domain asks for at least {minimum:.0%} images"
            found[(source, feature, problem)] = [i for i, _ in bad]
    out = []
    for (source, feature, problem), ids in sorted(found.items()):
        what = f"{problem}: {len(ids)} of {checked[source]} checked examples (e.g. image_id {ids[0]})"
        out.append(Finding(f"split {split}, source {source}", feature, what))
    return out
