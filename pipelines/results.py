"""Reading a run's results back: pushed model versions on disk (TF Serving layout)."""

from __future__ import annotations

import os


def pushed_models(serving_dir: str) -> dict[str, str]:
    """{task: newest pushed version directory} for `<serving_dir>/<task>/<version>/` (complete versions only)."""
    out = {}
    if not os.path.isdir(serving_dir):
        return out
    for task in sorted(os.listdir(serving_dir)):
        versions = [
            v
            for v in os.listdir(os.path.join(serving_dir, task))
            if v.isdigit() and os.path.exists(os.path.join(serving_dir, task, v, "saved_model.pb"))
        ]
        if versions:
            out[task] = os.path.join(serving_dir, task, max(versions, key=int))
    return out
