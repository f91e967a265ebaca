"""Models: build tiny, check shapes, dtypes and ranges, and that they can learn (gradients reach every weight and a
step against them lowers the loss on a fixed batch)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.models.classifier import BACKBONE_NAME, CLASSIFIERS, build_classifier, build_small_cnn
from components.models.losses import dice_bce_loss, dice_ce_loss, make_masked_bce_loss, masked_bce_loss
from components.models.resunet import build_resunet
from components.models.unet import SEGMENTATION_MODELS, build_segmentation_model, build_unet

SIZE = 32  # the smallest tf_keras.applications accept
SEG_SIZE = 16


def _images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, 1)).astype(np.float32)


def _assert_learns(model: keras.Model, loss, x: np.ndarray, y: np.ndarray) -> None:
    """What training needs of a model, and holds on any CPU: every trainable weight gets a finite, non-zero
    gradient, and a small step against the gradient lowers the loss by at least half of what the gradient predicts
    (Armijo backtracking over step sizes; a loss that "halves in N epochs" is numerics, and it failed elsewhere).

    Training mode throughout: BatchNorm normalises with the batch's own statistics, the same batch each time.
    """
    x, y = tf.constant(x), tf.constant(y)
    weights = model.trainable_variables

    def loss_now() -> tf.Tensor:
        return tf.reduce_mean(loss(y, model(x, training=True)))

    with tf.GradientTape() as tape:
        before = loss_now()
    grads = tape.gradient(before, weights)
    dead = [w.name for w, g in zip(weights, grads, strict=True) if g is None or not np.any(g.numpy())]
    assert not dead, f"no gradient reaches {dead}"
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    before, squared = float(before), float(sum(tf.reduce_sum(g * g) for g in grads))
    start = [w.numpy() for w in weights]
    tried = {}
    for fraction in (1e-2, 1e-3, 1e-4, 1e-5):  # predicted decrease: this fraction of the loss
        step = fraction * before / squared
        for w, g, w0 in zip(weights, grads, start, strict=True):
            w.assign(w0 - step * g)
        tried[fraction] = before - float(loss_now())
        if tried[fraction] >= 0.5 * fraction * before:
            return
    pytest.fail(f"no step against the gradient lowered the loss {before:.6g} as predicted: {tried}")


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


# --- Segmentation ---


@pytest.mark.parametrize("arch", sorted(SEGMENTATION_MODELS))
@pytest.mark.parametrize("num_classes", [1, 3])
def test_segmentation_shapes_and_ranges(arch, num_classes):
    keras.utils.set_random_seed(0)
    model = build_segmentation_model(arch, SEG_SIZE, base_filters=4, depth=2, num_classes=num_classes)
    out = model(_images(2, SEG_SIZE)).numpy()
    assert out.shape == (2, SEG_SIZE, SEG_SIZE, num_classes) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    if num_classes > 1:
        np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


def test_unet_default_arguments_unchanged():
    model = build_unet(64, base_filters=2)
    assert model.output_shape == (None, 64, 64, 1)
    assert model.get_layer("lung").activation is keras.activations.sigmoid
    assert len([layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]) == 4


@pytest.mark.parametrize("depth", [1, 3])
def test_resunet_is_residual_and_downsamples_by_stride(depth):
    model = build_resunet(SEG_SIZE, base_filters=2, depth=depth)
    layers = model.layers
    assert not [layer for layer in layers if isinstance(layer, keras.layers.MaxPooling2D)]
    # depth encoder/bridge units below the first, each with a stride-2 main conv and a stride-2 projection.
    assert len([layer for layer in layers if isinstance(layer, keras.layers.Conv2D) and layer.strides == (2, 2)]) == 2 * depth
    # One residual addition per unit: depth encoder units + bridge + depth decoder units.
    assert len([layer for layer in layers if isinstance(layer, keras.layers.Add)]) == 2 * depth + 1
    assert model.get_layer("bridge_add").output_shape == (None, SEG_SIZE // 2**depth, SEG_SIZE // 2**depth, 2 * 2**depth)


@pytest.mark.parametrize("arch", sorted(SEGMENTATION_MODELS))
@pytest.mark.parametrize("num_classes", [1, 3])
def test_segmentation_learns(arch, num_classes):
    keras.utils.set_random_seed(0)
    model = build_segmentation_model(arch, SEG_SIZE, base_filters=4, depth=2, num_classes=num_classes)
    x = _images(4, SEG_SIZE)
    lung = (x > 0.5).astype(np.float32)
    if num_classes == 1:
        y, loss = lung, dice_bce_loss
    else:  # label map: right lung (1) on the image's left half, left lung (2) on its right half
        y, loss = lung * np.where(np.arange(SEG_SIZE) < SEG_SIZE // 2, 1.0, 2.0)[None, None, :, None], dice_ce_loss
    _assert_learns(model, loss, x, y)


@pytest.mark.parametrize("arch", sorted(SEGMENTATION_MODELS))
def test_segmentation_output_float32_under_mixed_precision(arch, mixed_precision):
    model = build_segmentation_model(arch, SEG_SIZE, base_filters=2, depth=2, num_classes=3)
    assert model.get_layer("lung").compute_dtype == "float32" and model.output.dtype == tf.float32
    assert model.get_layer("skip0").compute_dtype == "float16"


@pytest.mark.parametrize(
    "arch, size, depth, num_classes, match",
    [
        ("unet", 30, 2, 1, "divisible by 2\\*\\*depth = 4"),
        ("resunet", 36, 3, 1, "divisible by 2\\*\\*depth = 8"),
        ("unet", 32, 0, 1, "depth must be >= 1"),
        ("resunet", 32, 2, 0, "num_classes must be >= 1"),
        ("segformer", 32, 2, 1, "unknown segmentation arch 'segformer'; known: \\['resunet', 'unet'\\]"),
    ],
)
def test_segmentation_refuses_bad_arguments(arch, size, depth, num_classes, match):
    with pytest.raises(ValueError, match=match):
        build_segmentation_model(arch, size, base_filters=4, depth=depth, num_classes=num_classes)


# --- Classification ---


@pytest.fixture(scope="module")
def classifiers() -> dict[str, keras.Model]:
    """One tiny model per arch (DenseNet121 and ResNet50 take seconds to build even at 32x32)."""
    keras.utils.set_random_seed(0)
    return {arch: build_classifier(arch, SIZE, 3, dropout=0.0) for arch in sorted(CLASSIFIERS)}


@pytest.mark.parametrize("arch", ["densenet121", "mobilenet_v2", "resnet50", "small_cnn"])
def test_classifier_shapes_and_ranges(classifiers, arch):
    model = classifiers[arch]
    out = model(_images(2), training=False).numpy()
    assert out.shape == (2, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert model.get_layer("probabilities").activation is keras.activations.sigmoid
    if arch != "small_cnn":
        assert model.get_layer(BACKBONE_NAME).input_shape == (None, SIZE, SIZE, 3)


@pytest.mark.parametrize("arch, alpha, first_filters", [("mobilenet_v2", 0.75, 24), ("small_cnn", 0.35, 16)])
def test_classifier_softmax_and_alpha(classifiers, arch, alpha, first_filters):
    model = build_classifier(arch, SIZE, 4, activation="softmax", alpha=alpha)
    out = model(_images(3), training=False).numpy()
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    if arch == "mobilenet_v2":  # alpha scales the width; the default is the seed's 0.35
        assert model.get_layer(BACKBONE_NAME).get_layer("Conv1").filters == first_filters
        assert classifiers[arch].get_layer(BACKBONE_NAME).get_layer("Conv1").filters == 16
    else:  # alpha is ignored
        assert model.get_layer("stem_conv").filters == first_filters
        assert model.get_layer("block3_1_conv").filters == 16 * 2**4  # filters double with every block


def test_classifier_output_float32_under_mixed_precision(mixed_precision):
    model = build_classifier("mobilenet_v2", SIZE, 3)
    assert model.get_layer("probabilities").compute_dtype == "float32" and model.output.dtype == tf.float32
    assert model.get_layer("gap").compute_dtype == "float16"


def test_small_cnn_shapes_and_learning():
    keras.utils.set_random_seed(0)
    model = build_small_cnn(16, 3, filters=4, blocks=2, dropout=0.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 16, 16, 1)).astype(np.float32)
    y = np.stack([(x.mean((1, 2, 3)) > 0), np.ones(8, bool), np.zeros(8, bool)], -1).astype(np.float32)
    y[:, 2] = -1.0  # unknown everywhere: masked
    out = model(x).numpy()
    assert out.shape == (8, 3) and out.min() >= 0 and out.max() <= 1
    _assert_learns(model, masked_bce_loss, x, y)


def test_mobilenet_v2_learns():
    keras.utils.set_random_seed(0)
    model = build_classifier("mobilenet_v2", SIZE, 2, dropout=0.0)
    x = _images(8)
    y = np.stack([x.mean((1, 2, 3)) > 0, np.arange(8) % 2 == 0], -1).astype(np.float32)
    y[::3, 1] = -1.0  # some unknown labels: masked
    _assert_learns(model, make_masked_bce_loss([2.0, 1.0]), x, y)


def test_classifier_loads_local_no_top_weights(classifiers, tmp_path):
    keras.utils.set_random_seed(1)
    reference = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False, weights=None)
    path = tmp_path / "mobilenet_v2_notop.h5"
    reference.save_weights(str(path))
    model = build_classifier("mobilenet_v2", SIZE, 3, weights=str(path))
    loaded = model.get_layer(BACKBONE_NAME).get_weights()
    expected = reference.get_weights()
    assert len(loaded) == len(expected) > 0
    for got, want in zip(loaded, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    # A random init differs, so the equality above comes from the file.
    assert not np.array_equal(classifiers["mobilenet_v2"].get_layer(BACKBONE_NAME).get_weights()[0], expected[0])


@pytest.mark.parametrize(
    "arch, size, kwargs, match",
    [
        (
            "vgg16",
            SIZE,
            {},
            "unknown classifier arch 'vgg16'; known: \\['densenet121', 'mobilenet_v2', 'resnet50', 'small_cnn'\\]",
        ),
        ("mobilenet_v2", SIZE, {"weights": "missing/mobilenet_v2_notop.h5"}, "does not exist \\(weights are never downloaded\\)"),
        ("resnet50", SIZE, {"weights": "imagenet"}, "must be a local .h5/.hdf5 file"),
        ("small_cnn", SIZE, {"weights": "w.h5"}, "small_cnn has no pretrained weights"),
        ("mobilenet_v2", SIZE, {"alpha": 0.6}, "alpha must be one of \\(0.35, 0.5, 0.75, 1.0, 1.3, 1.4\\), got 0.6"),
        ("densenet121", 16, {}, "densenet121 needs size >= 32, got 16"),
        ("small_cnn", 4, {}, "size must be a multiple of 32 for 4 blocks, got 4"),
        ("small_cnn", 48, {}, "size must be a multiple of 32 for 4 blocks, got 48"),
        ("small_cnn", SIZE, {"blocks": 0}, "blocks and filters must be >= 1"),
        ("small_cnn", SIZE, {"activation": "relu"}, "activation must be one of \\('sigmoid', 'softmax'\\)"),
        ("small_cnn", SIZE, {"dropout": 1.0}, "dropout must be in \\[0, 1\\)"),
        ("resnet50", SIZE, {"num_outputs": 0}, "num_outputs must be >= 1"),
    ],
)
def test_classifier_refuses_bad_arguments(arch, size, kwargs, match):
    kwargs = {"num_outputs": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_classifier(arch, size, **kwargs)


def test_autograph_leaves_tf_keras_and_tft_alone_and_still_converts_our_code():
    """tf_keras is not TensorFlow's `keras`: without the rules components.models adds, AutoGraph rewrites Keras's
    internals on every trace (10-40 s before a tiny model's first step) and TFT's Transform layer in every exported
    signature (3-4 s per export). Our own functions are still converted."""
    from tensorflow.python.autograph.impl import conversion
    from tensorflow_transform import output_wrapper

    from components.models import losses

    assert conversion.is_allowlisted(keras.Model.train_step)
    assert conversion.is_allowlisted(keras.layers.Conv2D.call)
    assert conversion.is_allowlisted(output_wrapper.TransformFeaturesLayer.call)
    assert conversion.is_allowlisted(output_wrapper.TFTransformOutput.transform_raw_features)
    assert not conversion.is_allowlisted(losses.masked_bce_loss)
