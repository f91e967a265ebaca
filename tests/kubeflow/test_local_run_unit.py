"""`cxr kubeflow local-run` on small hand-written pipeline files: order, ExecutorInput, failures, Secrets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

SCHEMA = "title: tfx.Examples\ntype: object\n"


def _pipeline(tmp_path, tasks: dict[str, dict], secret: bool = False) -> str:
    """A PipelineSpec whose tasks run small Python programs (each writes its ExecutorInput to its output URI)."""
    spec = {
        "pipelineInfo": {"name": "tiny"},
        "defaultPipelineRoot": str(tmp_path / "root"),
        "root": {"dag": {"tasks": {}}},
        "components": {},
        "deploymentSpec": {"executors": {}},
    }
    for name, t in tasks.items():
        spec["root"]["dag"]["tasks"][name] = {
            "taskInfo": {"name": name},
            "componentRef": {"name": f"comp-{name}"},
            "dependentTasks": t.get("after", []),
            "inputs": {
                "parameters": {"greeting": {"runtimeValue": {"constant": f"hello {name}"}}},
                "artifacts": {
                    k: {"taskOutputArtifact": {"producerTask": p, "outputArtifactKey": "out"}}
                    for k, p in t.get("reads", {}).items()
                },
            },
        }
        spec["components"][f"comp-{name}"] = {
            "executorLabel": f"exec-{name}",
            "outputDefinitions": {"artifacts": {"out": {"artifactType": {"instanceSchema": SCHEMA}}}},
        }
        spec["deploymentSpec"]["executors"][f"exec-{name}"] = {
            "container": {
                "image": "img:1",
                "command": ["python", "-m", t["module"]] if "module" in t else ["python", "-c", t["code"]],
                "args": ["{{$}}"],
            }
        }
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}}
    if secret:
        platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-a"] = {
            "secretAsEnv": [{"secretName": "salty", "keyToEnv": [{"secretKey": "salt", "envVar": "THE_SALT"}]}]
        }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump_all([spec, platform]))
    return str(path)


# Writes what the task was handed into its output directory and a metadata entry into the executor output.
ECHO = """
import json, os, sys
executor_input = json.loads(sys.argv[1])
(out,) = executor_input["outputs"]["artifacts"]["out"]["artifacts"]
os.makedirs(out["uri"], exist_ok=True)
open(os.path.join(out["uri"], "seen.json"), "w").write(json.dumps({"input": executor_input, "salt": os.environ.get("THE_SALT")}))
output = {"artifacts": {"out": {"artifacts": [{"metadata": {"rows": 3, "note": "ok"}}]}}}
open(executor_input["outputs"]["outputFile"], "w").write(json.dumps(output))
"""


def test_tasks_run_in_dependency_order_with_their_inputs_recorded_as_kubeflow_does(tmp_path):
    from components import mlmd
    from cxr_kubeflow import local_run

    package = _pipeline(
        tmp_path,
        {
            "c": {"code": ECHO, "after": ["b"], "reads": {"first": "a", "second": "b"}},
            "b": {"code": ECHO, "reads": {"x": "a"}},
            "a": {"code": ECHO},
        },
        secret=True,
    )
    (tmp_path / "secrets" / "salty").mkdir(parents=True)
    (tmp_path / "secrets" / "salty" / "salt").write_text("pepper\n")
    result = local_run.run(
        package, str(tmp_path / "work"), secrets_dir=str(tmp_path / "secrets"), run_id="r1", echo=lambda _: None
    )
    assert [t["task"] for t in result["tasks"]] == ["a", "b", "c"]
    seen = json.loads((tmp_path / "root" / "tiny" / "r1" / "c" / "out" / "seen.json").read_text())
    assert seen["input"]["inputs"]["parameterValues"] == {"greeting": "hello c"}
    (first,) = seen["input"]["inputs"]["artifacts"]["first"]["artifacts"]
    assert first["uri"] == str(tmp_path / "root" / "tiny" / "r1" / "a" / "out")
    assert first["metadata"] == {"rows": 3, "note": "ok"}  # what task a wrote in its executor output
    a_seen = json.loads((tmp_path / "root" / "tiny" / "r1" / "a" / "out" / "seen.json").read_text())
    assert a_seen["salt"] == "pepper"  # the Secret reached task a as its variable
    assert seen["salt"] is None  # and only task a

    store = mlmd.connect(result["metadata"])
    by_task = {t["task"]: t["execution_id"] for t in result["tasks"]}
    assert mlmd.node_ids(store, by_task.values()) == {i: t for t, i in by_task.items()}
    [c] = store.get_executions_by_id([by_task["c"]])
    assert c.last_known_state == mlmd.Execution.COMPLETE and mlmd.value(c, "greeting") == "hello c"
    inputs = mlmd.inputs(store, by_task["c"])
    assert inputs["first"][0].id == int(first["name"])
    assert store.get_artifact_types()[0].name == "tfx.Examples"
    assert mlmd.value(inputs["first"][0], "rows") == 3.0 and mlmd.value(inputs["first"][0], "display_name") == "out"
    assert mlmd.node_executions(store, "tiny", "c") == [c]
    runs = store.get_contexts_by_type(mlmd.KFP_RUN_CONTEXT)
    assert [r.name for r in runs] == ["r1"]


def test_a_failing_task_stops_the_run_with_its_own_error(tmp_path):
    from components import mlmd
    from cxr_kubeflow import local_run

    boom = "raise ValueError('the data gate found 3 anomalies')"
    package = _pipeline(tmp_path, {"a": {"code": ECHO}, "b": {"code": boom, "after": ["a"]}, "c": {"code": ECHO, "after": ["b"]}})
    with pytest.raises(local_run.TaskFailed, match=r"task b failed \(exit 1\): ValueError: the data gate found 3 anomalies") as e:
        local_run.run(package, str(tmp_path / "work"), run_id="r1", echo=lambda _: None)
    assert "Traceback" in Path(e.value.log).read_text()
    store = mlmd.connect(str(tmp_path / "work" / "metadata.sqlite"))
    states = {mlmd.value(x, "task_name"): x.last_known_state for x in store.get_executions()}
    assert states == {"a": mlmd.Execution.COMPLETE, "b": mlmd.Execution.FAILED}  # c never started


def test_a_missing_secret_and_a_cycle_are_refused_before_anything_runs(tmp_path):
    from cxr_kubeflow import local_run

    package = _pipeline(tmp_path, {"a": {"code": ECHO}}, secret=True)
    with pytest.raises(ValueError, match=r"Secret 'salty' \(key 'salt'\) as \$THE_SALT: put its value in .*salty/salt"):
        local_run.run(package, str(tmp_path / "work"), echo=lambda _: None)
    cyclic = {"root": {"dag": {"tasks": {"a": {"dependentTasks": ["b"]}, "b": {"dependentTasks": ["a"]}}}}}
    with pytest.raises(ValueError, match="cycle"):
        local_run.task_order(cyclic)


def test_to_runs_only_the_named_tasks_and_what_they_need(tmp_path):
    from click.testing import CliRunner

    from pipelines.cli import main

    tasks = {"a": {"code": ECHO}, "b": {"code": ECHO, "after": ["a"]}, "c": {"code": ECHO}, "d": {"code": ECHO, "after": ["b"]}}
    package = _pipeline(tmp_path, tasks)
    out = CliRunner().invoke(
        main, ["kubeflow", "local-run", package, "--work-dir", str(tmp_path / "w"), "--to", "b", "--to", "c"]
    )
    assert out.exit_code == 0, out.output
    ran = [line.split()[1] for line in out.output.splitlines() if line.startswith("  done")]
    assert sorted(ran) == ["a", "b", "c"] and ran.index("a") < ran.index("b")
    assert "all 3 tasks complete" in out.output
    unknown = CliRunner().invoke(main, ["kubeflow", "local-run", package, "--work-dir", str(tmp_path / "w"), "--to", "e"])
    assert unknown.exit_code == 1 and "no task e in the pipeline; its tasks: a, b, c, d" in unknown.output


def test_the_cli_prints_each_task_and_fails_cleanly(tmp_path):
    from click.testing import CliRunner

    from pipelines.cli import main

    package = _pipeline(tmp_path, {"a": {"code": ECHO}, "b": {"code": "import sys; sys.exit(3)", "after": ["a"]}})
    out = CliRunner().invoke(main, ["kubeflow", "local-run", package, "--work-dir", str(tmp_path / "w")])
    assert out.exit_code == 1
    assert "done     a" in out.output and "FAILED   b" in out.output
    assert "task b failed (exit 3)" in out.output and "Traceback" not in out.output


# A task module: its import as a module (by the preloading helper) is counted apart from its runs as __main__,
# where it records its process and environment, or fails as its task's name asks.
TASK_MODULE = """
import json, os, sys
if __name__ != "__main__":
    with open(os.environ["IMPORTS_FILE"], "a") as f:
        f.write(f"{os.getpid()}\\n")
else:
    executor_input = json.loads(sys.argv[1])
    (out,) = executor_input["outputs"]["artifacts"]["out"]["artifacts"]
    if out["uri"].endswith("/fails/out"):
        print("the trainer ran out of examples", file=sys.stderr)
        sys.exit(3)
    os.environ["LEAK"] = "from an earlier task"
    os.makedirs(out["uri"], exist_ok=True)
    seen = {"pid": os.getpid(), "salt": os.environ.get("THE_SALT"), "leak": os.environ.get("LEAK_SEEN")}
    open(os.path.join(out["uri"], "seen.json"), "w").write(json.dumps(seen))
    os.environ["LEAK_SEEN"] = "yes"
"""


def test_preloaded_tasks_run_in_processes_of_their_own_importing_once(tmp_path, monkeypatch):
    from cxr_kubeflow import local_run

    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "cxr_test_task.py").write_text(TASK_MODULE)
    # Added in front, not instead: the helper must still import cxr_kubeflow as this process does.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "mods"), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("IMPORTS_FILE", str(tmp_path / "imports.txt"))
    task = {"module": "cxr_test_task"}
    package = _pipeline(tmp_path, {"a": task, "b": {**task, "after": ["a"]}, "c": {**task, "after": ["b"]}}, secret=True)
    (tmp_path / "secrets" / "salty").mkdir(parents=True)
    (tmp_path / "secrets" / "salty" / "salt").write_text("pepper")
    local_run.run(package, str(tmp_path / "work"), secrets_dir=str(tmp_path / "secrets"), run_id="r1", echo=lambda _: None)
    seen = {t: json.loads((tmp_path / "root" / "tiny" / "r1" / t / "out" / "seen.json").read_text()) for t in "abc"}
    (helper,) = (tmp_path / "imports.txt").read_text().split()  # imported once, by the helper
    pids = {s["pid"] for s in seen.values()}
    assert len(pids) == 3 and int(helper) not in pids  # each task a process of its own
    assert [seen[t]["salt"] for t in "abc"] == ["pepper", None, None]  # a Secret reaches its task only
    assert {s["leak"] for s in seen.values()} == {None}  # nothing a task sets reaches the next

    failing = _pipeline(tmp_path, {"a": task, "fails": {**task, "after": ["a"]}})
    with pytest.raises(local_run.TaskFailed, match=r"task fails failed \(exit 3\): the trainer ran out of examples"):
        local_run.run(failing, str(tmp_path / "work"), run_id="r2", echo=lambda _: None)
