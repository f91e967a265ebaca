"""Code that runs inside the pipeline's components: ingestion, transform, models, trainers, evaluation."""

import os

# TFT and TFMA only work with Keras 2; make every `tf.keras` in this process (and in Beam workers that
# import this package) resolve to tf_keras before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
