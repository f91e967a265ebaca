"""One run per run directory at a time: an exclusive lock on `<run_dir>/.cxr.lock`, and what a killed run left behind.

The lock is `fcntl.flock` on an open file: the kernel releases it when its holder exits, however it exits (a
SIGKILL, a crash, a closed terminal), so a lock is never stuck and no pid has to be probed. The file also says
who holds it (pid, host, start time, command) so that a refused run can name them; a clean exit empties it, so
a file that still names someone while nobody holds the lock was left by a run that was killed (a stale lock),
and the next run takes it over and says so. The file itself is never deleted: unlinking a flock'ed file lets
two processes each lock a different file of the same name.

A killed run also leaves its unfinished executions RUNNING in ML Metadata for ever. Whoever holds the lock
knows no run is live in that directory, so it marks them CANCELED (`cancel_orphans`) before it starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
from collections.abc import Iterator

from components import stops

logger = logging.getLogger(__name__)

LOCK_FILE = ".cxr.lock"
# The custom property on an execution marked CANCELED because the run that started it was killed.
ORPHANED_BY = "cxr_orphaned_by"


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds (or, in a stale lock file, held) a run directory."""

    pid: int
    host: str
    started: str  # local time with its UTC offset, ISO 8601 to the second
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host} since {self.started} ({self.command})"

    @classmethod
    def me(cls, command: str | None = None) -> Holder:
        if command is None:
            command = shlex.join([os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python", *sys.argv[1:]])
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        return cls(pid=os.getpid(), host=socket.gethostname(), started=started, command=command)


class RunDirectoryBusy(stops.RunDirectoryBusy):
    """Another run holds the run directory; the message names it (pid, host, since when, its command)."""

    def __init__(self, run_dir: str, holder: Holder | None):
        self.run_dir = run_dir
        self.holder = holder
        who = holder.describe() if holder else "another process (it has not written who it is yet)"
        super().__init__(
            f"run directory {run_dir} is in use by {who}; wait for that run to finish or stop it, "
            "or give this run another run_dir"
        )


def lock_path(run_dir: str) -> str:
    return os.path.join(run_dir, LOCK_FILE)


def _parse(text: str) -> Holder | None:
    try:
        raw = json.loads(text)
        return Holder(pid=int(raw["pid"]), host=str(raw["host"]), started=str(raw["started"]), command=str(raw["command"]))
    except (ValueError, KeyError, TypeError):
        return None


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").strip()


def recorded_holder(run_dir: str) -> Holder | None:
    """Who the lock file names: the live holder, or the killed run of a stale lock; None for an empty or no file.

    It does not say whether the lock is held (only trying to take it does).
    """
    try:
        with open(lock_path(run_dir)) as f:
            return _parse(f.read())
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def hold(run_dir: str, command: str | None = None) -> Iterator[Holder]:
    """Holds the run directory's lock for the duration of the block; yields this process's Holder record.

    Args:
      run_dir: an existing local directory.
      command: what to record as this run's command (default: this process's command line).

    Raises:
      RunDirectoryBusy: another process holds the lock (the message says who).
      OSError: the lock file cannot be created, or its filesystem does not support flock (the message says so).
    """
    path = lock_path(run_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited across exec (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryBusy(run_dir, _parse(_read(fd))) from None
        except OSError as e:
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise OSError(e.errno, f"cannot lock {path}: its filesystem does not support flock; use a local run_dir") from e
            raise
        left = _read(fd)
        if left:
            stale = _parse(left)
            who = stale.describe() if stale else repr(left[:200])
            logger.warning("took over the stale lock of %s from %s: that run ended without releasing it", run_dir, who)
        me = Holder.me(command)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(dataclasses.asdict(me)) + "\n").encode())
        os.fsync(fd)
        try:
            yield me
        finally:
            os.ftruncate(fd, 0)  # a clean exit leaves an empty file: a file naming someone is a stale lock
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def refuse_if_busy(run_dir: str) -> None:
    """Raises RunDirectoryBusy at once if another process holds the run directory; takes nothing, creates nothing.

    A check before a run has imported anything heavy, so that a busy directory answers in a second; the run itself
    still takes the lock with `hold` (a run that starts in between is refused there).
    """
    try:
        fd = os.open(lock_path(run_dir), os.O_RDONLY)
    except FileNotFoundError:
        return  # never run here
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryBusy(run_dir, _parse(_read(fd))) from None
        except OSError:
            return  # no flock on this filesystem: `hold` says so
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def cancel_orphans(metadata_path: str, holder: Holder) -> list[tuple[int, str]]:
    """Marks CANCELED the executions a killed run left RUNNING (or NEW) in the run directory's store.

    Call it only while holding the run directory's lock: then no run in it is live, so an execution that has
    not finished never will. CANCELED rather than FAILED: in ML Metadata FAILED says the execution ran to an
    error (TFX records its executor's error with it), CANCELED that it was stopped before it finished, which is
    what happened; neither counts as done for TFX's cache, `cxr models list` or the run report. Each marked
    execution gets the custom property `cxr_orphaned_by` saying why, when and by whom, and one warning line.

    Args:
      metadata_path: the run's SQLite ML Metadata file; nothing happens when it does not exist yet.
      holder: this run (from `hold`), recorded in the property.

    Returns:
      [(execution id, pipeline node id or "" when it has none)] of the executions marked.
    """
    if not os.path.exists(metadata_path):
        return []
    from components import mlmd

    store = mlmd.connect(metadata_path)
    orphans = [e for e in store.get_executions() if e.last_known_state in (mlmd.Execution.RUNNING, mlmd.Execution.NEW)]
    if not orphans:
        return []
    nodes = mlmd.node_ids(store, [e.id for e in orphans])
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    reason = f"run killed before this execution finished; marked at {now} by pid {holder.pid} on host {holder.host}"
    marked = []
    for e in sorted(orphans, key=lambda e: e.id):
        before = mlmd.Execution.State.Name(e.last_known_state)
        e.last_known_state = mlmd.Execution.CANCELED
        e.custom_properties[ORPHANED_BY].string_value = reason
        store.put_executions([e])
        node = nodes.get(e.id, "")
        logger.warning("execution %d (%s) was left %s by a killed run: marked CANCELED", e.id, node or "no node", before)
        marked.append((e.id, node))
    return marked
