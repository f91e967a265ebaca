"""A stand-in for the Kubeflow Pipelines API (v2beta1 REST) on 127.0.0.1 that records every request it gets.

It answers the calls the kfp 2.x client makes to upload pipelines and versions, find or create experiments and
create runs and recurring runs, with the smallest valid responses, and keeps what was created so that a second
call sees the first one's pipeline, experiment and recurring runs. Tests assert on the recorded requests: what
the real client sends over HTTP, not what our code meant to send.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json

from http_recorder import RecordingHandler, Request, serving

API = "/apis/v2beta1"


@dataclasses.dataclass
class State:
    requests: list[Request] = dataclasses.field(default_factory=list)
    pipelines: dict[str, dict] = dataclasses.field(default_factory=dict)  # by display name
    versions: dict[str, list[dict]] = dataclasses.field(default_factory=dict)  # by pipeline id
    experiments: dict[str, dict] = dataclasses.field(default_factory=dict)  # by display name
    recurring_runs: dict[str, dict] = dataclasses.field(default_factory=dict)  # by id
    runs: dict[str, dict] = dataclasses.field(default_factory=dict)

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == API + path]


def _display_name_filter(query: dict[str, str]) -> str | None:
    if "filter" not in query:
        return None
    predicates = json.loads(query["filter"]).get("predicates", [])
    names = [p.get("stringValue", p.get("string_value")) for p in predicates if p.get("key") in ("display_name", "name")]
    return names[0] if names else None


def _handler(state: State, ids: itertools.count):
    class Handler(RecordingHandler):
        requests = state.requests

        def do_GET(self) -> None:
            r = self._record()
            if r.path == f"{API}/healthz":
                return self._reply(200, {"multi_user": False})
            if r.path == f"{API}/pipelines":
                name = _display_name_filter(r.query)
                found = [p for n, p in state.pipelines.items() if name in (None, n)]
                return self._reply(200, {"pipelines": found, "total_size": len(found)} if found else {})
            if r.path.startswith(f"{API}/pipelines/") and r.path.endswith("/versions"):
                versions = list(reversed(state.versions.get(r.path.split("/")[-2], [])))  # newest first
                return self._reply(200, {"pipeline_versions": versions, "total_size": len(versions)} if versions else {})
            if r.path == f"{API}/experiments":
                name = _display_name_filter(r.query)
                found = [e for n, e in state.experiments.items() if name in (None, n)]
                return self._reply(200, {"experiments": found, "total_size": len(found)} if found else {})
            if r.path == f"{API}/recurringruns":
                name = _display_name_filter(r.query)
                found = [
                    rr
                    for rr in state.recurring_runs.values()
                    if name in (None, rr["display_name"]) and r.query.get("experiment_id") in (None, rr["experiment_id"])
                ]
                return self._reply(200, {"recurringRuns": found, "total_size": len(found)} if found else {})
            self._reply(404, {"error": f"not served here: GET {r.path}"})

        def do_POST(self) -> None:
            r = self._record()
            n = next(ids)
            if r.path == f"{API}/pipelines/upload":
                pipeline = {"pipeline_id": f"pipeline-{n}", "display_name": r.query["name"], "created_at": "2026-01-01T00:00:00Z"}
                state.pipelines[r.query["name"]] = pipeline
                # Like KFP, the upload creates the pipeline's first version.
                state.versions[pipeline["pipeline_id"]] = [
                    {
                        "pipeline_id": pipeline["pipeline_id"],
                        "pipeline_version_id": f"version-{n}",
                        "display_name": r.query["name"],
                    }
                ]
                return self._reply(200, pipeline)
            if r.path == f"{API}/pipelines/upload_version":
                version = {
                    "pipeline_id": r.query["pipelineid"],
                    "pipeline_version_id": f"version-{n}",
                    "display_name": r.query["name"],
                }
                state.versions.setdefault(r.query["pipelineid"], []).append(version)
                return self._reply(200, version)
            if r.path == f"{API}/experiments":
                experiment = {**r.json, "experiment_id": f"experiment-{n}"}
                state.experiments[r.json["display_name"]] = experiment
                return self._reply(200, experiment)
            if r.path == f"{API}/recurringruns":
                recurring = {**r.json, "recurring_run_id": f"recurring-{n}"}
                state.recurring_runs[recurring["recurring_run_id"]] = recurring
                return self._reply(200, recurring)
            if r.path == f"{API}/runs":
                run = {**r.json, "run_id": f"run-{n}", "state": "PENDING"}
                state.runs[run["run_id"]] = run
                return self._reply(200, run)
            self._reply(404, {"error": f"not served here: POST {r.path}"})

        def do_DELETE(self) -> None:
            r = self._record()
            prefix = f"{API}/recurringruns/"
            if r.path.startswith(prefix) and state.recurring_runs.pop(r.path[len(prefix) :], None):
                return self._reply(200, {})
            self._reply(404, {"error": f"not served here: DELETE {r.path}"})

    return Handler


@contextlib.contextmanager
def kfp_api():
    """Serves the recording KFP API on 127.0.0.1 (a free port); yields (base URL, State)."""
    state = State()
    with serving(_handler(state, itertools.count(1))) as url:
        yield url, state
