"""The Trainers' input: whole-set shuffling of class-ordered records, one filtered pass, validation by patient."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from components import features as F
from components.trainer import common
from components.trainer.hparams import HParams

SPEC = {
    F.LABELS_XF: tf.io.FixedLenFeature([1], tf.float32),
    F.PATIENT_XF: tf.io.FixedLenFeature([], tf.string),
    F.HAS_MASK_XF: tf.io.FixedLenFeature([], tf.float32),
}


class TransformedSpec:
    """What read_transformed asks of a TFTransformOutput: the transformed feature spec of the records below."""

    def transformed_feature_spec(self) -> dict[str, tf.io.FixedLenFeature]:
        return dict(SPEC)


def _write(path: str, rows: list[tuple[float, str, float]]) -> str:
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        for label, patient, has_mask in rows:
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        F.LABELS_XF: tf.train.Feature(float_list=tf.train.FloatList(value=[label])),
                        F.PATIENT_XF: tf.train.Feature(bytes_list=tf.train.BytesList(value=[patient.encode()])),
                        F.HAS_MASK_XF: tf.train.Feature(float_list=tf.train.FloatList(value=[has_mask])),
                    }
                )
            )
            w.write(example.SerializeToString())
    return path


@pytest.fixture
def class_ordered(tmp_path) -> str:
    """400 records as ingestion may write them: all negatives, then all positives; 2 images per patient, 1 in 8 masked."""
    rows = [(float(i >= 200), f"patient{i // 2}", float(i % 8 == 0)) for i in range(400)]
    return _write(str(tmp_path / "data.gz"), rows)


def test_training_batches_mix_the_classes_of_class_ordered_records(class_ordered):
    ds, count = common.read_transformed([class_ordered], TransformedSpec(), shuffle_seed=0)
    assert count == 400
    first = np.array([float(f[F.LABELS_XF][0]) for f in ds.take(64)])
    # A whole-set shuffle: about half of the first 64 are positives (a 256-record buffer over these 400 records
    # would give none, since the first 200 are all negative).
    assert 16 <= first.sum() <= 48, first.sum()
    # Each pass is a new order, every record once per pass.
    passes = [[f[F.PATIENT_XF].numpy() for f in ds.skip(400 * k).take(400)] for k in range(2)]
    assert sorted(passes[0]) == sorted(passes[1]) and passes[0] != passes[1]


def test_evaluation_order_is_file_order_and_the_filter_runs_once(class_ordered):
    has_mask = lambda f: f[F.HAS_MASK_XF] > 0  # noqa: E731
    ds, count = common.read_transformed([class_ordered], TransformedSpec(), keep=has_mask)
    assert count == 50
    patients = [f[F.PATIENT_XF].numpy().decode() for f in ds.take(51)]
    assert patients[:3] == ["patient0", "patient4", "patient8"] and patients[50] == "patient0"  # repeats after 50


def test_nothing_left_after_the_filter_is_an_error(class_ordered):
    with pytest.raises(ValueError, match="no usable examples"):
        common.read_transformed([class_ordered], TransformedSpec(), keep=lambda f: f[F.HAS_MASK_XF] > 1)
    with pytest.raises(ValueError, match="no transformed examples match"):
        common.read_transformed(["/nonexistent/*.gz"], TransformedSpec())


def test_validation_holds_out_whole_patients_of_the_training_split(class_ordered, tmp_path):
    hp = HParams(validation_fraction=0.2, min_validation_examples=10)
    train, n_train, validation, n_validation = common.train_and_validation(
        [class_ordered], TransformedSpec(), lambda f: tf.constant(True), hp, str(tmp_path)
    )
    assert n_train + n_validation == 400
    assert 40 <= n_validation <= 120, n_validation  # 20% of 200 patients, by hash
    train_patients = {f[F.PATIENT_XF].numpy() for f in train.take(n_train)}
    validation_patients = {f[F.PATIENT_XF].numpy() for f in validation.take(n_validation)}
    assert len(train_patients) + len(validation_patients) == 200
    assert not train_patients & validation_patients
    # The same patients every time (a hash of the salted id, no randomness).
    again = common.train_and_validation([class_ordered], TransformedSpec(), lambda f: tf.constant(True), hp, str(tmp_path))
    assert {f[F.PATIENT_XF].numpy() for f in again[2].take(again[3])} == validation_patients


def test_too_few_held_out_examples_means_no_validation(class_ordered, tmp_path):
    hp = HParams(validation_fraction=0.2, min_validation_examples=1000)
    _, n_train, validation, n_validation = common.train_and_validation(
        [class_ordered], TransformedSpec(), lambda f: tf.constant(True), hp, str(tmp_path)
    )
    assert (n_train, validation, n_validation) == (400, None, 0)
    _, n_train, validation, _ = common.train_and_validation(
        [class_ordered], TransformedSpec(), lambda f: tf.constant(True), dataclasses.replace(hp, validation_fraction=0.0), None
    )
    assert (n_train, validation) == (400, None)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_learning_rate_schedule(schedule):
    hp = HParams(learning_rate=0.01, lr_schedule=schedule)
    lr = common.learning_rate(hp, total_steps=1000)
    if schedule == "constant":
        assert lr == 0.01
    else:
        # Warm-up over the first 5% of the steps to the peak, then cosine down to 0 at the end.
        assert float(lr(0)) == pytest.approx(0.0, abs=1e-9)
        assert float(lr(50)) == pytest.approx(0.01, rel=1e-5)
        assert float(lr(525)) == pytest.approx(0.005, rel=1e-3)
        assert float(lr(1000)) == pytest.approx(0.0, abs=1e-7)


def test_bad_training_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        HParams(lr_schedule="step")
    with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 0.5\)"):
        HParams(validation_fraction=0.5)
