"""TF Serving version directories: list complete versions, publish a model atomically, skip exact repeats."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable

from tfx.dsl.io import fileio
from tfx.utils import io_utils

logger = logging.getLogger(__name__)

SAVED_MODEL_FILE = "saved_model.pb"
_INCOMING_PREFIX = ".incoming-"  # TF Serving ignores names that are not integers


@dataclasses.dataclass(frozen=True)
class Published:
    path: str
    version: int
    reused: bool  # True when the same model was already the newest version


def list_versions(base_dir: str) -> list[int]:
    """Complete versions under `base_dir` (integer-named directories holding a saved_model.pb), ascending."""
    if not fileio.exists(base_dir):
        return []
    versions = []
    for name in fileio.listdir(base_dir):
        name = name.rstrip("/")
        if name.isdigit() and fileio.exists(os.path.join(base_dir, name, SAVED_MODEL_FILE)):
            versions.append(int(name))
    return sorted(versions)


def model_digest(model_dir: str) -> str:
    """SHA-256 over the relative paths and bytes of every file of a SavedModel directory."""
    h = hashlib.sha256()
    for root, _, files in sorted(fileio.walk(model_dir)):
        for name in sorted(files):
            path = os.path.join(root, name)
            h.update(os.path.relpath(path, model_dir).encode() + b"\0")
            with fileio.open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def publish(model_dir: str, base_dir: str, clock: Callable[[], float] = time.time) -> Published:
    """Publishes `model_dir` as a new version under `base_dir`, unless it already is the newest one.

    The copy goes to a hidden sibling first and is renamed into place, so a server polling `base_dir`
    never sees a half-copied version. Versions are Unix timestamps, strictly increasing.
    """
    versions = list_versions(base_dir)
    if versions:
        newest = os.path.join(base_dir, str(versions[-1]))
        if model_digest(newest) == model_digest(model_dir):
            logger.info("model %s is already the newest version %s; not pushing it again", model_dir, newest)
            return Published(newest, versions[-1], reused=True)
    version = max(int(clock()), versions[-1] + 1 if versions else 0)
    final = os.path.join(base_dir, str(version))
    incoming = os.path.join(base_dir, f"{_INCOMING_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    fileio.makedirs(base_dir)
    io_utils.copy_dir(model_dir, incoming)
    fileio.rename(incoming, final)
    logger.info("published %s as version %d at %s", model_dir, version, final)
    return Published(final, version, reused=False)
