"""Reading source files wherever they live: local paths now, any tf.io.gfile scheme (gs://) the same way."""

from __future__ import annotations

import posixpath

import tensorflow as tf


def read_bytes(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def list_files(root: str, extensions: tuple[str, ...] | None = None) -> list[str]:
    """All files under root, sorted, optionally filtered by lower-case extension."""
    out = []
    for dirpath, _, filenames in tf.io.gfile.walk(root):
        for name in filenames:
            if extensions is None or name.lower().endswith(extensions):
                out.append(posixpath.join(dirpath, name))
    return sorted(out)


def exists(path: str) -> bool:
    return tf.io.gfile.exists(path)


def isdir(path: str) -> bool:
    return tf.io.gfile.isdir(path)


def stat(path: str) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of a file."""
    s = tf.io.gfile.stat(path)
    return s.length, s.mtime_nsec


def relpath(path: str, root: str) -> str:
    return posixpath.relpath(path, root) if "://" not in root else path[len(root.rstrip("/")) + 1 :]
