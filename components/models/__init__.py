"""Segmentation and classification models, losses and metrics (tf_keras, usable by TFMA).

Importing this package tells AutoGraph to leave tf_keras's own code alone, as TensorFlow's rules already do for
the `keras` package: AutoGraph otherwise re-writes every Keras internal it meets while tracing (Model.fit's train
step, each layer's __call__), which cost 10-40 s before the first training step of even a tiny model. Keras
converts what it must itself (layers' `call`, metrics' `update_state`, loss functions), so our own code in them
is still converted.
"""

from tensorflow.python.autograph.core import config as _autograph_config
from tensorflow.python.autograph.core import config_lib as _config_lib


def _leave_tf_keras_unconverted() -> None:
    rule = _config_lib.DoNotConvert("tf_keras")
    rules = _autograph_config.CONVERSION_RULES
    if not any(isinstance(r, _config_lib.DoNotConvert) and r.matches("tf_keras") for r in rules):
        _autograph_config.CONVERSION_RULES = (rule, *rules)


_leave_tf_keras_unconverted()
