"""Reading source files wherever they live: local paths through tf.io.gfile, gs:// URIs through google-cloud-storage."""

from __future__ import annotations

import datetime
import os
import posixpath
import threading

import tensorflow as tf

GCS_SCHEME = "gs://"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"  # read by google-cloud-storage itself; tests point it at gcp-storage-emulator
DEFAULT_EMULATOR_PROJECT = "cxr-pipeline"
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

# One client per (process, emulator host): never pickled with a DoFn, and each Beam worker process builds its own
# (google-cloud-storage clients are safe to share across threads, not across a fork).
_clients: dict[tuple[int, str | None], object] = {}
_clients_lock = threading.Lock()


def _is_gcs(path: str) -> bool:
    return path.startswith(GCS_SCHEME)


def _client():
    """This process's google-cloud-storage client: anonymous against the emulator, default credentials otherwise."""
    key = (os.getpid(), os.environ.get(EMULATOR_ENV))
    with _clients_lock:
        if key not in _clients:
            from google.cloud import storage as gcs

            if key[1]:
                from google.auth.credentials import AnonymousCredentials

                project = os.environ.get("GOOGLE_CLOUD_PROJECT", DEFAULT_EMULATOR_PROJECT)
                _clients[key] = gcs.Client(project=project, credentials=AnonymousCredentials())
            else:
                _clients[key] = gcs.Client()
        return _clients[key]


def _split(uri: str) -> tuple[str, str]:
    """gs://bucket/some/name -> ("bucket", "some/name")."""
    bucket, _, name = uri[len(GCS_SCHEME) :].partition("/")
    return bucket, name


def _dir_prefix(name: str) -> str:
    """An object-name prefix that treats `name` as a directory ("" for the bucket itself)."""
    name = name.rstrip("/")
    return name + "/" if name else ""


def read_bytes(path: str) -> bytes:
    """The whole content of a file or object; a missing object raises FileNotFoundError like a missing file."""
    if _is_gcs(path):
        from google.api_core.exceptions import NotFound

        bucket, name = _split(path)
        try:
            return _client().bucket(bucket).blob(name).download_as_bytes()
        except NotFound as e:
            raise FileNotFoundError(f"no such object: {path}") from e
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def list_files(root: str, extensions: tuple[str, ...] | None = None) -> list[str]:
    """All files under root, sorted, optionally filtered by lower-case extension."""
    if _is_gcs(root):
        bucket, name = _split(root)
        names = (b.name for b in _client().list_blobs(bucket, prefix=_dir_prefix(name)))
        return sorted(
            f"{GCS_SCHEME}{bucket}/{n}"
            for n in names
            if not n.endswith("/") and (extensions is None or posixpath.basename(n).lower().endswith(extensions))
        )
    out = []
    for dirpath, _, filenames in tf.io.gfile.walk(root):
        for name in filenames:
            if extensions is None or name.lower().endswith(extensions):
                out.append(posixpath.join(dirpath, name))
    return sorted(out)


def exists(path: str) -> bool:
    """True for a file or a directory (on GCS: an object, or a prefix some object lives under)."""
    if _is_gcs(path):
        bucket, name = _split(path)
        if name and _client().bucket(bucket).blob(name).exists():
            return True
        return isdir(path)
    return tf.io.gfile.exists(path)


def isdir(path: str) -> bool:
    """True for a directory (on GCS: the bucket itself, or a prefix some object lives under)."""
    if _is_gcs(path):
        bucket, name = _split(path)
        prefix = _dir_prefix(name)
        if not prefix:
            return _client().bucket(bucket).exists()
        return any(True for _ in _client().list_blobs(bucket, prefix=prefix, max_results=1))
    return tf.io.gfile.isdir(path)


def stat(path: str) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of a file."""
    if _is_gcs(path):
        bucket, name = _split(path)
        blob = _client().bucket(bucket).get_blob(name) if name else None
        if blob is None:
            raise FileNotFoundError(f"no such object: {path}")
        return blob.size, (blob.updated - _EPOCH) // datetime.timedelta(microseconds=1) * 1000  # exact integer ns
    s = tf.io.gfile.stat(path)
    return s.length, s.mtime_nsec


def relpath(path: str, root: str) -> str:
    """`path` relative to `root`, with forward slashes."""
    return posixpath.relpath(path, root) if "://" not in root else path[len(root.rstrip("/")) + 1 :]
