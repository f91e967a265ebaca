"""Segmentation and classification models, losses and metrics (tf_keras, usable by TFMA).

Importing this package tells AutoGraph to leave the code of tf_keras and of TensorFlow Transform alone, as
TensorFlow's own rules already do for the `keras` package and for TensorFlow Probability: AutoGraph otherwise
re-writes every library function it meets while tracing, to no effect on the graph (neither library relies on
it: both build their graphs with Python control flow over Python values). tf_keras's internals (Model.fit's train
step, each layer's __call__) cost 10-40 s before the first training step of even a tiny model; TFT's Transform
layer, traced into every signature of the Trainers' export, 3-4 s of each export. Keras converts what it must
itself (layers' `call`, metrics' `update_state`, loss functions), so our own code in them is still converted.
"""

from tensorflow.python.autograph.core import config as _autograph_config
from tensorflow.python.autograph.core import config_lib as _config_lib

UNCONVERTED_LIBRARIES = ("tf_keras", "tensorflow_transform")


def _leave_libraries_unconverted() -> None:
    rules = _autograph_config.CONVERSION_RULES
    new = [
        _config_lib.DoNotConvert(library)
        for library in UNCONVERTED_LIBRARIES
        if not any(isinstance(r, _config_lib.DoNotConvert) and r.matches(library) for r in rules)
    ]
    _autograph_config.CONVERSION_RULES = (*new, *rules)


_leave_libraries_unconverted()
