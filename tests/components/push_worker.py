"""Subprocess for the interrupted-push tests: runs versions.publish so the test can SIGKILL it at a known point.

Usage: python push_worker.py MODEL_DIR BASE_DIR {upload,copy}

upload: publishes as is; the test puts a FIFO in MODEL_DIR, so the push blocks opening it, mid-upload,
        until the test kills it.
copy:   (gs:// only) the process kills itself just before copying saved_model.pb into the version prefix,
        i.e. after every other file of the version was copied: the worst moment to die.
STORAGE_EMULATOR_HOST comes from the test's environment.
"""

from __future__ import annotations

import os
import signal
import sys

import components  # noqa: F401 - Keras 2 before TensorFlow
from components import storage
from components.promotion import versions


def main(model_dir: str, base_dir: str, mode: str) -> None:
    if mode == "copy":
        copy_file = storage.copy_file

        def copy_then_die(src: str, dst: str) -> None:
            if dst.endswith("/" + versions.SAVED_MODEL_FILE) and versions.STAGING_PREFIX not in dst:
                os.kill(os.getpid(), signal.SIGKILL)
            copy_file(src, dst)

        storage.copy_file = copy_then_die
    elif mode != "upload":
        raise ValueError(f"mode must be upload or copy, got {mode!r}")
    versions.publish(model_dir, base_dir)
    raise SystemExit("the push finished, but the test meant to kill it")


if __name__ == "__main__":
    main(*sys.argv[1:])
