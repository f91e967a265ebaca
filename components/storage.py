"""Files wherever they live, read, listed, copied and deleted: local paths via tf.io.gfile, gs:// via google-cloud-storage."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import posixpath
import threading
from typing import Any


class _TensorFlow:
    """`tf`, imported on first use: reading a run config lists and checks paths without loading TensorFlow."""

    def __getattr__(self, name: str) -> Any:
        import tensorflow

        return getattr(tensorflow, name)


tf = _TensorFlow()

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


def is_gcs(path: str) -> bool:
    """True for a gs:// URI."""
    return _is_gcs(path)


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


# Writing: what the Pusher needs to stage, publish and clean up TF Serving versions.
_CHUNK = 1 << 20


def isfile(path: str) -> bool:
    """True for a file (on GCS: an object with exactly this name); False for directories and missing paths."""
    if _is_gcs(path):
        bucket, name = _split(path)
        return bool(name) and _client().bucket(bucket).blob(name).exists()
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def list_dir(path: str) -> list[str]:
    """Names of the immediate children of a directory (on GCS: of a prefix), sorted, without trailing "/".

    A missing directory has no children. On GCS a child directory is a prefix some object lives under.
    """
    if _is_gcs(path):
        bucket, name = _split(path)
        prefix = _dir_prefix(name)
        blobs = _client().list_blobs(bucket, prefix=prefix, delimiter="/")
        names = {b.name[len(prefix) :] for b in blobs}  # consuming the iterator also fills blobs.prefixes
        names |= {p[len(prefix) :].rstrip("/") for p in blobs.prefixes}
        return sorted(n for n in names if n)  # "" is the placeholder object of the prefix itself
    if not tf.io.gfile.isdir(path):
        return []
    return sorted(n.rstrip("/") for n in tf.io.gfile.listdir(path))


def md5_hex(path: str) -> str:
    """Hex MD5 of a file's content; for a GCS object the checksum GCS stored (no download) when it has one."""
    if _is_gcs(path):
        bucket, name = _split(path)
        blob = _client().bucket(bucket).get_blob(name) if name else None
        if blob is None:
            raise FileNotFoundError(f"no such object: {path}")
        if blob.md5_hash:  # composite objects have none
            return base64.b64decode(blob.md5_hash).hex()
        return hashlib.md5(blob.download_as_bytes()).hexdigest()
    h = hashlib.md5()
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except tf.errors.NotFoundError as e:
        raise FileNotFoundError(f"no such file: {path}") from e
    return h.hexdigest()


def copy_file(src: str, dst: str) -> None:
    """Copies one file, overwriting `dst`: server-side between gs:// URIs, uploading or downloading across.

    Local parent directories are created. A missing `src` raises FileNotFoundError wherever it lives.
    """
    if _is_gcs(dst):
        dst_bucket, dst_name = _split(dst)
        target = _client().bucket(dst_bucket).blob(dst_name)
        if _is_gcs(src):
            from google.api_core.exceptions import NotFound

            src_bucket, src_name = _split(src)
            source = _client().bucket(src_bucket).blob(src_name)
            try:
                token, _, _ = target.rewrite(source)  # large or cross-location objects take several calls
                while token is not None:
                    token, _, _ = target.rewrite(source, token=token)
            except NotFound as e:
                raise FileNotFoundError(f"no such object: {src}") from e
        else:
            target.upload_from_filename(src)
        return
    parent = os.path.dirname(dst)
    if parent:
        tf.io.gfile.makedirs(parent)
    if _is_gcs(src):
        from google.api_core.exceptions import NotFound

        bucket, name = _split(src)
        try:
            _client().bucket(bucket).blob(name).download_to_filename(dst)
        except NotFound as e:
            raise FileNotFoundError(f"no such object: {src}") from e
        return
    try:
        tf.io.gfile.copy(src, dst, overwrite=True)
    except tf.errors.NotFoundError as e:
        raise FileNotFoundError(f"no such file: {src}") from e


def write_bytes(path: str, data: bytes) -> None:
    """Replaces a small file whole, never visible half-written: one object upload on GCS, a rename locally."""
    if _is_gcs(path):
        bucket, name = _split(path)
        _client().bucket(bucket).blob(name).upload_from_string(data)
        return
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    partial = f"{path}.incoming-{os.getpid()}"
    with open(partial, "wb") as f:
        f.write(data)
    os.replace(partial, path)


def delete_tree(path: str) -> None:
    """Deletes a file or a whole directory (on GCS: the object `path` and every object under `path/`); missing is fine."""
    if _is_gcs(path):
        from google.api_core.exceptions import NotFound

        bucket, name = _split(path)
        prefix = _dir_prefix(name)
        if not prefix:
            raise ValueError(f"refusing to delete a whole bucket: {path}")
        blobs = list(_client().list_blobs(bucket, prefix=prefix))
        if _client().bucket(bucket).blob(name.rstrip("/")).exists():
            blobs.append(_client().bucket(bucket).blob(name.rstrip("/")))
        for blob in blobs:
            try:
                blob.delete()
            except NotFound:  # deleted meanwhile: the goal is reached
                pass
        return
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)
