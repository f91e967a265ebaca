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


def _memoize_packages_distributions() -> None:
    """google-api-core (>= 2.28) checks the Python version as each of its packages is imported, and each check
    maps every installed distribution to its modules (`importlib.metadata.packages_distributions()`: every
    RECORD file on sys.path read again, 0.4-0.5 s, four times in every process that imports Beam or TFX). The
    mapping is computed again only when sys.path has changed (what is installed does not change while a process
    runs), and each caller gets its own copy of it."""
    import sys
    from importlib import metadata

    if getattr(metadata.packages_distributions, "memoized", False):
        return
    compute = metadata.packages_distributions
    computed: dict[tuple[str, ...], dict[str, list[str]]] = {}  # for the sys.path it was computed on

    def packages_distributions() -> dict[str, list[str]]:
        path = tuple(sys.path)
        if path not in computed:
            computed.clear()
            computed[path] = compute()
        return {module: list(distributions) for module, distributions in computed[path].items()}

    packages_distributions.memoized = True
    packages_distributions.__doc__ = compute.__doc__
    packages_distributions.__wrapped__ = compute
    metadata.packages_distributions = packages_distributions


_memoize_packages_distributions()
