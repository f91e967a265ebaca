"""One run per run directory: the lock refuses a second run and names the first; a killed run's executions are cancelled."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tiny_run import IN_PROCESS_BEAM

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


# --- A real run killed mid-Trainer, then resumed ---

RUN_SCRIPT = """
import sys
from pipelines import config as cfg
from pipelines import local_runner
config = cfg.load_config(overrides=sys.argv[3:], base=cfg.demo_config(sys.argv[1], sys.argv[2]))
local_runner.run(config, to_nodes=["Trainer.segmentation"])
"""
# Only what the segmentation Trainer needs, on one core's worth of Beam (in-process: the kill takes it all).
CHEAP = ["tasks=[segmentation]", *IN_PROCESS_BEAM, "report.enabled=false"]
LONG_TRAINING = ["segmentation.train_steps=1000000", "segmentation.epochs=1", "segmentation.eval_steps=1"]
SHORT_TRAINING = ["segmentation.train_steps=2", "segmentation.epochs=1", "segmentation.eval_steps=1"]


def _read_only(path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _running_trainer(path: str) -> mlmd.Execution | None:
    """The segmentation Trainer's RUNNING execution, or None (also while the store is not there or is busy)."""
    try:
        store = _read_only(path)
        running = [e for e in store.get_executions() if e.last_known_state == mlmd.Execution.RUNNING]
        nodes = mlmd.node_ids(store, [e.id for e in running])
    except Exception:  # the store does not exist yet, or the run is writing it
        return None
    return next((e for e in running if nodes.get(e.id) == "Trainer.segmentation"), None)


@pytest.mark.slow
def test_a_run_killed_mid_trainer_leaves_cancelled_executions_and_the_next_run_completes(tmp_path, monkeypatch, caplog):
    from components.promotion import registry
    from components.reporting import run_data
    from pipelines import config as cfg
    from pipelines import local_runner
    from pipelines.demo.archive import write_demo_archive

    archive, run_dir = tmp_path / "archive", tmp_path / "run"
    write_demo_archive(archive, n_per_source=4, size=64, seed=3)
    monkeypatch.setenv("CXR_ID_SALT", "test-run-lock")
    metadata, log = str(run_dir / "metadata.sqlite"), tmp_path / "killed_run.log"
    with open(log, "wb") as out:  # a file, not a pipe: a full pipe would stall the run
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN_SCRIPT, str(archive), str(run_dir), *CHEAP, *LONG_TRAINING],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 600
        while (killed := _running_trainer(metadata)) is None:
            assert proc.poll() is None, f"the run ended before its Trainer started:\n{log.read_text()[-5000:]}"
            assert time.monotonic() < deadline, "the Trainer did not start within 10 minutes"
            time.sleep(1)
        # Busy while the Trainer runs: a second run is refused, naming the first.
        busy_config = cfg.load_config(overrides=CHEAP + SHORT_TRAINING, base=cfg.demo_config(str(archive), str(run_dir)))
        with pytest.raises(run_lock.RunDirectoryBusy, match=f"in use by pid {proc.pid} on host "):
            local_runner.run(busy_config, to_nodes=["Trainer.segmentation"])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert _running_trainer(metadata) is not None  # nobody finished it

    caplog.set_level(logging.WARNING, logger=run_lock.__name__)
    config = cfg.load_config(overrides=CHEAP + SHORT_TRAINING, base=cfg.demo_config(str(archive), str(run_dir)))
    local_runner.run(config, to_nodes=["Trainer.segmentation"])

    assert f"took over the stale lock of {run_dir} from pid {proc.pid}" in caplog.text
    assert f"execution {killed.id} (Trainer.segmentation) was left RUNNING by a killed run: marked CANCELED" in caplog.text
    store = _read_only(metadata)
    executions = {e.id: e for e in store.get_executions()}
    nodes = mlmd.node_ids(store, executions)
    cancelled = [i for i, e in executions.items() if e.last_known_state == mlmd.Execution.CANCELED]
    assert cancelled == [killed.id]  # runs are sequential: only the Trainer was unfinished
    assert "run killed before this execution finished" in mlmd.value(executions[killed.id], run_lock.ORPHANED_BY)

    # The run report's reading: the killed run shows its Trainer cancelled, not done; the resumed run completed.
    killed_run = next(
        c.name for c in store.get_contexts_by_execution(killed.id) if c.type_id == store.get_context_type("pipeline_run").id
    )
    before = run_data.find_run(store, killed_run)
    assert before.state("Trainer.segmentation") == "canceled" and before.done("Trainer.segmentation") is None
    assert run_data.training(store, before, "segmentation") is None
    resumed = run_data.find_run(store)
    assert resumed.run_id != killed_run
    assert {resumed.state(n) for n in resumed.executions} <= {"complete", "cached"}, resumed.executions
    assert resumed.state("Trainer.segmentation") == "complete"
    trained = resumed.done("Trainer.segmentation")

    # `cxr models list`: one candidate, the resumed run's model; the killed Trainer made none.
    (candidate,) = registry.candidates(store)
    assert candidate.task == "segmentation" and candidate.blessed is None and candidate.versions == ()
    assert mlmd.producer(store, candidate.model_id).id == trained.id
    assert nodes[killed.id] == "Trainer.segmentation" and killed.id < trained.id
