"""Trainer run_fn for chest X-ray classification: multi-label, multi-class or binary, unknown labels masked."""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from components import features as F
from components.models.classifier import build_classifier
from components.models.losses import make_masked_bce_loss, make_masked_categorical_ce
from components.models.metrics import MaskedAUC, MaskedBinaryAccuracy, MaskedMacroAUC
from components.trainer import augment, common
from components.trainer.hparams import CLASSIFICATION_ARCHS
from components.trainer.tasks import ClassificationTask, balanced_weights, task_from_config

logger = logging.getLogger(__name__)

PREDICTION_KEY = F.CLASSIFICATION_PREDICTION
LABEL_NAMES_KEY = F.CLASSIFICATION_LABEL_NAMES


def _known(target: tf.Tensor) -> tf.Tensor:
    return tf.reduce_any(target >= 0.0)


def make_datasets(
    fn_args: Any,
    tf_transform_output: tft.TFTransformOutput,
    hp: common.HParams,
    task: ClassificationTask,
    global_batch: int,
    cache_dir: str,
) -> tuple[tf.data.Dataset, tf.data.Dataset | None, tuple[int, int]]:
    """(train, validation or None, (training count, validation count)): batches of (standardised image, target).

    Both come from the training split (validation = hp.validation_fraction of its patients); only training
    batches are augmented. Examples for which the task's target is wholly unknown are left out (they would
    teach nothing).
    """
    size = hp.cls_size
    config = augment.AugmentConfig()

    def example(f: dict[str, tf.Tensor], seed: tf.Tensor | None = None):
        image = common.decode_png(f[F.CLS_IMAGE_XF], size)
        if seed is not None:
            image = augment.augment_image(image, seed, config)
        stats = {k: f[k][None] for k in F.INTENSITY_XF}
        return common.standardize(image[None], stats)[0], task.targets(f[F.LABELS_XF][None])[0]

    keep = lambda f: _known(task.targets(f[F.LABELS_XF][None])[0])  # noqa: E731
    return common.training_datasets(fn_args.train_files, tf_transform_output, keep, example, hp, global_batch, cache_dir)


def training_targets(
    file_patterns: list[str], tf_transform_output: tft.TFTransformOutput, task: ClassificationTask
) -> np.ndarray:
    """(N, C) targets of every training example, read once (labels only) to weigh the classes."""
    files = sorted(f for p in file_patterns for f in tf.io.gfile.glob(p))
    spec = {F.LABELS_XF: tf_transform_output.transformed_feature_spec()[F.LABELS_XF]}
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").map(lambda s: tf.io.parse_single_example(s, spec)[F.LABELS_XF])
    rows = [task.targets(batch).numpy() for batch in ds.batch(1024)]
    return np.concatenate(rows) if rows else np.zeros((0, len(task.classes)), np.float32)


def build_model(
    hp: common.HParams, task: ClassificationTask, class_weights: list[float] | None, total_steps: int = 1
) -> keras.Model:
    """The compiled classifier (call inside the distribution strategy's scope)."""
    model = build_classifier(
        hp.arch_for(CLASSIFICATION_ARCHS),
        hp.cls_size,
        len(task.classes),
        activation=task.activation,
        alpha=hp.alpha,
        weights=hp.weights or None,
        dropout=hp.dropout,
        filters=hp.base_filters,
        blocks=hp.depth,
    )
    loss = make_masked_categorical_ce(class_weights) if task.kind == "multiclass" else make_masked_bce_loss(class_weights)
    metrics = [MaskedMacroAUC(len(task.classes)), MaskedAUC(), MaskedBinaryAccuracy()]
    model.compile(optimizer=keras.optimizers.Adam(common.learning_rate(hp, total_steps)), loss=loss, metrics=metrics)
    # Under MultiWorkerMirroredStrategy tf_keras would otherwise add up the already synchronised loss and
    # metrics of every worker (logged Dice above 1, early stopping on inflated numbers).
    model.distribute_reduction_method = "first"
    return model


def predict(model: keras.Model, xf: dict[str, tf.Tensor], size: int, classes: tuple[str, ...]) -> dict[str, tf.Tensor]:
    images = tf.map_fn(lambda e: common.decode_png(e, size), xf[F.CLS_IMAGE_XF], fn_output_signature=tf.float32)
    probs = model(common.standardize(images, xf), training=False)
    names = tf.tile(tf.constant([list(classes)]), [tf.shape(probs)[0], 1])
    return {PREDICTION_KEY: probs, LABEL_NAMES_KEY: names}


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point: trains the classifier and exports the serving model."""
    hp = common.HParams.from_custom_config(fn_args.custom_config)
    task = task_from_config(hp.task)
    keras.utils.set_random_seed(hp.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    class_weights = None
    if hp.class_balance == "balanced":
        class_weights = balanced_weights(training_targets(fn_args.train_files, tf_transform_output, task), task.kind)
        logger.info("class weights: %s", dict(zip(task.classes, class_weights, strict=True)))
    strategy = common.distribution_strategy()
    global_batch = hp.batch_size * strategy.num_replicas_in_sync
    with tempfile.TemporaryDirectory(prefix="cxr-classification-") as cache_dir:
        train, validation, counts = make_datasets(fn_args, tf_transform_output, hp, task, global_batch, cache_dir)
        with strategy.scope():
            model = build_model(hp, task, class_weights, total_steps=fn_args.train_steps)
        # Early stopping watches the metric that blesses (macro AUC), on held-out training patients.
        common.fit(model, fn_args, hp, train, validation, counts, global_batch, monitor="macro_auc")

    def eval_features(xf: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {F.LABELS_XF: task.targets(xf[F.LABELS_XF]), F.SOURCE_XF: xf[F.SOURCE_XF]}

    common.export(
        model,
        tf_transform_output,
        lambda m, xf: predict(m, xf, hp.cls_size, task.classes),
        eval_features,
        {},
        fn_args.serving_model_dir,
    )
