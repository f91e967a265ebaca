"""Subprocess for test_distribution.py: trains a tiny classifier a few SGD steps under one strategy, saves the result.

Usage: python distributed_worker.py local OUT_DIR        (writes single.npz, single_half.npz and mirrored.npz)
       python distributed_worker.py multiworker OUT.npz

Each mode runs in a fresh process because the strategies need TensorFlow unconfigured: logical CPU devices
must be declared, and MultiWorkerMirroredStrategy created, before TensorFlow initialises its runtime. The
one-device reference and MirroredStrategy share a process (one device of the two logical CPUs, then both).
"""

from __future__ import annotations

import os
import sys

# Before TensorFlow loads: CPU only (a GPU would change the numerics and, through distribution_strategy,
# switch on mixed precision), and Keras 2.
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import components  # noqa: E402,F401 - Keras 2 before TensorFlow

MODES = ("local", "multiworker")
SIZE, LABELS, EXAMPLES, STEPS, GLOBAL_BATCH = 16, 3, 40, 5, 8
LEARNING_RATE = 0.1


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(EXAMPLES, SIZE, SIZE, 1)).astype(np.float32)
    y = rng.integers(-1, 2, size=(EXAMPLES, LABELS)).astype(np.float32)  # 1 / 0 / -1 unknown
    return x, y


def _initial_weights(shapes):
    """Fixed initial weights from numpy, so every process and strategy starts from the same point."""
    import numpy as np

    rng = np.random.default_rng(1)
    weights = []
    for shape in shapes:
        if len(shape) > 1:
            std = (1.0 / np.prod(shape[:-1])) ** 0.5
            weights.append(rng.normal(0.0, std, shape).astype(np.float32))
        else:
            weights.append(rng.normal(0.0, 0.05, shape).astype(np.float32))
    return weights


def train(strategy, global_batch: int) -> dict:
    """Trains build_small_cnn for STEPS steps of `global_batch` examples (in order, no shuffling).

    Returns:
      {"losses": (STEPS,) the running-mean training loss Keras reports after each step, "final_loss": ()
      the loss of the trained model on all examples, "weights" and "initial": lists of arrays, "replicas": int}.
    """
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from components.models.classifier import build_small_cnn
    from components.models.losses import masked_bce_loss

    x, y = _data()
    with strategy.scope():
        # No BatchNorm (its per-replica batch statistics differ from one-device ones) and no dropout (random).
        model = build_small_cnn(SIZE, LABELS, filters=4, blocks=2, dropout=0.0, batch_norm=False)
        initial = _initial_weights([w.shape for w in model.get_weights()])
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss=masked_bce_loss)
        # Keras' default ("auto") SUMS the already all-reduced loss and metrics over the workers under
        # MultiWorkerMirroredStrategy, so fit() would log num_workers x the true values (training itself is
        # unaffected); "first" reports the synchronised value. The Trainers need the same setting.
        model.distribute_reduction_method = "first"
    # The step still runs as a tf.function graph under the strategy; only AutoGraph's rewrite of Keras' own
    # Python (which has no tensor-dependent control flow here) is skipped: it costs ~20 s of CPU per process.
    model.train_step = tf.autograph.experimental.do_not_convert(model.train_step)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch, drop_remainder=True)
    options = tf.data.Options()
    # Element-wise sharding: each worker sees its part of every global batch (there are no files to shard).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    losses: list[float] = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"])))
    model.fit(ds, epochs=1, steps_per_epoch=STEPS, shuffle=False, verbose=0, callbacks=[record])
    final_loss = float(np.mean(masked_bce_loss(y, model(x, training=False)).numpy()))
    return {
        "losses": np.array(losses),
        "final_loss": np.array(final_loss),
        "weights": [np.asarray(w) for w in model.get_weights()],
        "initial": initial,
        "replicas": strategy.num_replicas_in_sync,
    }


def _strategy_name(strategy) -> str:
    import tensorflow as tf

    # tf.distribute.MultiWorkerMirroredStrategy's class is named CollectiveAllReduceStrategy.
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__


def _save(path: str, result: dict, strategy) -> None:
    import numpy as np

    arrays = {f"weight_{i}": w for i, w in enumerate(result["weights"])}
    arrays.update({f"initial_{i}": w for i, w in enumerate(result["initial"])})
    np.savez(
        path,
        losses=result["losses"],
        final_loss=result["final_loss"],
        replicas=result["replicas"],
        strategy=np.array(_strategy_name(strategy)),
        **arrays,
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in MODES:
        print("usage: distributed_worker.py local OUT_DIR | multiworker OUT.npz", file=sys.stderr)
        return 2
    mode, out = argv
    if mode == "multiworker":
        # The strategy first, before any other TensorFlow op: MWMS must configure the runtime itself.
        from components.trainer import common

        strategy = common.distribution_strategy()
        _save(out, train(strategy, GLOBAL_BATCH), strategy)
        return 0
    import tensorflow as tf

    from components.trainer import common

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    single = common.distribution_strategy()
    if single.num_replicas_in_sync != 1:
        raise RuntimeError(f"expected one device without TF_CONFIG or GPUs, got {single}")
    _save(os.path.join(out, "single.npz"), train(single, GLOBAL_BATCH), single)
    # A control: half the global batch, i.e. what one replica alone would compute.
    _save(os.path.join(out, "single_half.npz"), train(single, GLOBAL_BATCH // 2), single)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    _save(os.path.join(out, "mirrored.npz"), train(mirrored, GLOBAL_BATCH), mirrored)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
