"""What each pod of a Trainer's TFJob runs: TFX's own Trainer executor, in-process, on the task's payload file.

The Kubeflow task pod (cxr_kubeflow.tfjob.Executor) writes the Trainer's input and output artifacts and execution
properties to a JSON payload next to its outputs (gs:// on a cluster) and starts N worker pods running
`python -m cxr_kubeflow.tfjob_worker <payload uri>`. The Training Operator sets TF_CONFIG in each, so the run_fn's
distribution_strategy() builds a MultiWorkerMirroredStrategy over them, exactly as it would in one pod.

Every worker runs the whole run_fn (the strategy's collective ops need all of them, saving included), but only the
chief writes the Trainer's outputs: the others get private local directories for `model` and `model_run`, so
they neither race the chief on the real artifacts nor leave partial copies in them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

import components  # noqa: F401 - selects Keras 2 before TensorFlow is imported

PAYLOAD_VERSION = 1
OUTPUT_KEYS = ("model", "model_run")  # the Trainer's outputs, as standard_component_specs names them

logger = logging.getLogger(__name__)


def write_payload(uri: str, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> str:
    """Writes the Trainer's invocation as one JSON file at `uri` (local or gs://, whole or not at all); returns `uri`.

    Raises:
      ValueError: an execution property is not JSON (TFX's Trainer properties are strings and numbers).
    """
    from tfx.types import artifact_utils

    from components import storage

    payload = {
        "version": PAYLOAD_VERSION,
        "input_dict": json.loads(artifact_utils.jsonify_artifact_dict(input_dict)),
        "output_dict": json.loads(artifact_utils.jsonify_artifact_dict(output_dict)),
        "exec_properties": exec_properties,
    }
    try:
        text = json.dumps(payload, indent=1)
    except TypeError as e:
        raise ValueError(f"the Trainer's execution properties must be JSON for its TFJob: {e}") from e
    storage.write_bytes(uri, text.encode())
    return uri


def read_payload(uri: str) -> tuple[dict[str, list], dict[str, list], dict[str, Any]]:
    """(input_dict, output_dict, exec_properties) from a payload written by write_payload.

    Raises:
      ValueError: the file is not such a payload (another version of this code wrote it).
    """
    from tfx.types import artifact_utils

    from components import storage

    payload = json.loads(storage.read_bytes(uri))
    if payload.get("version") != PAYLOAD_VERSION:
        raise ValueError(f"{uri}: payload version {payload.get('version')!r}, this image reads {PAYLOAD_VERSION}")
    return (
        artifact_utils.parse_artifact_dict(json.dumps(payload["input_dict"])),
        artifact_utils.parse_artifact_dict(json.dumps(payload["output_dict"])),
        payload["exec_properties"],
    )


def is_chief(tf_config: dict[str, Any]) -> bool:
    """Whether this process writes the outputs: no cluster, the "chief" task, or worker 0 of a chief-less cluster.

    A TFJob with only Worker replicas has no chief task; MultiWorkerMirroredStrategy then treats worker 0 as it.
    """
    cluster = tf_config.get("cluster") or {}
    if not cluster:
        return True
    task = tf_config.get("task") or {}
    if task.get("type") == "chief":
        return True
    return "chief" not in cluster and task.get("type") in ("worker", "master") and int(task.get("index", 0)) == 0


def _private_outputs(output_dict: dict[str, list], workdir: str) -> None:
    """Points a non-chief worker's output artifacts at directories under `workdir` (in place)."""
    for key in OUTPUT_KEYS:
        for i, artifact in enumerate(output_dict.get(key, [])):
            artifact.uri = os.path.join(workdir, f"{key}-{i}")
            os.makedirs(artifact.uri, exist_ok=True)


def run(payload_uri: str) -> None:
    """Runs TFX's GenericExecutor on the payload, as this pod's part of the TFJob (TF_CONFIG from the environment)."""
    from tfx.components.trainer import executor as trainer_executor
    from tfx.dsl.components.base import base_executor

    input_dict, output_dict, exec_properties = read_payload(payload_uri)
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    chief = is_chief(tf_config)
    task = tf_config.get("task", {})
    logger.info(
        "TFJob worker %s %s of %d (%s): %s",
        task.get("type", "single"),
        task.get("index", 0),
        sum(len(v) for v in (tf_config.get("cluster") or {"worker": [""]}).values()),
        "chief, writes the outputs" if chief else "outputs kept private",
        payload_uri,
    )
    workdir = tempfile.mkdtemp(prefix="cxr-tfjob-worker-")
    try:
        if not chief:
            _private_outputs(output_dict, os.path.join(workdir, "outputs"))
        context = base_executor.BaseExecutor.Context(tmp_dir=os.path.join(workdir, "tmp"), unique_id=str(task.get("index", 0)))
        trainer_executor.GenericExecutor(context).Do(input_dict, output_dict, exec_properties)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m cxr_kubeflow.tfjob_worker <payload uri>`; returns the exit status (a failure raises, with its traceback)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cxr_kubeflow.tfjob_worker <payload uri>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
