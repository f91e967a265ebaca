"""Reading a run's results back: pushed model versions (TF Serving layout, local or gs://)."""

from __future__ import annotations

import posixpath

from components import storage
from components.promotion import versions


def pushed_models(serving_dir: str) -> dict[str, str]:
    """{model name: newest complete version directory} for `<serving_dir>/<model name>/<version>/`."""
    out = {}
    for name in storage.list_dir(serving_dir):
        complete = versions.list_versions(posixpath.join(serving_dir, name))
        if complete:
            out[name] = posixpath.join(serving_dir, name, str(complete[-1]))
    return out
