"""Which pushed versions to use (production, latest or a given one, read from the registry) and loading them, local or gs://."""

from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
import shutil
import uuid
from collections.abc import Sequence
from typing import Any

from ml_metadata.metadata_store import metadata_store

from components import contract, stops, storage
from components import features as F
from components.promotion import registry, versions

logger = logging.getLogger(__name__)

TASKS = contract.TASKS
PRODUCTION, LATEST = "production", "latest"
PINNED = "pinned"  # how a version asked for by number was selected
ALL_MODELS = "*"
CACHE_ENV = "CXR_MODEL_CACHE"  # where gs:// versions are downloaded to (default ~/.cache/cxr-pipeline/models)
# The signatures (and their outputs) prediction calls; an older export without them is refused on load.
REQUIRED_SIGNATURES = {
    "segmentation": (F.SEGMENTATION_IMAGE_SIGNATURE, (F.SEGMENTATION_PREDICTION, F.SEGMENTATION_MASK)),
    "classification": (F.SERVING_IMAGE_SIGNATURE, (F.CLASSIFICATION_PREDICTION, F.CLASSIFICATION_LABEL_NAMES)),
}


class ModelNotFound(stops.NothingToServe):
    """No pushed version matches what was asked for; the message says what exists and what to do instead."""


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """One pushed version of one model.

    Attributes:
      task: "segmentation" or "classification".
      model_name: its TF Serving name (the directory under the push base).
      version: the version number (a Unix time).
      path: `<base>/<model_name>/<version>`, a local directory or a gs:// prefix.
      selected_by: "production", "latest" or "pinned" (asked for by number).
    """

    task: str
    model_name: str
    version: int
    path: str
    selected_by: str

    def describe(self) -> dict[str, Any]:
        return {"name": self.model_name, "version": self.version, "selected_by": self.selected_by}


def parse_specs(specs: Sequence[str]) -> dict[str, str]:
    """`--model` values to {model or "*": "production" | "latest" | "<version>"}.

    A spec is `production`, `latest` or a VERSION for every model, or `MODEL:production|latest|VERSION` for one
    model (MODEL: its task or its TF Serving name). Later specs win; a per-model spec wins over an all-model one.

    Raises:
      ValueError: a spec of another form.
    """
    out: dict[str, str] = {}
    for spec in specs:
        target, sep, choice = spec.strip().rpartition(":")
        choice = choice.strip().lower()
        target = target.strip() if sep else ALL_MODELS
        if not target or not (choice in (PRODUCTION, LATEST) or (choice.isascii() and choice.isdigit())):
            raise ValueError(
                f"--model {spec!r}: expected production, latest, a version number, or MODEL:production|latest|VERSION"
            )
        out[target] = choice
    return out


def resolve(
    store: metadata_store.MetadataStore, specs: Sequence[str] = (PRODUCTION,), tasks: Sequence[str] = TASKS
) -> dict[str, ModelRef]:
    """The pushed version to use for each task, as `specs` (see parse_specs) ask, from the registry in `store`.

    production: the version `cxr promote` made production (ML Metadata); latest: the newest complete pushed version;
    a number: that pushed version. The version must still be complete (listed with its saved_model.pb).

    Raises:
      ModelNotFound: no such model or version, nothing in production, or the version is gone; the message says
        what exists (e.g. "no production version of segmentation: run `cxr promote` first, or use --model latest").
      ValueError: a malformed spec.
    """
    wanted = parse_specs(specs)
    found = registry.candidates(store)
    names = {}
    for task in tasks:
        of_task = [c for c in found if c.task == task]
        if not of_task:
            raise ModelNotFound(f"no {task} model in the metadata store: run the pipeline first")
        names[task] = of_task[-1].model_name  # the name its newest model is pushed under
    known = set(names) | set(names.values())
    unknown = sorted(set(wanted) - known - {ALL_MODELS})
    if unknown:
        raise ModelNotFound(f"--model names unknown models {unknown}; known: {sorted(known)}")
    out: dict[str, ModelRef] = {}
    for task, name in names.items():
        choice = wanted.get(name, wanted.get(task, wanted.get(ALL_MODELS, PRODUCTION)))
        out[task] = _pick(store, task, name, [c for c in found if c.model_name == name], choice)
    return out


def _pick(store: metadata_store.MetadataStore, task: str, name: str, cands: list[registry.Candidate], choice: str) -> ModelRef:
    base_of = {v: c.base_dir for c in cands for v in c.versions}  # every version ever pushed -> its model directory
    complete: dict[str, set[int]] = {}

    def is_complete(version: int) -> bool:
        base = base_of[version]
        if base not in complete:
            complete[base] = set(versions.list_versions(base))
        return version in complete[base]

    if choice == PRODUCTION:
        version = registry.production_version(store, name)
        if version is None:
            raise ModelNotFound(f"no production version of {name}: run `cxr promote {name} VERSION` first, or use --model latest")
    elif choice == LATEST:
        version = next((v for v in sorted(base_of, reverse=True) if is_complete(v)), None)
        if version is None:
            raise ModelNotFound(f"{name} has no complete pushed version (did any {task} model pass its blessing thresholds?)")
    else:
        version = int(choice)
    if version not in base_of:
        raise ModelNotFound(f"{name} has no pushed version {version}; its pushed versions: {sorted(base_of) or 'none'}")
    if not is_complete(version):
        raise ModelNotFound(f"{name} version {version} is not (or no longer) complete under {base_of[version]}")
    selected = choice if choice in (PRODUCTION, LATEST) else PINNED
    return ModelRef(task, name, version, posixpath.join(base_of[version].rstrip("/"), str(version)), selected)


def default_cache_dir() -> str:
    """$CXR_MODEL_CACHE, else $XDG_CACHE_HOME/cxr-pipeline/models (~/.cache by default)."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cxr-pipeline", "models")


def local_model_dir(path: str, cache_dir: str | None = None) -> str:
    """A local directory holding the SavedModel at `path`: `path` itself when local, else a cached download.

    A gs:// version is downloaded once to `<cache_dir>/gs/<bucket>/<name>/` (a pushed version never changes), into a
    hidden sibling first and renamed into place, so an interrupted download is never taken for a model.

    Raises:
      ModelNotFound: `path` holds no saved_model.pb.
    """
    if not storage.is_gcs(path):
        if not os.path.isfile(os.path.join(path, versions.SAVED_MODEL_FILE)):
            raise ModelNotFound(f"{path} holds no {versions.SAVED_MODEL_FILE}")
        return path
    path = path.rstrip("/")
    target = os.path.join(cache_dir or default_cache_dir(), "gs", *path[len(storage.GCS_SCHEME) :].split("/"))
    if os.path.isfile(os.path.join(target, versions.SAVED_MODEL_FILE)):
        return target
    files = {storage.relpath(f, path): f for f in storage.list_files(path)}
    if versions.SAVED_MODEL_FILE not in files:
        raise ModelNotFound(f"{path} holds no {versions.SAVED_MODEL_FILE}")
    bad = [rel for rel in files if rel.startswith("/") or ".." in rel.split("/")]
    if bad:
        raise ModelNotFound(f"{path} has object names that leave its directory: {bad[:3]}")
    staging = f"{target}.incoming-{uuid.uuid4().hex[:8]}"
    logger.info("downloading %s to %s", path, target)
    try:
        for rel, src in sorted(files.items()):
            storage.copy_file(src, os.path.join(staging, *rel.split("/")))
        try:
            os.rename(staging, target)
        except OSError:
            if not os.path.isfile(os.path.join(target, versions.SAVED_MODEL_FILE)):  # else another process was first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A pushed version loaded with tf.saved_model.load."""

    ref: ModelRef
    local_dir: str
    module: Any

    def signature(self, name: str) -> Any:
        return self.module.signatures[name]


def load(ref: ModelRef, cache_dir: str | None = None) -> LoadedModel:
    """Loads a version (downloading a gs:// one first) and checks it has the signature prediction uses.

    Raises:
      ModelNotFound: no SavedModel there.
      ValueError: the model lacks the signature or outputs its task needs (exported by an older pipeline?).
    """
    import tensorflow as tf

    local = local_model_dir(ref.path, cache_dir)
    module = tf.saved_model.load(local)
    signature, outputs = REQUIRED_SIGNATURES[ref.task]
    if signature not in module.signatures:
        have = sorted(module.signatures)
        raise ValueError(f"{ref.model_name} version {ref.version} has no {signature!r} signature; it has {have}")
    missing = set(outputs) - set(module.signatures[signature].structured_outputs)
    if missing:
        raise ValueError(f"{ref.model_name} version {ref.version}: signature {signature!r} lacks outputs {sorted(missing)}")
    logger.info("loaded %s version %d from %s", ref.model_name, ref.version, ref.path)
    return LoadedModel(ref, local, module)
