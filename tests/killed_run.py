"""A `cxr run` killed (SIGKILL) while a Trainer runs: how the shared fixture's rerun begins (tests/conftest.py).

The rerun is first started as an operator starts it, in a process of its own; once a Trainer is RUNNING in the
store, a second run of the same directory is tried (and refused), and the process group is killed. What the killed
run leaves (a stale lock, a RUNNING execution) is what the resumed run must clean up: tests/pipelines/test_run_lock.py.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

START_TIMEOUT_S = 600


@dataclasses.dataclass
class KilledRun:
    pid: int
    execution_id: int  # the Trainer execution the run left RUNNING
    node: str  # that Trainer's node id
    busy: str  # what a second run of the directory was told while this one ran
    output: str  # what the killed `cxr run` printed


def read_only(path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def running_trainer(metadata_path: str) -> tuple[int, str] | None:
    """(execution id, node id) of a RUNNING Trainer, or None (also while the store is not there or is busy)."""
    from components import mlmd

    try:
        store = read_only(metadata_path)
        running = [e.id for e in store.get_executions() if e.last_known_state == mlmd.Execution.RUNNING]
        nodes = mlmd.node_ids(store, running)
    except Exception:  # the store does not exist yet, or the run is writing it
        return None
    return next(((i, nodes[i]) for i in running if nodes.get(i, "").startswith("Trainer.")), None)


def kill_mid_trainer(config, config_file: str, output: Path) -> KilledRun:
    """`cxr run --config config_file` until a Trainer runs, a refused second run of `config` meanwhile, then SIGKILL."""
    from pipelines import local_runner, run_lock

    with open(output, "wb") as out:  # a file, not a pipe: a full pipe would stall the run
        proc = subprocess.Popen(
            [sys.executable, "-c", "from pipelines.cli import main; main()", "run", "--config", config_file],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while (trainer := running_trainer(config.metadata_path)) is None:
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before a Trainer started:\n{output.read_text()[-5000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no Trainer started within {START_TIMEOUT_S} s:\n{output.read_text()[-5000:]}")
            time.sleep(0.2)
        try:
            local_runner.run(config)
        except run_lock.RunDirectoryBusy as e:
            busy = str(e)
        else:
            raise AssertionError("a second run of the run directory started while the first held it")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    return KilledRun(proc.pid, *trainer, busy=busy, output=output.read_text())
