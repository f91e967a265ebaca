"""Segmentation and classification models, losses and metrics (tf_keras, usable by TFMA)."""
