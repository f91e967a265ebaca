"""The Trainers' fit (components/trainer/common.py): the training step is traced once, and trains as Keras alone does."""

from __future__ import annotations

import types

import numpy as np
import tensorflow as tf
import tf_keras as keras

from components.trainer import common, segmentation
from components.trainer.hparams import HParams

HP = HParams(seg_size=16, base_filters=4, depth=1, batch_size=4, epochs=1, lr_schedule="constant", augment=False)
STEPS = 3


def _data() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(HP.batch_size * STEPS, HP.seg_size, HP.seg_size, 1)).astype(np.float32)
    masks = (rng.random(images.shape) > 0.5).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((images, masks)).batch(HP.batch_size).repeat()


def _model(weights: list[np.ndarray] | None = None) -> keras.Model:
    model = segmentation.build_model(HP, total_steps=STEPS)  # Adam: slot variables for every weight
    if weights is not None:
        model.set_weights(weights)
    return model


def test_the_training_step_is_traced_once_and_trains_as_keras_alone_does(tmp_path):
    fn_args = types.SimpleNamespace(model_run_dir=str(tmp_path / "model_run"), train_steps=STEPS)
    ours = _model()
    initial = ours.get_weights()
    common.fit(ours, fn_args, HP, _data(), None, (HP.batch_size * STEPS, 0), HP.batch_size, monitor="dice")
    assert ours.train_function.experimental_get_tracing_count() == 1

    # Keras alone creates the slots in the first step: its step is traced twice (what build_optimizer spares).
    alone = _model(initial)
    alone.fit(_data(), epochs=1, steps_per_epoch=STEPS, verbose=0)
    assert alone.train_function.experimental_get_tracing_count() == 2
    assert int(ours.optimizer.iterations) == int(alone.optimizer.iterations) == STEPS
    for got, want in zip(ours.get_weights(), alone.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(w, w0) for w, w0 in zip(ours.get_weights(), initial, strict=True))  # it trained


def test_build_optimizer_is_idempotent_and_leaves_models_without_an_optimizer_alone():
    model = _model()
    common.build_optimizer(model)
    slots = len(model.optimizer.variables)
    assert slots > 2 * len(model.trainable_variables)  # Adam: two slots per weight (and the iteration count)
    common.build_optimizer(model)
    assert len(model.optimizer.variables) == slots
    uncompiled = segmentation.build_segmentation_model("unet", HP.seg_size, HP.base_filters, HP.depth)
    common.build_optimizer(uncompiled)  # nothing to build
