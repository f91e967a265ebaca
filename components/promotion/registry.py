"""The model registry: candidates read from ML Metadata, promotions and rollbacks recorded in it.

Every trained model is a candidate: the Trainer's Model artifact, the Evaluator's verdict on it and the versions
the Pusher published it as. Production is a stage a person moves a pushed version into with `promote` (or back
with `rollback`); each move is an ML Metadata execution of type `cxr.ModelPromotion` in the model's
`cxr.ModelRegistry` context, reading the PushedModel it promotes and writing a `cxr.ProductionModel`. The
registry keeps no other state: replaying those executions in order gives production's history (a promotion
pushes a version on it, a rollback pops one), so the store alone answers "what serves, since when, says who".

After each move the serving config (`models.config` next to the model directories, TF Serving's
ModelServerConfig for `--model_config_file`) pins every model to its production version and labels it
"production".
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import os
import posixpath
import time

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import mlmd, storage
from components.evaluation import results
from components.promotion import versions

logger = logging.getLogger(__name__)

PROMOTION_TYPE = "cxr.ModelPromotion"
REGISTRY_CONTEXT = "cxr.ModelRegistry"
PRODUCTION_TYPE = "cxr.ProductionModel"
PRODUCTION = "production"
SERVING_CONFIG_FILE = "models.config"
PROMOTE, ROLLBACK = "promote", "rollback"


class PromotionRefused(Exception):
    """The registry will not make this move; the message says why (and whether --force would help)."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One trained model and what became of it."""

    model_name: str  # the TF Serving name: the last directory of the Pusher's destination
    task: str  # "segmentation" or "classification": the pipeline's Trainer.<task>
    model_id: int  # the Model artifact
    model_uri: str
    trained_ms: int
    blessed: bool | None  # None: no Evaluator judged it
    metrics: dict[str, float]  # overall-slice evaluation
    failures: tuple[str, ...]  # why it was not blessed
    versions: tuple[int, ...]  # serving versions it was published as
    pushed_model_ids: tuple[int, ...]  # the PushedModel artifacts, same order
    base_dir: str  # <serving base>/<model_name>


@dataclasses.dataclass(frozen=True)
class Move:
    """One recorded promotion or rollback."""

    execution_id: int
    action: str
    version: int
    previous_version: int | None
    user: str
    reason: str
    forced: bool
    time_ms: int


def _task(node: str, kind: str) -> str | None:
    prefix = kind + "."
    return node[len(prefix) :] if node.startswith(prefix) else None


def candidates(store: metadata_store.MetadataStore) -> list[Candidate]:
    """Every model the pipeline trained, oldest first, with its evaluation and pushed versions."""
    executions = {e.id: e for e in store.get_executions()}
    nodes = mlmd.node_ids(store, executions)
    # The TF Serving name of each task's models: where its Pusher publishes them.
    base_of: dict[str, str] = {}
    for eid, node in sorted(nodes.items()):
        task = _task(node, "Pusher")
        destination = mlmd.json_value(executions[eid], "push_destination", {}) if task else {}
        base = (destination or {}).get("filesystem", {}).get("base_directory")
        if task and base:
            base_of[task] = base.rstrip("/")
    out = []
    for model in mlmd.artifacts_of_type(store, "Model"):
        made_by = mlmd.producer(store, model.id)
        task = _task(nodes.get(made_by.id, ""), "Trainer") if made_by else None
        if task is None:
            continue
        blessed, metrics, failures = None, {}, ()
        evaluations = [e for e in mlmd.consumers(store, model.id, "model") if _task(nodes.get(e.id, ""), "Evaluator")]
        if evaluations:
            produced = mlmd.outputs(store, evaluations[-1].id)
            blessing = produced.get("blessing", [None])[0]
            evaluation = produced.get("evaluation", [None])[0]
            if blessing is not None:
                blessed = mlmd.value(blessing, "blessed") == 1
            if evaluation is not None:
                metrics = results.overall_metrics(evaluation.uri)
                failures = tuple(results.validation_failures(evaluation.uri)) if blessed is False else ()
        pushed: dict[int, int] = {}
        for push in mlmd.consumers(store, model.id, "model"):
            for artifact in mlmd.outputs(store, push.id).get("pushed_model", []):
                if mlmd.value(artifact, "pushed") == 1 and str(mlmd.value(artifact, "pushed_version", "")).isdigit():
                    pushed.setdefault(int(mlmd.value(artifact, "pushed_version")), artifact.id)
        base = base_of.get(task, "")
        out.append(
            Candidate(
                model_name=posixpath.basename(base) or task,
                task=task,
                model_id=model.id,
                model_uri=model.uri,
                trained_ms=model.create_time_since_epoch,
                blessed=blessed,
                metrics=metrics,
                failures=failures,
                versions=tuple(sorted(pushed)),
                pushed_model_ids=tuple(pushed[v] for v in sorted(pushed)),
                base_dir=base,
            )
        )
    return out


def model_names(store: metadata_store.MetadataStore) -> list[str]:
    return sorted({c.model_name for c in candidates(store)})


def _registry_context(store: metadata_store.MetadataStore, model_name: str, create: bool) -> metadata_store_pb2.Context | None:
    context = store.get_context_by_type_and_name(REGISTRY_CONTEXT, model_name)
    if context is not None or not create:
        return context
    type_id = store.put_context_type(metadata_store_pb2.ContextType(name=REGISTRY_CONTEXT))
    context = metadata_store_pb2.Context(type_id=type_id, name=model_name)
    [context.id] = store.put_contexts([context])
    return context


def history(store: metadata_store.MetadataStore, model_name: str) -> list[Move]:
    """The recorded promotions and rollbacks of a model, oldest first."""
    context = _registry_context(store, model_name, create=False)
    if context is None:
        return []
    moves = []
    for e in sorted(store.get_executions_by_context(context.id), key=lambda e: e.id):
        if e.last_known_state != metadata_store_pb2.Execution.COMPLETE:
            continue
        previous = mlmd.value(e, "previous_version", -1)
        moves.append(
            Move(
                execution_id=e.id,
                action=mlmd.value(e, "action"),
                version=int(mlmd.value(e, "version")),
                previous_version=None if previous < 0 else int(previous),
                user=mlmd.value(e, "user", ""),
                reason=mlmd.value(e, "reason", ""),
                forced=bool(mlmd.value(e, "forced", 0)),
                time_ms=e.create_time_since_epoch,
            )
        )
    return moves


def production_stack(store: metadata_store.MetadataStore, model_name: str) -> list[int]:
    """Production versions, the current one last: the replay of the model's moves (rollback pops)."""
    stack: list[int] = []
    for move in history(store, model_name):
        if move.action == PROMOTE:
            if not stack or stack[-1] != move.version:
                stack.append(move.version)
        elif move.action == ROLLBACK and stack:
            stack.pop()
    return stack


def production_version(store: metadata_store.MetadataStore, model_name: str) -> int | None:
    stack = production_stack(store, model_name)
    return stack[-1] if stack else None


def _of_model(store: metadata_store.MetadataStore, model_name: str) -> list[Candidate]:
    found = [c for c in candidates(store) if c.model_name == model_name]
    if not found:
        raise PromotionRefused(f"no model named {model_name!r} in the metadata store; known: {model_names(store) or 'none'}")
    return found


def find(
    store: metadata_store.MetadataStore, model_name: str, version: int | None = None, model_id: int | None = None
) -> Candidate:
    """The candidate published as `version`, or the Model artifact `model_id`, of `model_name`."""
    found = _of_model(store, model_name)
    for c in found:
        if (version is not None and version in c.versions) or (model_id is not None and c.model_id == model_id):
            return c
    what = f"version {version}" if version is not None else f"model id {model_id}"
    pushed = sorted(v for c in found for v in c.versions)
    raise PromotionRefused(f"{model_name} has no {what}; its pushed versions: {pushed or 'none'}")


def _key(c: Candidate) -> tuple[str, bool, float | None]:
    name, higher_is_better = results.key_metric(c.task)
    return name, higher_is_better, c.metrics.get(name)


def _refusal(store: metadata_store.MetadataStore, c: Candidate, version: int | None, force: bool) -> str | None:
    """Why `c` may not become production, or None; a refusal --force may override ends with "(--force ...)"."""
    label = f"{c.model_name} model {c.model_id}" + (f" (version {version})" if version is not None else "")
    if c.blessed is None:
        return f"{label} was never evaluated, so it is not blessed"
    if not c.blessed:
        reasons = "; ".join(c.failures) or "its evaluation did not pass the blessing thresholds"
        return f"{label} is not blessed: {reasons}"
    if version is None:
        return f"{label} is blessed but was never pushed, so there is no version to serve"
    if version not in versions.list_versions(c.base_dir):
        return f"{label}: version {version} is not (or no longer) complete under {c.base_dir}"
    current = production_version(store, c.model_name)
    if current is None or current == version or force:
        return None
    incumbent = find(store, c.model_name, version=current)
    name, higher, mine = _key(c)
    theirs = incumbent.metrics.get(name)
    if mine is None or theirs is None:
        return None
    if (mine < theirs) if higher else (mine > theirs):
        return (
            f"{label} has {name} {mine:.4f}, worse than production version {current} ({theirs:.4f}); "
            "(--force to promote it anyway, with --reason)"
        )
    return None


def _serving_config(store: metadata_store.MetadataStore, serving_base: str) -> str:
    """TF Serving's ModelServerConfig (text) for every model under `serving_base` that has a production version."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2 as ms

    config = ms.ModelServerConfig()
    everything = candidates(store)
    for name in sorted({c.model_name for c in everything}):
        version = production_version(store, name)
        base = next((c.base_dir for c in everything if c.model_name == name and c.base_dir), "")
        if version is None or posixpath.dirname(base) != serving_base:
            continue
        model = config.model_config_list.config.add(name=name, base_path=base, model_platform="tensorflow")
        model.model_version_policy.specific.versions.append(version)
        model.version_labels[PRODUCTION] = version
    return text_format.MessageToString(config)


def serving_config_path(base_dir: str) -> str:
    return posixpath.join(posixpath.dirname(base_dir.rstrip("/")), SERVING_CONFIG_FILE)


def _record(
    store: metadata_store.MetadataStore,
    c: Candidate,
    action: str,
    version: int,
    previous: int | None,
    user: str,
    reason: str,
    forced: bool,
) -> int:
    execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name=PROMOTION_TYPE))
    artifact_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name=PRODUCTION_TYPE))
    execution = metadata_store_pb2.Execution(type_id=execution_type, last_known_state=metadata_store_pb2.Execution.COMPLETE)
    props = {
        "model_name": c.model_name,
        "action": action,
        "version": version,
        "previous_version": -1 if previous is None else previous,
        "stage": PRODUCTION,
        "user": user,
        "reason": reason,
        "forced": int(forced),
        "model_id": c.model_id,
    }
    for key, v in props.items():
        if isinstance(v, int):
            execution.custom_properties[key].int_value = v
        else:
            execution.custom_properties[key].string_value = v
    pushed = store.get_artifacts_by_id([c.pushed_model_ids[c.versions.index(version)]])[0]
    released = metadata_store_pb2.Artifact(type_id=artifact_type, uri=posixpath.join(c.base_dir, str(version)))
    released.state = metadata_store_pb2.Artifact.LIVE
    for key in ("model_name", "stage"):
        released.custom_properties[key].string_value = props[key]
    released.custom_properties["version"].int_value = version

    def event(kind: int, key: str) -> metadata_store_pb2.Event:
        e = metadata_store_pb2.Event(type=kind)
        e.path.steps.add(key=key)
        e.path.steps.add(index=0)
        return e

    context = _registry_context(store, c.model_name, create=True)
    execution_id, _, _ = store.put_execution(
        execution,
        [
            (pushed, event(metadata_store_pb2.Event.INPUT, "pushed_model")),
            (released, event(metadata_store_pb2.Event.OUTPUT, PRODUCTION)),
        ],
        [context],
    )
    return execution_id


def _write_serving_config(store: metadata_store.MetadataStore, base_dir: str) -> str:
    path = serving_config_path(base_dir)
    storage.write_bytes(path, _serving_config(store, posixpath.dirname(base_dir.rstrip("/"))).encode())
    return path


def promote(
    store: metadata_store.MetadataStore,
    model_name: str,
    version: int | None = None,
    model_id: int | None = None,
    force: bool = False,
    reason: str = "",
    user: str | None = None,
) -> Move:
    """Makes a pushed, blessed version production; refuses (PromotionRefused, with why) otherwise.

    A blessed version whose key metric is worse than production's is refused unless `force` (which needs a
    reason); an unblessed or unpushed model never is.
    """
    if force and not reason.strip():
        raise PromotionRefused("--force needs a --reason: it is recorded with the promotion")
    c = find(store, model_name, version=version, model_id=model_id)
    if version is None and c.versions:
        version = c.versions[-1]
    refusal = _refusal(store, c, version, force)
    if refusal:
        raise PromotionRefused(refusal)
    assert version is not None
    previous = production_version(store, model_name)
    forced = force and _refusal(store, c, version, False) is not None
    execution_id = _record(store, c, PROMOTE, version, previous, user or getpass.getuser(), reason, forced)
    path = _write_serving_config(store, c.base_dir)
    logger.info("%s version %d is production (was %s); serving config %s", model_name, version, previous, path)
    return Move(execution_id, PROMOTE, version, previous, user or getpass.getuser(), reason, forced, int(time.time() * 1000))


def rollback(store: metadata_store.MetadataStore, model_name: str, reason: str = "", user: str | None = None) -> Move:
    """Puts back the production version that preceded the current one."""
    _of_model(store, model_name)
    stack = production_stack(store, model_name)
    if len(stack) < 2:
        now = f"production is version {stack[-1]}" if stack else "nothing is in production"
        raise PromotionRefused(f"{model_name} has no earlier production version to roll back to ({now})")
    current, target = stack[-1], stack[-2]
    c = find(store, model_name, version=target)
    if target not in versions.list_versions(c.base_dir):
        raise PromotionRefused(f"{model_name} version {target} is no longer complete under {c.base_dir}; cannot roll back to it")
    user = user or getpass.getuser()
    execution_id = _record(store, c, ROLLBACK, target, current, user, reason, False)
    path = _write_serving_config(store, c.base_dir)
    logger.info("%s rolled back from version %d to %d; serving config %s", model_name, current, target, path)
    return Move(execution_id, ROLLBACK, target, current, user, reason, False, int(time.time() * 1000))


def stage_of(store: metadata_store.MetadataStore, c: Candidate) -> dict[int, str]:
    """{version: stage} for the versions of `c` that were ever in production: "production" (now), "previous
    production" (under it, where a rollback would go) or "rolled back" (taken out of production by a rollback)."""
    stack = production_stack(store, c.model_name)
    ever = {m.version for m in history(store, c.model_name) if m.action == PROMOTE}
    out = {}
    for v in c.versions:
        if stack and v == stack[-1]:
            out[v] = PRODUCTION
        elif v in stack:
            out[v] = "previous production"
        elif v in ever:
            out[v] = "rolled back"
    return out


def default_user() -> str:
    return os.environ.get("CXR_USER") or getpass.getuser()
