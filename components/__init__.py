"""Code that runs inside the pipeline's components: ingestion, transform, models, trainers, evaluation."""

import os

# TFT and TFMA only work with Keras 2; make every `tf.keras` in this process (and in Beam workers that
# import this package) resolve to tf_keras before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# Custom artifact types by the names they are registered under ("components.<class>"): Kubeflow's TFX entrypoint
# imports an artifact's class from its type name, which KFP requires to be "<module>.<Class>". Loaded lazily so
# that `import components` stays cheap and still runs before TensorFlow is imported.
_ARTIFACT_TYPES = {
    "IngestReport": "components.ingest.spec",
    "DataValidationReport": "components.validation.gate",
}


def __getattr__(name: str):
    if name in _ARTIFACT_TYPES:
        import importlib

        return getattr(importlib.import_module(_ARTIFACT_TYPES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _set_dill_trace_only_on_change() -> None:
    """Beam's pickler calls dill's `_trace(False)` after every dumps and loads, and each call sets the "dill"
    logger's level, which clears the level cache of every logger in the process (thousands, with TensorFlow):
    seconds per Beam job spent re-setting a level that did not change. Same behaviour, set only on a change."""
    try:
        from dill import _dill
    except ImportError:  # no Beam in this environment
        return
    if getattr(_dill._trace, "only_on_change", False):
        return
    import logging

    def _trace(boolean: bool) -> None:
        level = logging.INFO if boolean else logging.WARN
        if _dill.log.level != level:
            _dill.log.setLevel(level)

    _trace.only_on_change = True
    _trace.__doc__ = _dill._trace.__doc__
    _dill._trace = _trace


_set_dill_trace_only_on_change()
