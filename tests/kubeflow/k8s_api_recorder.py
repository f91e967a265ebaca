"""A stand-in for the Kubernetes API on 127.0.0.1 that records every request: TFJobs (kubeflow.org/v1) and their pods.

It answers what the kubernetes Python client's CustomObjectsApi and CoreV1Api send for a Training Operator TFJob:
create, get, delete, the job's pods by label and their logs. A created job plays a scripted status sequence, one
status per GET (the last one repeats), the way the operator's conditions move; its pods are `<job>-worker-<i>`
with the operator's job-name label and the logs the test gives them. Tests assert on the recorded requests: what
the real client sent over HTTP, not what our code meant to send.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

from http_recorder import RecordingHandler, Request, serving

TFJOBS = re.compile(r"^/apis/kubeflow\.org/v1/namespaces/([^/]+)/tfjobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
POD_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
TOKEN = "recorder-token"


def condition(kind: str, status: str = "True", message: str = "") -> dict[str, str]:
    return {
        "type": kind,
        "status": status,
        "reason": f"TFJob{kind}",
        "message": message or f"TFJob is {kind.lower()}.",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "lastUpdateTime": "2026-01-01T00:00:00Z",
    }


def progression(*kinds: str, message: str = "") -> list[dict[str, Any]]:
    """The statuses a job reports as it goes through `kinds` (e.g. Created, Running, Succeeded), as the operator
    writes them: conditions accumulate, and Running turns False when the job succeeds or fails. `message` is the
    last condition's."""
    statuses, conditions = [], []
    for i, kind in enumerate(kinds):
        if kind in ("Succeeded", "Failed"):
            conditions = [dict(c, status="False") if c["type"] == "Running" else c for c in conditions]
        conditions = [*conditions, condition(kind, message=message if i == len(kinds) - 1 else "")]
        statuses.append({"conditions": conditions, "replicaStatuses": {"Worker": {}}})
    return statuses


@dataclasses.dataclass
class State:
    requests: list[Request] = dataclasses.field(default_factory=list)
    tfjobs: dict[tuple[str, str], dict] = dataclasses.field(default_factory=dict)  # (namespace, name) -> object
    polls: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)  # GETs answered per created job
    # The status a created job reports at its 1st, 2nd, ... GET; the last one repeats.
    statuses: list[dict[str, Any]] = dataclasses.field(default_factory=lambda: progression("Created", "Running", "Succeeded"))
    logs: dict[int, str] = dataclasses.field(default_factory=dict)  # worker index -> its pod's whole log
    pod_status: dict[int, dict] = dataclasses.field(default_factory=dict)  # worker index -> V1PodStatus as JSON
    on_create: Callable[[dict], None] | None = None  # called with each created TFJob's body, before the reply
    errors: list[BaseException] = dataclasses.field(default_factory=list)  # what on_create raised (answered 500)
    serve_tfjobs: bool = True  # False: a cluster without the Training Operator (no TFJob resource)
    forbidden: set[str] = dataclasses.field(default_factory=set)  # methods answered 403 on TFJobs, e.g. {"POST"}

    def calls(self, method: str, pattern: re.Pattern[str]) -> list[Request]:
        return [r for r in self.requests if r.method == method and pattern.match(r.path)]

    def add_job(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        """A job that exists before the test (e.g. from a first attempt), with a fixed status."""
        meta = body["metadata"]
        self.tfjobs[(meta["namespace"], meta["name"])] = {**body, "status": status}

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        out = []
        for (ns, name), job in self.tfjobs.items():
            if ns != namespace:
                continue
            for i in range(job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"]):
                out.append(
                    {
                        "metadata": {
                            "name": f"{name}-worker-{i}",
                            "namespace": ns,
                            "labels": {JOB_NAME_LABEL: name, "training.kubeflow.org/replica-index": str(i)},
                        },
                        "status": self.pod_status.get(i, {"phase": "Running"}),
                    }
                )
        return out


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code}


def _handler(state: State):
    class Handler(RecordingHandler):
        requests = state.requests

        def _tfjob(self, r: Request) -> tuple[str, str | None] | None:
            """(namespace, name) of a TFJob request, after answering it 404/403 if the cluster would; else None."""
            m = TFJOBS.match(r.path)
            if not m:
                return None
            if not state.serve_tfjobs:
                self._reply(404, _status(404, "NotFound", "the server could not find the requested resource"))
                return None
            if r.method in state.forbidden:
                self._reply(403, _status(403, "Forbidden", f'tfjobs.kubeflow.org is forbidden in "{m.group(1)}"'))
                return None
            return m.group(1), m.group(2)

        def do_GET(self) -> None:
            r = self._record()
            if TFJOBS.match(r.path):
                found = self._tfjob(r)
                if found is None:
                    return
                key = (found[0], found[1] or "")
                if key not in state.tfjobs:
                    return self._reply(404, _status(404, "NotFound", f'tfjobs.kubeflow.org "{key[1]}" not found'))
                job = state.tfjobs[key]
                if key in state.polls:  # created here: play the script
                    job = {**job, "status": state.statuses[min(state.polls[key], len(state.statuses) - 1)]}
                    state.polls[key] += 1
                return self._reply(200, job)
            m = PODS.match(r.path)
            if m:
                selector = r.query.get("labelSelector", "")
                want = dict(item.split("=", 1) for item in selector.split(",") if item)
                items = [p for p in state.pods(m.group(1)) if all(p["metadata"]["labels"].get(k) == v for k, v in want.items())]
                return self._reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
            m = POD_LOG.match(r.path)
            if m:
                pods = {p["metadata"]["name"]: p for p in state.pods(m.group(1))}
                if m.group(2) not in pods:
                    return self._reply(404, _status(404, "NotFound", f'pods "{m.group(2)}" not found'))
                index = int(pods[m.group(2)]["metadata"]["labels"]["training.kubeflow.org/replica-index"])
                if index not in state.logs:
                    return self._reply(400, _status(400, "BadRequest", "container is waiting to start"))
                lines = state.logs[index].splitlines()
                if "tailLines" in r.query:
                    lines = lines[-int(r.query["tailLines"]) :]
                return self._reply(200, "\n".join(lines) + "\n")
            self._reply(404, _status(404, "NotFound", f"not served here: GET {r.path}"))

        def do_POST(self) -> None:
            r = self._record()
            found = self._tfjob(r)
            if found is None:
                if not TFJOBS.match(r.path):
                    self._reply(404, _status(404, "NotFound", f"not served here: POST {r.path}"))
                return
            key = (found[0], r.json["metadata"]["name"])
            if key in state.tfjobs:
                return self._reply(409, _status(409, "AlreadyExists", f'tfjobs.kubeflow.org "{key[1]}" already exists'))
            state.tfjobs[key] = r.json
            state.polls[key] = 0
            if state.on_create:
                try:
                    state.on_create(r.json)
                except Exception as e:  # kept for the test to raise; the client gets a clean 500
                    state.errors.append(e)
                    return self._reply(500, _status(500, "InternalError", f"on_create failed: {e!r}"[:500]))
            self._reply(201, r.json)

        def do_DELETE(self) -> None:
            r = self._record()
            found = self._tfjob(r)
            if found is None:
                if not TFJOBS.match(r.path):
                    self._reply(404, _status(404, "NotFound", f"not served here: DELETE {r.path}"))
                return
            job = state.tfjobs.pop((found[0], found[1] or ""), None)
            state.polls.pop((found[0], found[1] or ""), None)
            if job is None:
                return self._reply(404, _status(404, "NotFound", f'tfjobs.kubeflow.org "{found[1]}" not found'))
            self._reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    return Handler


@contextlib.contextmanager
def k8s_api():
    """Serves the recording Kubernetes API on 127.0.0.1 (a free port); yields (base URL, State)."""
    state = State()
    with serving(_handler(state)) as url:
        yield url, state


def kubeconfig(url: str, namespace: str) -> str:
    """A kube config (YAML) whose current context is this server, a bearer token, and `namespace`."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "recorder", "cluster": {"server": url}}],
            "users": [{"name": "recorder", "user": {"token": TOKEN}}],
            "contexts": [{"name": "recorder", "context": {"cluster": "recorder", "user": "recorder", "namespace": namespace}}],
            "current-context": "recorder",
        }
    )
