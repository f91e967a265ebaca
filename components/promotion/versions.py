"""TF Serving version directories, local or gs://: list complete versions, publish without exposing a partial one."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable

import tensorflow as tf

from components import storage

logger = logging.getLogger(__name__)

SAVED_MODEL_FILE = "saved_model.pb"
STAGING_PREFIX = ".incoming-"  # `.incoming-<version>-<random>`: TF Serving loads integer-named children only
# Leftovers of an interrupted push are removed once older than this. Younger ones may belong to a push still
# running elsewhere (an overlapping pipeline run), whose staging must not be pulled from under it.
STALE_AFTER_S = 3600.0


@dataclasses.dataclass(frozen=True)
class Published:
    path: str
    version: int
    reused: bool  # True when the same model was already the newest version


def _join(base: str, *names: str) -> str:
    return os.path.join(base.rstrip("/") if storage.is_gcs(base) else base, *names)


def _is_version(name: str) -> bool:
    return name.isascii() and name.isdigit()


def _started(name: str) -> int | None:
    """The version (a Unix time) a child of the base was created for; None for children that are not ours."""
    if _is_version(name):
        return int(name)
    if name.startswith(STAGING_PREFIX):
        version = name[len(STAGING_PREFIX) :].partition("-")[0]
        return int(version) if _is_version(version) else 0  # unreadable: as old as can be
    return None


def list_versions(base_dir: str) -> list[int]:
    """Complete versions under `base_dir` (integer-named children holding a saved_model.pb), ascending.

    `base_dir` is a local directory or a gs:// prefix; a missing one has no versions.
    """
    return sorted(
        int(name)
        for name in storage.list_dir(base_dir)
        if _is_version(name) and storage.isfile(_join(base_dir, name, SAVED_MODEL_FILE))
    )


def _model_files(model_dir: str) -> list[str]:
    """Relative paths of the files of a SavedModel directory, saved_model.pb last."""
    files = sorted(storage.relpath(p, model_dir) for p in storage.list_files(model_dir))
    return sorted(files, key=lambda rel: rel == SAVED_MODEL_FILE)  # stable: the rest stays sorted


def model_digest(model_dir: str) -> str:
    """SHA-256 over the relative path and MD5 of every file of a SavedModel directory (local or gs://).

    On GCS the MD5 is the one GCS keeps for each object, so comparing a local model with a pushed version
    downloads nothing.
    """
    h = hashlib.sha256()
    for rel in sorted(_model_files(model_dir)):
        h.update(f"{rel}\0{storage.md5_hex(_join(model_dir, rel))}\n".encode())
    return h.hexdigest()


def remove_leftovers(base_dir: str, now: float, stale_after_s: float = STALE_AFTER_S) -> list[str]:
    """Deletes what interrupted pushes left under `base_dir`, once older than `stale_after_s`; returns the paths.

    Leftovers are staging children (`.incoming-<version>-*`) and integer-named children without a
    saved_model.pb (a GCS copy step cut short); their age is `now` minus the version (a Unix time) in the name.
    Complete versions and children that are not ours are never touched.
    """
    removed = []
    for name in storage.list_dir(base_dir):
        started = _started(name)
        if started is None or now - started < stale_after_s:
            continue
        path = _join(base_dir, name)
        if _is_version(name) and storage.isfile(_join(path, SAVED_MODEL_FILE)):
            continue
        logger.warning("removing %s, left by an interrupted push", path)
        storage.delete_tree(path)
        removed.append(path)
    return removed


def publish(
    model_dir: str, base_dir: str, clock: Callable[[], float] = time.time, stale_after_s: float = STALE_AFTER_S
) -> Published:
    """Publishes `model_dir` as a new version `<base_dir>/<version>/`, unless it already is the newest one.

    Versions are Unix times, above every version or staging name under `base_dir` when the push starts. The files are
    first copied to a hidden staging child (`.incoming-<version>-<random>`, not an integer: TF Serving
    ignores it), then:
    - local: the staging directory is renamed to the version (atomic: a server never sees a partial one);
    - gs://: GCS has no rename, so the staged objects are copied server-side into `<version>/`, saved_model.pb
      last, and the staging objects deleted. A version counts as complete (listed, loadable) only once its
      saved_model.pb exists, which implies every other file does. What remains: TF Serving, polling
      during the (short, server-side) copy, can see the `<version>/` prefix before saved_model.pb lands; its
      load then fails and is retried (--max_num_load_retries, a minute apart by default); its default
      availability-preserving policy keeps serving the previous version meanwhile. A server pinned to
      specific versions (model_version_policy.specific) never looks at a new version at all.
    A push that fails removes what it wrote; one killed outright leaves a staging child (and on GCS maybe an
    integer prefix without saved_model.pb), which a later publish removes once stale (see remove_leftovers).

    Args:
      model_dir: a SavedModel directory (local or gs://) with a saved_model.pb at its top.
      base_dir: the model's directory in the TF Serving layout (`<base>/<model_name>`), local or gs://.
      clock: the time source of version numbers and leftover ages.
      stale_after_s: age from which leftovers of interrupted pushes are removed.

    Raises:
      ValueError: `model_dir` holds no saved_model.pb.
      FileNotFoundError: a file of `model_dir` could not be read (nothing is published).
    """
    files = _model_files(model_dir)
    if SAVED_MODEL_FILE not in files:
        raise ValueError(f"{model_dir} is not a SavedModel directory: no {SAVED_MODEL_FILE} at its top")
    now = clock()
    # Above every name taken, leftovers included: TF Serving may have failed to load an incomplete version
    # and would not retry it if the same number came back complete.
    taken = [s for s in map(_started, storage.list_dir(base_dir)) if s is not None]
    remove_leftovers(base_dir, now, stale_after_s)
    versions = list_versions(base_dir)
    if versions:
        newest = _join(base_dir, str(versions[-1]))
        if model_digest(newest) == model_digest(model_dir):
            logger.info("model %s is already the newest version %s; not pushing it again", model_dir, newest)
            return Published(newest, versions[-1], reused=True)
    taken += [s for s in map(_started, storage.list_dir(base_dir)) if s is not None]  # pushes begun meanwhile
    version = max(int(now), max(taken, default=-1) + 1)
    final = _join(base_dir, str(version))
    staging = _join(base_dir, f"{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    copying = False
    try:
        for rel in files:
            storage.copy_file(_join(model_dir, rel), _join(staging, rel))
        if storage.is_gcs(base_dir):
            copying = True
            for rel in files:  # saved_model.pb last: its presence marks the version complete
                storage.copy_file(_join(staging, rel), _join(final, rel))
        else:
            tf.io.gfile.rename(staging, final)
    except BaseException:
        _discard(staging, final if copying else None)
        raise
    if storage.is_gcs(base_dir):
        try:
            storage.delete_tree(staging)
        except Exception:  # the version is complete; the next publish removes the rest
            logger.warning("could not delete the staging objects %s", staging, exc_info=True)
    logger.info("published %s as version %d at %s", model_dir, version, final)
    return Published(final, version, reused=False)


def _discard(staging: str, final: str | None) -> None:
    """Best effort after a failed publish: removes the staging copy and, on GCS, the version copied so far."""
    try:
        storage.delete_tree(staging)
        if final is not None and not storage.isfile(_join(final, SAVED_MODEL_FILE)):
            storage.delete_tree(final)
    except Exception:
        logger.warning("could not clean up %s after a failed push; a later publish will", staging, exc_info=True)
