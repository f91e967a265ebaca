"""A compiled task run the way a Kubeflow pod runs it: the spec's command and args, an ExecutorInput, the salt in env.

CxrExampleGen reads its gs:// source from gcp-storage-emulator, through TFX's Kubeflow V2 entrypoint, which
imports the executor and the custom artifact types by the names the compiled spec gives them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

from gcs_emulator import gcs_emulator, upload_tree

from cxr_kubeflow import runner

BUCKET = "cxr-kubeflow"
TIMEOUT_S = 600


def _executor_input(spec: dict, task: str, output_root, output_file) -> dict:
    """What the KFP driver hands the container: parameter values, and an output artifact (type, URI) per key."""
    task_spec = spec["root"]["dag"]["tasks"][task]
    component = spec["components"][task_spec["componentRef"]["name"]]
    outputs = {}
    for key, definition in component["outputDefinitions"]["artifacts"].items():
        uri = output_root / key
        outputs[key] = {
            "artifacts": [
                {
                    "name": f"{task}-{key}",
                    "type": {"instanceSchema": definition["artifactType"]["instanceSchema"]},
                    "uri": str(uri),
                }
            ]
        }
    parameters = {k: v["runtimeValue"]["constant"] for k, v in task_spec["inputs"]["parameters"].items()}
    return {"inputs": {"parameterValues": parameters}, "outputs": {"artifacts": outputs, "outputFile": str(output_file)}}


def test_cxr_example_gen_runs_through_the_kubeflow_entrypoint(kubeflow_config, tiny_archive, tmp_path):
    with gcs_emulator(BUCKET) as bucket:
        upload_tree(tiny_archive / "nih", f"{bucket}/nih")
        source = dataclasses.replace(kubeflow_config.sources[2], root=f"{bucket}/nih")
        assert source.kind == "nih"
        kubeflow = dataclasses.replace(kubeflow_config.kubeflow, beam_args=["--direct_running_mode=in_memory"])
        ingest = dataclasses.replace(kubeflow_config.ingest, max_side=128)
        config = dataclasses.replace(kubeflow_config, sources=[source], kubeflow=kubeflow, ingest=ingest)
        spec, platform = runner.compile_spec(config)

        container = spec["deploymentSpec"]["executors"]["exec-cxr-example-gen"]["container"]
        output_file = tmp_path / "task" / "executor_output.json"
        invocation = json.dumps(_executor_input(spec, "cxr-example-gen", tmp_path / "outputs", output_file))
        args = [invocation if a == "{{$}}" else a for a in container["args"]]
        assert container["command"][:2] == ["python", "-m"]
        # The salt comes from the Kubernetes Secret the platform spec names; here, the same variable set by hand.
        (secret,) = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-cxr-example-gen"]["secretAsEnv"]
        env = {**os.environ, secret["keyToEnv"][0]["envVar"]: "kubeflow-test-salt", "TF_USE_LEGACY_KERAS": "1"}
        done = subprocess.run(
            [sys.executable, *container["command"][1:], *args], env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    assert done.returncode == 0, done.stderr[-4000:]

    # The output metadata KFP records in its ML Metadata; the report's type was imported as components.IngestReport.
    produced = json.loads(output_file.read_text())["artifacts"]
    assert set(produced) == {"examples", "ingest_report"}
    (examples,) = produced["examples"]["artifacts"]
    assert json.loads(examples["metadata"]["split_names"]) == ["train", "eval"]
    assert json.loads(examples["metadata"]["source_counts"]) == {"nih": 10}
    examples_dir = tmp_path / "outputs" / "examples"
    assert {p.name for p in examples_dir.iterdir()} == {"Split-train", "Split-eval"}
    assert all(any(split.iterdir()) for split in examples_dir.iterdir())
    report_files = {p.name for p in (tmp_path / "outputs" / "ingest_report").iterdir()}
    assert report_files == {"report.json", "quarantine.jsonl", "files.jsonl"}
