"""One run per run directory: the lock refuses a second run and names the first; a killed run's executions are cancelled."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from killed_run import read_only
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import mlmd
from pipelines import run_lock

ROOT = Path(__file__).resolve().parents[2]
HELD_COMMAND = "cxr run --config held.yaml"
# Takes the lock, says so, and keeps it until killed.
HOLD_SCRIPT = f"""
import sys, time
from pipelines import run_lock
with run_lock.hold(sys.argv[1], command={HELD_COMMAND!r}):
    print("held", flush=True)
    time.sleep(600)
"""


def _holding_process(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held", "the holding process did not take the lock"
    return proc


def test_a_second_run_is_refused_with_who_holds_it_until_the_holder_is_killed(tmp_path, caplog):
    proc = _holding_process(tmp_path)
    try:
        since = r"\d{4}-\d\d-\d\dT[0-9:]+\S*"
        who = rf"pid {proc.pid} on host {re.escape(socket.gethostname())} since {since} \({re.escape(HELD_COMMAND)}\)"
        with pytest.raises(
            run_lock.RunDirectoryBusy, match=rf"^run directory {re.escape(str(tmp_path))} is in use by {who}"
        ) as busy:
            with run_lock.hold(str(tmp_path)):
                pytest.fail("took a lock another process holds")
        assert busy.value.holder is not None and busy.value.holder.pid == proc.pid
        assert isinstance(busy.value, RuntimeError)
        # The check `cxr run` makes before importing the stack refuses the same way, and takes nothing.
        with pytest.raises(run_lock.RunDirectoryBusy, match=rf"in use by {who}"):
            run_lock.refuse_if_busy(str(tmp_path))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # The kernel released the killed holder's lock; its record is still in the file: a stale lock, taken over.
    assert run_lock.recorded_holder(str(tmp_path)).pid == proc.pid
    run_lock.refuse_if_busy(str(tmp_path))  # a stale lock does not refuse
    caplog.set_level(logging.WARNING, logger=run_lock.__name__)
    with run_lock.hold(str(tmp_path), command="cxr run") as me:
        assert me.pid == os.getpid()
        assert run_lock.recorded_holder(str(tmp_path)) == me
    assert f"took over the stale lock of {tmp_path} from pid {proc.pid} on host {socket.gethostname()}" in caplog.text


def test_a_clean_exit_leaves_no_stale_lock(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=run_lock.__name__)
    run_lock.refuse_if_busy(str(tmp_path))
    assert not (tmp_path / run_lock.LOCK_FILE).exists()  # the early check creates nothing
    with run_lock.hold(str(tmp_path)):
        # A second open file description conflicts even within the process: one run per directory, full stop.
        with pytest.raises(run_lock.RunDirectoryBusy, match=f"in use by pid {os.getpid()} "):
            with run_lock.hold(str(tmp_path)):
                pytest.fail("took a lock this process already holds")
    assert run_lock.recorded_holder(str(tmp_path)) is None
    assert (tmp_path / run_lock.LOCK_FILE).read_text() == ""
    with run_lock.hold(str(tmp_path)):
        pass
    assert "stale" not in caplog.text


def _store_with(path: str, states: dict[str, int]) -> tuple[metadata_store.MetadataStore, dict[str, int]]:
    """A real SQLite store with one execution per node in TFX's layout ("" : an execution without a node)."""
    store = mlmd.connect(path)
    execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name="tfx.SomeComponent"))
    context_type = store.put_context_type(metadata_store_pb2.ContextType(name=mlmd.NODE_CONTEXT))
    ids = {}
    for node, state in states.items():
        contexts = [metadata_store_pb2.Context(type_id=context_type, name=f"p.{node}")] if node else []
        execution = metadata_store_pb2.Execution(type_id=execution_type, last_known_state=state)
        ids[node], _, _ = store.put_execution(execution, [], contexts)
    return store, ids


def test_cancel_orphans_marks_only_unfinished_executions(tmp_path, caplog):
    path = str(tmp_path / "metadata.sqlite")
    assert run_lock.cancel_orphans(path, run_lock.Holder.me()) == []
    assert not os.path.exists(path)  # no store yet: none is created
    E = metadata_store_pb2.Execution
    store, ids = _store_with(
        path,
        {
            "Transform": E.COMPLETE,
            "Trainer.segmentation": E.RUNNING,
            "DataGate": E.FAILED,
            "Pusher.segmentation": E.CACHED,
            "": E.NEW,
        },
    )
    caplog.set_level(logging.WARNING, logger=run_lock.__name__)

    marked = run_lock.cancel_orphans(path, run_lock.Holder.me())

    assert marked == [(ids["Trainer.segmentation"], "Trainer.segmentation"), (ids[""], "")]
    by_id = {e.id: e for e in store.get_executions()}
    for node, state in {"Transform": E.COMPLETE, "DataGate": E.FAILED, "Pusher.segmentation": E.CACHED}.items():
        assert by_id[ids[node]].last_known_state == state and run_lock.ORPHANED_BY not in by_id[ids[node]].custom_properties
    for node in ("Trainer.segmentation", ""):
        e = by_id[ids[node]]
        assert e.last_known_state == E.CANCELED
        reason = mlmd.value(e, run_lock.ORPHANED_BY)
        assert re.fullmatch(rf"run killed before this execution finished; marked at \S+ by pid {os.getpid()} on host \S+", reason)
    trainer = ids["Trainer.segmentation"]
    assert f"execution {trainer} (Trainer.segmentation) was left RUNNING by a killed run: marked CANCELED" in caplog.text
    assert f"execution {ids['']} (no node) was left NEW by a killed run" in caplog.text
    assert run_lock.cancel_orphans(path, run_lock.Holder.me()) == []  # nothing left to mark


# --- A real run killed mid-Trainer, then resumed: the shared pipeline run's rerun (tests/conftest.py) ---


def test_a_second_run_was_refused_while_the_killed_run_held_the_directory(pipeline_run):
    killed, run_dir = pipeline_run.killed, pipeline_run.rerun_config.run_dir
    assert re.match(rf"^run directory {re.escape(run_dir)} is in use by pid {killed.pid} on host ", killed.busy), killed.busy
    assert "Traceback" not in killed.output  # killed, it had nothing to say about it


def test_a_run_killed_mid_trainer_leaves_cancelled_executions_and_the_next_run_completes(pipeline_run):
    from components.promotion import registry
    from components.reporting import run_data

    killed, run_dir = pipeline_run.killed, pipeline_run.rerun_config.run_dir
    warnings = "\n".join(pipeline_run.resume_warnings)
    assert f"took over the stale lock of {run_dir} from pid {killed.pid}" in warnings
    assert f"execution {killed.execution_id} ({killed.node}) was left RUNNING by a killed run: marked CANCELED" in warnings
    store = read_only(pipeline_run.rerun["metadata"])
    executions = {e.id: e for e in store.get_executions()}
    cancelled = [i for i, e in executions.items() if e.last_known_state == mlmd.Execution.CANCELED]
    assert cancelled == [killed.execution_id]  # runs are sequential: only the Trainer was unfinished
    assert "run killed before this execution finished" in mlmd.value(executions[killed.execution_id], run_lock.ORPHANED_BY)
    assert mlmd.node_ids(store, [killed.execution_id]) == {killed.execution_id: killed.node}

    # The run report's reading: the killed run shows its Trainer cancelled, not done; the resumed run completed.
    task = killed.node.split(".", 1)[1]
    killed_run = next(
        c.name
        for c in store.get_contexts_by_execution(killed.execution_id)
        if c.type_id == store.get_context_type("pipeline_run").id
    )
    before = run_data.find_run(store, killed_run)
    assert before.state(killed.node) == "canceled" and before.done(killed.node) is None
    assert run_data.training(store, before, task) is None
    resumed = run_data.find_run(store)
    assert resumed.run_id != killed_run
    assert {resumed.state(n) for n in resumed.executions} <= {"complete", "cached"}, resumed.executions
    assert resumed.state(killed.node) == "complete"
    trained = resumed.done(killed.node)
    assert killed.execution_id < trained.id

    # `cxr models list`: the first run's model and the resumed run's; the killed Trainer made none.
    candidates = [c for c in registry.candidates(store) if c.task == task]
    producers = [mlmd.producer(store, c.model_id).id for c in candidates]
    assert len(candidates) == 2 and producers[-1] == trained.id and killed.execution_id not in producers
