"""Contract tests of scheduling: what the real kfp 2.x client sends to a KFP API (a recorder on 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path

import kfp
import pytest
import yaml
from click.testing import CliRunner
from kfp_api_recorder import kfp_api

from cxr_kubeflow import runner
from pipelines.cli import main

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "kubeflow" / "config.example.yaml"


@pytest.fixture(autouse=True)
def no_user_kfp_context(tmp_path, monkeypatch):
    """The client reads ~/.config/kfp/context.json when it exists; the tests must not depend on this machine's."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "no-kfp-context.json"))


@pytest.fixture
def api():
    with kfp_api() as (url, state):
        yield url, state


def _uploaded(request) -> str:
    return request.files["uploadfile"].decode()


def test_schedule_uploads_the_compiled_spec_and_creates_a_daily_recurring_run(api, kubeflow_config, compiled):
    url, state = api
    ids = runner.schedule(kubeflow_config, cron="0 0 2 * * *", host=url, package=str(compiled))

    (upload,) = state.calls("POST", "/pipelines/upload")
    assert upload.query["name"] == "cxr-pipeline"
    assert _uploaded(upload) == compiled.read_text()  # byte for byte what `cxr kubeflow compile` wrote
    assert list(yaml.safe_load_all(_uploaded(upload)))[0]["pipelineInfo"]["name"] == "cxr-pipeline"
    (experiment,) = state.calls("POST", "/experiments")
    assert experiment.json["display_name"] == "cxr"

    (request,) = state.calls("POST", "/recurringruns")
    body = request.json
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}
    assert body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["display_name"] == "cxr-pipeline-schedule"
    assert body["experiment_id"] == ids["experiment_id"] == state.experiments["cxr"]["experiment_id"]
    assert body["pipeline_version_reference"] == {"pipeline_id": ids["pipeline_id"], "pipeline_version_id": ids["version_id"]}
    assert body["runtime_config"] == {"pipeline_root": "gs://my-bucket/cxr/pipeline_root", "parameters": {}}
    assert body["service_account"] == "cxr-pipeline"
    assert "pipeline_spec" not in body  # the run refers to the uploaded version, not to a second copy of the spec
    assert ids["recurring_run_id"] in state.recurring_runs


def test_rescheduling_uploads_a_new_version_and_replaces_the_recurring_run_only_when_asked(api, kubeflow_config, compiled):
    url, state = api
    first = runner.schedule(kubeflow_config, host=url, package=str(compiled))
    with pytest.raises(ValueError, match="already has recurring run cxr-pipeline-schedule"):
        runner.schedule(kubeflow_config, host=url, package=str(compiled))
    assert len(state.calls("POST", "/recurringruns")) == 1

    second = runner.schedule(kubeflow_config, cron="0 30 3 * * 1", host=url, package=str(compiled), replace=True)
    assert len(state.calls("POST", "/pipelines/upload")) == 1  # the pipeline exists: a new version of it
    (version,) = state.calls("POST", "/pipelines/upload_version")
    assert version.query["pipelineid"] == first["pipeline_id"] == second["pipeline_id"]
    assert version.query["name"].startswith("cxr-pipeline-")
    assert _uploaded(version) == compiled.read_text()
    assert second["version_id"] != first["version_id"]
    assert len(state.calls("POST", "/experiments")) == 1  # found by name the second time
    created = state.calls("POST", "/recurringruns")[-1].json
    assert created["trigger"] == {"cron_schedule": {"cron": "0 30 3 * * 1"}}
    assert created["pipeline_version_reference"]["pipeline_version_id"] == second["version_id"]
    assert [r.path for r in state.calls("DELETE", f"/recurringruns/{first['recurring_run_id']}")]
    assert list(state.recurring_runs) == [second["recurring_run_id"]]


def test_run_once_starts_one_run_of_the_uploaded_version(api, kubeflow_config, compiled):
    url, state = api
    ids = runner.run_once(kubeflow_config, host=url, package=str(compiled))
    (request,) = state.calls("POST", "/runs")
    body = request.json
    assert body["experiment_id"] == ids["experiment_id"]
    assert body["pipeline_version_reference"] == {"pipeline_id": ids["pipeline_id"], "pipeline_version_id": ids["version_id"]}
    assert body["runtime_config"]["pipeline_root"] == "gs://my-bucket/cxr/pipeline_root"
    assert body["display_name"].startswith("cxr-pipeline-")
    assert not state.calls("POST", "/recurringruns")


def test_a_bad_cron_is_refused_before_any_request(api, kubeflow_config, compiled):
    url, state = api
    with pytest.raises(ValueError, match="cron must have 6 fields"):
        runner.schedule(kubeflow_config, cron="0 2 * * *", host=url, package=str(compiled))
    assert state.requests == []


def test_cli_compile_schedule_and_run(api, compiled, tmp_path):
    url, state = api
    cli = CliRunner()
    out = tmp_path / "cli.yaml"
    result = cli.invoke(main, ["kubeflow", "compile", "--config", str(EXAMPLE_CONFIG), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == compiled.read_text()

    result = cli.invoke(
        main,
        ["kubeflow", "schedule", "--config", str(EXAMPLE_CONFIG), "--cron", "0 15 4 * * *", "--host", url, "--package", str(out)],
    )
    assert result.exit_code == 0, result.output
    ids = json.loads(result.output[result.output.index("{") :])
    assert state.recurring_runs[ids["recurring_run_id"]]["trigger"] == {"cron_schedule": {"cron": "0 15 4 * * *"}}

    # Without --package the command compiles the configuration itself (here with another image).
    image = "registry.example/cxr:9"
    result = cli.invoke(
        main, ["kubeflow", "run", "--config", str(EXAMPLE_CONFIG), "--host", url, "--set", f"kubeflow.image={image}"]
    )
    assert result.exit_code == 0, result.output
    uploaded = yaml.safe_load(_uploaded(state.calls("POST", "/pipelines/upload_version")[-1]).split("\n---")[0])
    assert {e["container"]["image"] for e in uploaded["deploymentSpec"]["executors"].values()} == {image}
    assert len(state.calls("POST", "/runs")) == 1


def test_cli_reports_a_config_kubeflow_cannot_run(tmp_path):
    result = CliRunner().invoke(main, ["kubeflow", "compile", "--config", str(EXAMPLE_CONFIG), "--set", "run_dir=/data/runs"])
    assert result.exit_code == 1
    assert "not runnable on Kubeflow" in result.output and "run_dir" in result.output
    result = CliRunner().invoke(main, ["kubeflow", "run", "--config", str(EXAMPLE_CONFIG), "--set", "kubeflow.host=''"])
    assert result.exit_code == 1 and "no KFP endpoint" in result.output
