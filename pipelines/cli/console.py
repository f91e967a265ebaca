"""The terminal of a local run: one line per pipeline node with the numbers that matter, a progress line for
training, and the summary; everything else goes to `<run_dir>/logs/<run id>.log` (always written, full detail).

By default the process's own stdout and stderr (file descriptors 1 and 2) point at the log file for the whole
run, so TensorFlow's C++ messages, protobuf dumps, warnings and the output of Beam's worker processes land there
too; the console writes to a copy of the terminal taken before. With `verbose` everything is copied to both.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import sys
import threading
from typing import IO, Any

from components import contract, mlmd, progress

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_last_log: str | None = None
_startup_output = ""  # what importing the stack printed (quiet_imports); filed in the next run's log


def quiet_imports() -> None:
    """Imports the noisy part of the stack (TensorFlow, Beam, TFX) with stdout and stderr captured.

    Their import-time messages (CUDA factory registrations, FutureWarnings) are kept for the next run's log
    instead of the terminal. Python warnings raised later go through logging ("py.warnings"): into a run's log,
    hidden on other commands.
    """
    global _startup_output
    import tempfile

    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), 1)
        os.dup2(buffer.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
            import tfx.components  # noqa: F401

            import pipelines.config  # noqa: F401 - Beam, TFDV, TFT
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        buffer.seek(0)
        _startup_output = buffer.read().decode(errors="replace")


def run_id() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y%m%d-%H%M%S")


def last_log() -> str | None:
    """The log file of the latest run console in this process (where an error's traceback was written)."""
    return _last_log


class RunConsole:
    """Routes a run's output: the log file gets everything, the terminal the console's lines.

    Use as a context manager around the run; `echo` writes a line to the terminal (and the log).
    """

    def __init__(self, run_dir: str, verbose: bool = False, terminal: IO[str] | None = None):
        self.run_dir = os.path.abspath(run_dir)
        self.verbose = verbose
        self.run_id = run_id()
        self.log_path = os.path.join(self.run_dir, contract.LOGS_DIR, f"{self.run_id}.log")
        self._terminal = terminal
        self._saved: list[int] = []
        self._tee: threading.Thread | None = None
        self._handlers: list[logging.Handler] = []
        self._progress_open = False
        self._saved_progress_env: str | None = None
        self._replaced: list[logging.Handler] | None = None
        self._level = logging.WARNING
        self._warnings_level = logging.NOTSET
        self.progress_dir = ""
        self._echo_lock = threading.Lock()
        self._isatty = False
        self.current_node = ""

    # -- routing --

    def __enter__(self) -> RunConsole:
        global _last_log
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        _last_log = self.log_path
        self._watcher = _Watcher(self, os.path.join(self.run_dir, contract.METADATA_FILE))
        self._redirect()
        try:
            self._start()
        except BaseException:  # leave the terminal as it was, or the error's message would go to the log
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _redirect(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = [os.dup(1), os.dup(2)]
        if self._terminal is None:
            self._terminal = os.fdopen(os.dup(self._saved[0]), "w", buffering=1)
        self._isatty = self._terminal.isatty()
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if _startup_output:
            os.write(log_fd, f"--- output of importing the stack ---\n{_startup_output}---\n".encode())
        if self.verbose:  # a pipe copied to the log and to the terminal
            read_fd, write_fd = os.pipe()
            self._tee = threading.Thread(target=_tee, args=(read_fd, log_fd, self._saved[1]), daemon=True)
            self._tee.start()
            os.dup2(write_fd, 1)
            os.dup2(write_fd, 2)
            os.close(write_fd)
        else:
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)

    def _start(self) -> None:
        root = logging.getLogger()
        handler = logging.StreamHandler(sys.stderr)  # fd 2: the log (and the terminal with verbose)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        self._handlers = [handler]
        self._replaced = root.handlers[:]
        self._level = root.level
        root.handlers = self._handlers
        root.setLevel(logging.DEBUG if self.verbose else logging.INFO)
        logging.getLogger("absl").setLevel(logging.INFO)
        self._warnings_level = logging.getLogger("py.warnings").level
        logging.getLogger("py.warnings").setLevel(logging.WARNING)  # into the log
        progress.set_sink(self._progress)
        # Beam's worker processes (started by this one) count the records they read into this directory.
        self.progress_dir = os.path.join(os.path.dirname(self.log_path), f"progress-{self.run_id}")
        os.makedirs(self.progress_dir, exist_ok=True)
        self._saved_progress_env = os.environ.get(progress.DIR_ENV)
        os.environ[progress.DIR_ENV] = self.progress_dir
        logger.info("cxr run %s, log %s", self.run_id, self.log_path)
        self._watcher.thread.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:  # the traceback stays in the log; the command line prints one line (pipelines/cli/app.py)
            logger.error("the run stopped: %s: %s", exc_type.__name__ if exc_type else "", exc, exc_info=(exc_type, exc, tb))
        self._watcher.stop.set()
        if self._watcher.thread.is_alive():
            self._watcher.thread.join(timeout=10)
        self._watcher.poll()  # what finished since the last look
        progress.set_sink(None)
        if self._saved_progress_env is None:
            os.environ.pop(progress.DIR_ENV, None)
        else:
            os.environ[progress.DIR_ENV] = self._saved_progress_env
        if self.progress_dir:
            shutil.rmtree(self.progress_dir, ignore_errors=True)
        self._end_progress()
        if self._replaced is not None:
            root = logging.getLogger()
            root.handlers = self._replaced
            root.setLevel(self._level)
            logging.getLogger("py.warnings").setLevel(self._warnings_level)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        if self._tee is not None:
            self._tee.join(timeout=5)
        for fd in self._saved:
            os.close(fd)

    # -- output --

    def echo(self, line: str) -> None:
        with self._echo_lock:
            self._end_progress()
            assert self._terminal is not None
            self._terminal.write(line + "\n")
            self._terminal.flush()
        logger.info("[console] %s", line)

    def _progress(self, what: str, done: int, total: int, numbers: dict[str, float]) -> None:
        node = self.current_node or what
        unit = "epoch" if what == "training" else "images"
        figures = "  ".join(f"{k} {v:.3g}" for k, v in sorted(numbers.items()))
        bar = "#" * int(20 * done / max(total, 1))
        if what == "training":
            logger.info("%s: epoch %d/%d %s", node, done, total, figures)
        if not self._isatty:  # a log or a CI page: the node's line says how it went
            return
        with self._echo_lock:
            assert self._terminal is not None
            self._terminal.write(f"\r    {node}: {unit} {done}/{total} [{bar:<20}] {figures}".rstrip() + "\x1b[K")
            self._terminal.flush()
            self._progress_open = True

    def _end_progress(self) -> None:
        if self._progress_open and self._terminal is not None:
            self._terminal.write("\r\x1b[K")
            self._terminal.flush()
            self._progress_open = False


def _tee(read_fd: int, *targets: int) -> None:
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            return
        for fd in targets:
            os.write(fd, chunk)


class _Watcher:
    """Prints one line per execution of this run as it finishes, polling the run's ML Metadata store.

    The store, not the log, is the source: TFX's progress messages vanish when a library lowers absl's log level.
    """

    POLL_S = 1.0

    def __init__(self, console: RunConsole, metadata_path: str):
        self.console, self.metadata_path = console, metadata_path
        self.after = self._latest_id()  # executions of earlier runs are not this run's
        self.printed: set[int] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _store(self):
        return mlmd.connect(self.metadata_path) if os.path.exists(self.metadata_path) else None

    def _latest_id(self) -> int:
        try:
            store = self._store()
            return max((e.id for e in store.get_executions()), default=0) if store else 0
        except Exception as e:  # a store that cannot be read: the run will say so itself
            logger.debug("console: no executions read: %s", e)
            return 0

    def _loop(self) -> None:
        while not self.stop.wait(self.POLL_S):
            self.poll()
            if self.console.current_node == contract.EXAMPLE_GEN:
                counted = progress.read(progress.INGEST, self.console.progress_dir)
                if counted is not None:
                    self.console._progress("ingest", *counted, {})

    def poll(self) -> None:
        try:
            store = self._store()
            if store is None:
                return
            executions = [e for e in store.get_executions() if e.id > self.after and e.id not in self.printed]
            nodes = mlmd.node_ids(store, [e.id for e in executions])
        except Exception as e:  # a store busy with a write: next time
            logger.debug("console poll: %s", e)
            return
        for e in sorted(executions, key=lambda e: e.id):
            node = nodes.get(e.id, "?")
            if e.last_known_state == mlmd.Execution.RUNNING:
                self.console.current_node = node
                continue
            if e.last_known_state not in _ENDED:
                continue
            self.printed.add(e.id)
            seconds = max(0.0, (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000)
            state = {mlmd.Execution.CACHED: "cached", mlmd.Execution.FAILED: "FAILED"}.get(e.last_known_state, f"{seconds:.0f} s")
            detail = ""
            if e.last_known_state in (mlmd.Execution.COMPLETE, mlmd.Execution.CACHED):
                try:
                    detail = summarize(self.console.run_dir, node, e.id)
                except Exception as error:  # the numbers are a courtesy: the run goes on without them
                    logger.debug("no summary for %s: %s", node, error)
            self.console.echo(f"  {node:<36} {state:>7}  {detail}".rstrip())


_ENDED = (mlmd.Execution.COMPLETE, mlmd.Execution.CACHED, mlmd.Execution.FAILED)


def _read_json(path: str) -> Any:
    from components import storage

    return json.loads(storage.read_bytes(path))


def summarize(run_dir: str, node: str, execution_id: int | None) -> str:
    """The numbers that matter for one finished node, read from its outputs in the run's store."""
    if execution_id is None:
        return ""
    store = mlmd.connect(os.path.join(run_dir, contract.METADATA_FILE))
    out = mlmd.outputs(store, execution_id)
    kind = node.split(".")[0]
    if node == contract.EXAMPLE_GEN:
        report = _read_json(os.path.join(out["ingest_report"][0].uri, "report.json"))
        per_source = ", ".join(f"{name} {s['written']}" for name, s in sorted(report["sources"].items()))
        return f"{report['total_written']} images written ({per_source}), {report['total_quarantined']} quarantined"
    if node == contract.DATA_GATE:
        found = mlmd.value(out["report"][0], "anomalies_found", 0)
        return "no anomalies" if not found else f"{found} anomalies (recorded; continuing)"
    if node in (contract.BASELINE_STATISTICS,) or kind == "LatestBlessedModel":
        (reference,) = next(iter(out.values()))
        if not mlmd.value(reference, "baseline_found"):
            return "baseline: none yet"
        return f"baseline: artifact {mlmd.value(reference, 'baseline_artifact_id')}"
    if kind == "Trainer":
        summary = _read_json(os.path.join(out["model_run"][0].uri, "training_summary.json"))
        best = f", best {summary['monitor']} {summary['best_value']:.3f}" if summary.get("monitor") else ""
        return f"{summary['steps_run']} steps in {summary['epochs_run']} epochs{best}"
    if kind == "Evaluator":
        from components.evaluation import results

        blessed = mlmd.value(out["blessing"][0], "blessed") == 1
        metrics = results.overall_metrics(out["evaluation"][0].uri)
        key = "macro_auc" if "macro_auc" in metrics else "dice" if "dice" in metrics else None
        figure = f"{key} {metrics[key]:.3f}, " if key else ""
        return figure + ("blessed" if blessed else "NOT blessed (see `cxr models list`)")
    if kind == "Pusher":
        pushed = out.get("pushed_model", [None])[0]
        if pushed is not None and mlmd.value(pushed, "pushed") == 1:
            return f"pushed version {mlmd.value(pushed, 'pushed_version')}"
        return "not pushed"
    return ""
