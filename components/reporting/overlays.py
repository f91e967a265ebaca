"""Best and worst segmentations for the report: the evaluated model run again on the eval split's masked images.

TFMA keeps no per-image results, only the metrics and the Dice histogram, so the images behind them are found by
running the same SavedModel through the same signatures TFMA calls (`serving_examples` for the prediction,
`eval_features` for the label) and scoring each image with the same function (evaluation.scores.segmentation_scores).
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import tensorflow as tf
from PIL import Image
from tfx.utils import path_utils

from components import features as F
from components.evaluation import scores as M
from components.reporting import examples as ex
from components.trainer import segmentation

BATCH = 16
# One scored image: dice, iou, hd95, image id, source, its transformed PNG, truth (S, S, 1), probabilities (S, S, 1).
_Scored = tuple[float, float, float, str, str, np.ndarray, np.ndarray, np.ndarray]


@dataclasses.dataclass
class Overlay:
    """One segmented eval image with its scores, for the report's best and worst grids."""

    image_id: str
    source: str
    dice: float
    iou: float
    hd95: float
    image: np.ndarray  # (S, S) float in [0, 1]: the model's input image (Transform's seg_image_xf)
    truth: np.ndarray  # (S, S) bool
    prediction: np.ndarray  # (S, S) bool at the threshold


@dataclasses.dataclass
class Overlays:
    """The scores of every masked eval image run again, and the best and worst of them."""

    images: int  # masked eval images scored
    mean_dice: float
    dice: list[float]  # every scored image's Dice
    best: list[Overlay]
    worst: list[Overlay]


def _masked_examples(examples_uri: str, split: str, limit: int) -> list[tuple[bytes, str, str]]:
    out = []
    files = ex.split_files(examples_uri).get(split) or []
    if not files:
        return out
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        feature = example.features.feature
        if feature[F.HAS_MASK].int64_list.value[0]:
            source = feature[F.SOURCE].bytes_list.value[0].decode()
            out.append((record.numpy(), feature[F.IMAGE_ID].bytes_list.value[0].decode(), source))
            if len(out) >= limit:
                break
    return out


def segmentation_overlays(
    model_uri: str, examples_uri: str, threshold: float = 0.5, count: int = 3, split: str = "eval", max_images: int = 500
) -> Overlays | None:
    """Scores the model on up to `max_images` masked images of `split`; keeps the `count` best and worst.

    Args:
      model_uri: the Trainer's Model artifact uri (its Format-Serving SavedModel is loaded).
      examples_uri: the raw Examples artifact the Evaluator read.
      threshold: the SegmentationMetrics threshold the Evaluator used.
      count: how many best and worst images to keep.
      split: the split TFMA evaluated.
      max_images: upper bound on the images scored.

    Returns:
      None when the split has no masked image.
    """
    records = _masked_examples(examples_uri, split, max_images)
    if not records:
        return None
    model = tf.saved_model.load(path_utils.serving_model_path(model_uri))
    predict = model.signatures[F.SERVING_EXAMPLE_SIGNATURE]
    labels = model.signatures[F.EVAL_FEATURES_SIGNATURE]
    transform = model.signatures[F.TRANSFORM_SIGNATURE]
    scored: list[_Scored] = []
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        serialized = tf.constant([r[0] for r in batch])
        probabilities = predict(examples=serialized)[segmentation.PREDICTION_KEY].numpy()
        truths = labels(examples=serialized)[segmentation.MASK_LABEL_KEY].numpy()
        images = transform(examples=serialized)[F.SEG_IMAGE_XF].numpy()
        for (_, image_id, source), p, t, png in zip(batch, probabilities, truths, images, strict=True):
            dice, iou, hd95 = M.segmentation_scores(t, p, threshold)
            scored.append((dice, iou, hd95, image_id, source, png, t, p))
    scored.sort(key=lambda s: (-s[0], s[3]))

    def overlay(s: _Scored) -> Overlay:
        dice, iou, hd95, image_id, source, png, t, p = s
        pixels = np.asarray(Image.open(io.BytesIO(bytes(np.asarray(png).reshape(-1)[0])))).astype(np.float64) / 255.0
        return Overlay(image_id, source, dice, iou, hd95, pixels, t[..., 0] > 0.5, p[..., 0] > threshold)

    count = min(count, len(scored))
    dice = [s[0] for s in scored]
    return Overlays(
        images=len(scored),
        mean_dice=float(np.mean(dice)),
        dice=dice,
        best=[overlay(s) for s in scored[:count]],
        worst=[overlay(s) for s in scored[::-1][:count]],
    )
