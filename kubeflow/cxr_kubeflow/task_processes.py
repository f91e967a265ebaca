"""Task processes for `cxr kubeflow local-run`: each `python -m MODULE ...` task forked from a preloaded process.

A Kubeflow task is a fresh container running `python -m tfx...kubeflow_v2_run_executor ...`; most of a small
task's time is that interpreter importing TensorFlow, TFX and Beam (10-15 s on two cores, 15 times per run).
`Preloaded` starts one helper process with the run's environment that imports the task module once, then forks
a child per task: the child takes the task's environment, arguments and log, runs the module as `__main__` and
exits with its status, so each task still runs in a process of its own, from a clean post-import state, and its
failures, exit codes and global state stay its own. The helper never runs TensorFlow itself (forking after
TensorFlow has started its thread pools is unsafe); commands that are not `python -m MODULE` run as plain
subprocesses.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import traceback
from typing import Any


def _module_of(command: list[str]) -> str | None:
    if len(command) >= 3 and command[0] == sys.executable and command[1] == "-m":
        return command[2]
    return None


def run_process(command: list[str], env: dict[str, str], log: str) -> int:
    """Runs `command` as a process of its own, stdout and stderr to the file `log`; returns its exit status."""
    with open(log, "w") as out:
        return subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


class Plain:
    """Each task a process of its own, as a container is."""

    def run(self, command: list[str], env: dict[str, str], log: str) -> int:
        return run_process(command, env, log)

    def __enter__(self) -> Plain:
        return self

    def __exit__(self, *_: Any) -> None:
        pass


class Preloaded:
    """Runs task commands, forking `python -m MODULE` ones from a helper that imported MODULE (see module doc)."""

    def __init__(self, env: dict[str, str], log: str):
        self._env = env
        self._log = log  # the helper's own output (import warnings; why it stopped, if it does)
        self._helper: subprocess.Popen | None = None
        self._answers = None
        self._module: str | None = None

    def run(self, command: list[str], env: dict[str, str], log: str) -> int:
        """Runs `command` with `env`, stdout and stderr to the file `log`; returns its exit status."""
        module = _module_of(command)
        if module is None or (self._module is not None and module != self._module):
            return run_process(command, env, log)
        if self._helper is None or self._helper.poll() is not None:
            self._start(module)
        request = {"argv": command[2:], "env": env, "log": log, "cwd": os.getcwd()}
        self._helper.stdin.write(json.dumps(request) + "\n")
        self._helper.stdin.flush()
        answer = self._answers.readline()
        if not answer:
            raise RuntimeError(f"the local-run helper process for {module} stopped ({self._helper.wait()}): see {self._log}")
        return int(json.loads(answer)["returncode"])

    def _start(self, module: str) -> None:
        # Answers come back on a pipe of their own: whatever the imports print cannot garble them.
        read, write = os.pipe()
        with open(self._log, "a") as out:
            self._helper = subprocess.Popen(
                [sys.executable, "-m", __name__, module, str(write)],
                env=self._env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                pass_fds=(write,),
            )
        os.close(write)
        self._answers = os.fdopen(read)
        self._module = module

    def close(self) -> None:
        if self._helper is not None:
            if self._helper.poll() is None:
                self._helper.stdin.close()
                self._helper.wait(timeout=60)
            self._answers.close()
        self._helper = None

    def __enter__(self) -> Preloaded:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def _child(module: str, request: dict[str, Any]) -> None:
    """In the forked child: become the task's process, run the module as __main__, exit with its status."""
    code = 1
    try:
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = [module, *request["argv"][1:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - the task's own failure: its traceback goes to its log, as in a container
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve(module: str, answers_fd: int) -> None:
    """The helper: import `module` once, then fork one child per request line on stdin."""
    import importlib

    importlib.import_module(module)
    with os.fdopen(answers_fd, "w") as answers:
        for line in sys.stdin:
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                answers.close()
                _child(module, request)
            _, status = os.waitpid(pid, 0)
            answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
            answers.flush()


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
