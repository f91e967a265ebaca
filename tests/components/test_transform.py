"""preprocessing_fn under tft_unit: exact decoded outputs for tiny synthetic images, masks and labels."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform.beam import tft_unit
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components import features as F
from components.transform.preprocessing import RAW_INPUT_SPEC, preprocessing_fn

RAW_METADATA = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_INPUT_SPEC))
PNG_HEADER = "_png_header"  # suffix of the test-only outputs: (bit depth, colour type) of each PNG output

# 0..15 as a 4x4 ramp; 17 * RAMP spans 0..255 exactly.
RAMP = np.arange(16, dtype=np.int64).reshape(4, 4)

MASK_6 = np.array(
    [
        [0, 1, 1, 2, 2, 0],
        [1, 1, 1, 2, 2, 2],
        [1, 1, 0, 0, 2, 2],
        [1, 1, 0, 0, 2, 2],
        [1, 1, 1, 2, 2, 2],
        [0, 1, 1, 2, 2, 0],
    ]
)
# Nearest neighbour with half-pixel centres keeps rows/columns 0, 2, 3, 5.
MASK_6_TO_4 = np.array(
    [
        [0, 1, 2, 0],
        [1, 0, 0, 2],
        [1, 0, 0, 2],
        [0, 1, 2, 0],
    ]
)
MASK_4 = np.array(
    [
        [0, 1, 2, 0],
        [1, 1, 2, 2],
        [1, 0, 0, 2],
        [0, 1, 2, 0],
    ]
)
MASK_4_TO_8 = np.array(
    [
        [0, 0, 1, 1, 2, 2, 0, 0],
        [0, 0, 1, 1, 2, 2, 0, 0],
        [1, 1, 1, 1, 2, 2, 2, 2],
        [1, 1, 1, 1, 2, 2, 2, 2],
        [1, 1, 0, 0, 0, 0, 2, 2],
        [1, 1, 0, 0, 0, 0, 2, 2],
        [0, 0, 1, 1, 2, 2, 0, 0],
        [0, 0, 1, 1, 2, 2, 0, 0],
    ]
)


def _png(pixels: np.ndarray, dtype: type = np.uint8) -> bytes:
    """(H, W) integer pixels -> grayscale PNG bytes, 8-bit for uint8 and 16-bit for uint16."""
    return tf.io.encode_png(np.asarray(pixels, dtype)[..., None]).numpy()


def _raw(
    image: bytes,
    mask: bytes = b"",
    known: dict[str, bool] | None = None,
    source: str = "test",
    patient: str = "p1",
) -> dict[str, Any]:
    """One raw instance as preprocessing_fn's docstring describes it."""
    labels, label_known = F.label_vector(known or {})
    return {
        F.IMAGE: [image],
        F.MASK: [mask],
        F.HAS_MASK: [int(bool(mask))],
        F.LABELS: labels,
        F.LABEL_KNOWN: label_known,
        F.SOURCE: [source.encode()],
        F.PATIENT_ID: [patient.encode()],
    }


def _decode_pngs(encoded: tf.Tensor, size: int) -> tf.Tensor:
    """(B,) uint8 PNG -> (B, size, size) int64 pixels."""
    decode = lambda e: tf.reshape(tf.cast(tf.io.decode_png(e, channels=1), tf.int64), [size, size])
    return tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec([size, size], tf.int64))


def _png_header(encoded: tf.Tensor) -> tf.Tensor:
    """(B,) PNG -> (B, 2) int64: the IHDR bit depth and colour type (0 = grayscale)."""
    raw = tf.io.decode_raw(tf.strings.substr(encoded, 24, 2), tf.uint8)
    return tf.cast(tf.reshape(raw, [-1, 2]), tf.int64)


def _decoded_fn(seg_size: int, cls_size: int, keep: Sequence[str]) -> Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]:
    """preprocessing_fn with its PNG outputs decoded to pixels (plus their PNG headers), keeping `keep`."""
    config = {"seg_size": seg_size, "cls_size": cls_size}
    sizes = {F.SEG_IMAGE_XF: seg_size, F.CLS_IMAGE_XF: cls_size, F.MASK_XF: seg_size}

    def fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        outputs = preprocessing_fn(inputs, config)
        for key, size in sizes.items():
            outputs[key + PNG_HEADER] = _png_header(outputs[key])
            outputs[key] = _decode_pngs(outputs[key], size)
        return {key: outputs[key] for key in keep}

    return fn


def _images(seg: np.ndarray, cls: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Expected image outputs: pixels and 8-bit grayscale PNG headers."""
    cls = seg if cls is None else cls
    header = np.array([8, 0])
    return {F.SEG_IMAGE_XF: seg, F.CLS_IMAGE_XF: cls, F.SEG_IMAGE_XF + PNG_HEADER: header, F.CLS_IMAGE_XF + PNG_HEADER: header}


IMAGE_KEYS = (F.SEG_IMAGE_XF, F.CLS_IMAGE_XF, F.SEG_IMAGE_XF + PNG_HEADER, F.CLS_IMAGE_XF + PNG_HEADER)


class PreprocessingFnTest(tft_unit.TransformTestCase):
    def test_refuses_bad_sizes(self):
        for config in ({"seg_size": 0}, {"cls_size": "128"}, {"seg_size": True}):
            with self.assertRaisesRegex(ValueError, r"custom_config\['(seg|cls)_size'\] must be a positive int"):
                preprocessing_fn({}, config)

    @tft_unit.named_parameters(
        dict(testcase_name="downsample_6_to_4", mask=MASK_6, size=4, expected=MASK_6_TO_4),
        dict(testcase_name="upsample_4_to_8", mask=MASK_4, size=8, expected=MASK_4_TO_8),
    )
    def test_masks_keep_their_labels_under_nearest_resize(self, mask, size, expected):
        image = _png(np.zeros(mask.shape))
        input_data = [_raw(image, _png(mask), source="with", patient="p1"), _raw(image, source="without", patient="p2")]
        expected_data = [
            {F.MASK_XF: expected, F.MASK_XF + PNG_HEADER: [8, 0], F.HAS_MASK_XF: 1.0, F.SOURCE_XF: b"with", F.PATIENT_XF: b"p1"},
            {
                F.MASK_XF: np.zeros([size, size], np.int64),
                F.MASK_XF + PNG_HEADER: [8, 0],
                F.HAS_MASK_XF: 0.0,
                F.SOURCE_XF: b"without",
                F.PATIENT_XF: b"p2",
            },
        ]
        keep = (F.MASK_XF, F.MASK_XF + PNG_HEADER, F.HAS_MASK_XF, F.SOURCE_XF, F.PATIENT_XF)
        self.assertAnalyzeAndTransformResults(input_data, RAW_METADATA, _decoded_fn(size, size, keep), expected_data)

    def test_each_image_is_stretched_over_its_own_range(self):
        # At the input size the resize is the identity, so the stretch alone decides every pixel.
        input_data = [
            _raw(_png(3 + 68 * RAMP, np.uint16)),  # 16-bit holding 3..1023 (10 bits stored)
            _raw(_png(190 - 10 * RAMP)),  # 8-bit holding 40..190, reversed
            _raw(_png(np.full((4, 4), 500), np.uint16)),  # constant: nothing to stretch
        ]
        expected_data = [_images(17 * RAMP), _images(255 - 17 * RAMP), _images(np.zeros((4, 4), np.int64))]
        self.assertAnalyzeAndTransformResults(input_data, RAW_METADATA, _decoded_fn(4, 4, IMAGE_KEYS), expected_data)

    def test_seg_and_cls_sizes_may_differ(self):
        step = np.repeat([[0, 0, 0, 0, 255, 255, 255, 255]], 8, axis=0)
        # Antialiased bilinear at scale 1/2 weighs 4 input columns 1/8, 3/8, 3/8, 1/8 (fewer, renormalised, at
        # the borders): 255/8 = 31.875 and 255 * 7/8 = 223.125.
        cls = np.repeat([[0, 32, 223, 255]], 4, axis=0)
        input_data = [_raw(_png(step), _png(np.ones((8, 8))))]
        keep = (*IMAGE_KEYS, F.MASK_XF)
        expected_data = [{**_images(step, cls), F.MASK_XF: np.ones((8, 8), np.int64)}]
        self.assertAnalyzeAndTransformResults(input_data, RAW_METADATA, _decoded_fn(8, 4, keep), expected_data)

    def test_full_pass_statistics_labels_and_serving(self):
        rng = np.random.default_rng(0)
        full_range = rng.integers(0, 256, size=(4, 4))
        full_range[0, :2] = [0, 255]  # min 0 and max 255: the stretch leaves it as it is
        images = [full_range, 17 * RAMP, np.zeros((4, 4), np.int64)]
        input_data = [
            _raw(_png(full_range), known={"Effusion": True, "Nodule": False}, source="a"),
            _raw(_png(3 + 68 * RAMP, np.uint16), known={"No Finding": True}, source="b"),
            _raw(_png(np.full((4, 4), 7)), source="c"),
        ]
        pixels = np.concatenate([i.ravel() for i in images]) / 255.0
        stats = {"intensity_mean_xf": pixels.mean(), "intensity_std_xf": pixels.std()}
        unknown = -np.ones(F.NUM_LABELS)
        labels = [unknown.copy(), unknown.copy(), unknown]
        labels[0][F.LABEL_INDEX["Effusion"]], labels[0][F.LABEL_INDEX["Nodule"]] = 1.0, 0.0
        labels[1][F.LABEL_INDEX["No Finding"]] = 1.0
        expected_data = [
            {F.CLS_IMAGE_XF: image, F.LABELS_XF: label, F.SOURCE_XF: source, **stats}
            for image, label, source in zip(images, labels, (b"a", b"b", b"c"), strict=True)
        ]
        keep = (F.CLS_IMAGE_XF, F.LABELS_XF, F.SOURCE_XF, *stats)
        temp_dir = os.path.join(self.get_temp_dir(), self._testMethodName)
        self.assertAnalyzeAndTransformResults(input_data, RAW_METADATA, _decoded_fn(4, 4, keep), expected_data, temp_dir=temp_dir)

        # Serving feeds only the image through the same graph; the statistics are constants in it by then.
        layer = tft.TFTransformOutput(temp_dir).transform_features_layer()
        served = layer({F.IMAGE: tf.constant([[_png(3 + 68 * RAMP, np.uint16)]])})
        self.assertCountEqual(served, [F.CLS_IMAGE_XF, *stats])
        self.assertAllEqual(served[F.CLS_IMAGE_XF][0], 17 * RAMP)
        for key, value in stats.items():
            self.assertAllClose(served[key], [value], atol=1e-6)
