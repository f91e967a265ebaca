"""An in-memory gcp-storage-emulator on 127.0.0.1 that the real google-cloud-storage client talks to."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from components import storage

START_TIMEOUT_S = 10
STOP_TIMEOUT_S = 10


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gcs_emulator(bucket: str) -> Iterator[str]:
    """Serves an emulator in a thread, points STORAGE_EMULATOR_HOST at it and creates `bucket`; yields gs://bucket.

    The environment is restored and the server stopped on exit; starting and stopping wait a bounded time.
    """
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    saved = os.environ.get(storage.EMULATOR_ENV)
    starter = threading.Thread(target=server.start, daemon=True)  # Server.start waits, unbounded, for the bind
    starter.start()
    starter.join(START_TIMEOUT_S)
    if starter.is_alive():
        raise RuntimeError(f"gcp-storage-emulator did not start on 127.0.0.1:{port} within {START_TIMEOUT_S} s")
    try:
        os.environ[storage.EMULATOR_ENV] = f"http://127.0.0.1:{port}"
        yield f"gs://{bucket}"
    finally:
        if saved is None:
            os.environ.pop(storage.EMULATOR_ENV, None)
        else:
            os.environ[storage.EMULATOR_ENV] = saved
        stopper = threading.Thread(target=server.stop, daemon=True)
        stopper.start()
        stopper.join(STOP_TIMEOUT_S)


def client():
    """A real google-cloud-storage client of its own (anonymous; the emulator must be running)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    return gcs.Client(project=storage.DEFAULT_EMULATOR_PROJECT, credentials=AnonymousCredentials())


def upload_tree(local_root: Path, uri: str) -> list[str]:
    """Uploads every file under `local_root` to the gs:// prefix `uri`; returns the object URIs, sorted."""
    bucket_name, _, prefix = uri.removeprefix("gs://").partition("/")
    bucket = client().bucket(bucket_name)
    uploaded = []
    for path in sorted(p for p in Path(local_root).rglob("*") if p.is_file()):
        name = f"{prefix.rstrip('/')}/{path.relative_to(local_root).as_posix()}".lstrip("/")
        bucket.blob(name).upload_from_filename(str(path))
        uploaded.append(f"gs://{bucket_name}/{name}")
    return uploaded
