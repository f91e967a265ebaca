"""Helpers for the push tests: tiny real SavedModels, a serving base seen independently of the code under test,
and a push killed at a known point in a subprocess (tests/components/push_worker.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import tensorflow as tf
from gcs_emulator import client

WORKER = Path(__file__).parent / "components" / "push_worker.py"
WORKER_TIMEOUT_S = 120  # the worker imports TensorFlow first: tens of seconds on a busy 2-core machine
_LOADABLE = re.compile(r"(\d+)/saved_model\.pb")


class _Scale(tf.Module):
    def __init__(self, w: float):
        super().__init__()
        self.w = tf.Variable(w, dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x):
        return {"y": x * self.w}


def save_scale_model(path: Path, w: float) -> str:
    """A real SavedModel (saved_model.pb, fingerprint.pb, variables/) whose serving signature returns y = w * x."""
    module = _Scale(w)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return str(path)


def serve(model_dir: str, x: list[float]) -> list[float]:
    """Loads a SavedModel directory like a server would and runs its serving signature."""
    return tf.saved_model.load(model_dir).signatures["serving_default"](tf.constant(x))["y"].numpy().tolist()


class Tree:
    """A serving base (local directory or gs:// prefix), written and read without the code under test."""

    def __init__(self, base: str):
        self.base = base
        self.gcs = base.startswith("gs://")
        if self.gcs:
            self.bucket_name, _, prefix = base.removeprefix("gs://").partition("/")
            self.prefix = prefix.rstrip("/") + "/"

    def write(self, rel: str, data: bytes = b"x") -> None:
        if self.gcs:
            client().bucket(self.bucket_name).blob(self.prefix + rel).upload_from_string(data)
        else:
            path = Path(self.base, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def files(self) -> list[str]:
        """Every file (object) under the base, relative to it, sorted."""
        if self.gcs:
            return sorted(b.name[len(self.prefix) :] for b in client().list_blobs(self.bucket_name, prefix=self.prefix))
        if not os.path.isdir(self.base):
            return []
        return sorted(os.path.relpath(os.path.join(d, f), self.base) for d, _, fs in os.walk(self.base) for f in fs)

    def children(self) -> list[str]:
        """Names directly under the base (on GCS: first path segments of its objects)."""
        if self.gcs:
            return sorted({rel.split("/")[0] for rel in self.files()})
        return sorted(os.listdir(self.base)) if os.path.isdir(self.base) else []

    def loadable(self) -> list[int]:
        """What TF Serving would load: integer-named children holding a saved_model.pb."""
        return sorted(int(m.group(1)) for rel in self.files() if (m := _LOADABLE.fullmatch(rel)))

    def fetch(self, version: int, dst: Path) -> str:
        """A local directory with the files of `version` (downloaded with the test's own client on GCS)."""
        if not self.gcs:
            return os.path.join(self.base, str(version))
        prefix = f"{self.prefix}{version}/"
        for blob in client().list_blobs(self.bucket_name, prefix=prefix):
            target = dst / blob.name[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target))
        return str(dst)


def kill_mid_push(model_dir: str, base: str, mode: str, wait_for: list[str] = ()) -> None:
    """Runs a push in a subprocess and makes sure it dies by SIGKILL in the middle (see push_worker.py).

    mode "upload": the model holds a FIFO, so the push blocks; once every relative path in `wait_for` is in
    the staging child, the test kills it. mode "copy": the worker kills itself before saved_model.pb is copied.
    """
    tree = Tree(base)
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), model_dir, base, mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            staged = {rel.partition("/")[2] for rel in tree.files() if rel.startswith(".incoming-")}
            if mode == "upload" and set(wait_for) <= staged and staged:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.2)
        output = proc.communicate(timeout=WORKER_TIMEOUT_S)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the push was not killed mid-way (exit {proc.returncode}):\n{output[-3000:]}"
