"""The root `cxr` group: logging, the -v flag, and how every command ends (exit codes, the crash log)."""

from __future__ import annotations

import logging
import os
import sys

import click

import components  # noqa: F401 - selects Keras 2 before TensorFlow is imported
from components import stops
from pipelines.cli import console

# TFX's own progress lines, let through while the rest of absl's INFO chatter is hidden.
_PROGRESS_PREFIXES = ("Component ", "A cached execution", "Going to run a new execution")


class _ProgressFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "absl" or record.levelno >= logging.WARNING:
            return True
        return isinstance(record.msg, str) and record.msg.startswith(_PROGRESS_PREFIXES)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ProgressFilter())
        for noisy in ("tensorflow", "apache_beam", "ml_metadata"):  # deprecation notices and the like: -v shows them
            logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _Cxr(click.Group):
    """Ends every command the same way: an expected stop prints its message and exits with its code (README, "Exit
    codes"); an unexpected error prints one line naming the log that holds its traceback (-v: the traceback)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except stops.PipelineStop as e:
            click.echo(f"cxr: stopped: {e}", err=True)
            ctx.exit(e.exit_code)
        except Exception as e:
            if (ctx.obj or {}).get("verbose"):
                raise
            log = console.last_log() or _crash_log(e)
            first = (str(e).strip().splitlines() or [""])[0]
            click.echo(f"cxr: unexpected error: {type(e).__name__}: {first} (traceback in {log})", err=True)
            ctx.exit(stops.UNEXPECTED)


def _crash_log(error: BaseException) -> str:
    """Writes the traceback of an error raised outside a run (no run log) to a file of its own; returns its path."""
    import tempfile
    import traceback

    path = os.path.join(tempfile.gettempdir(), f"cxr-{console.run_id()}.log")
    with open(path, "w") as f:
        f.write("".join(traceback.format_exception(error)))
    return path


RUN_COMMANDS = ("run", "demo")


@click.group(cls=_Cxr)
@click.option("-v", "--verbose", is_flag=True, help="Show everything (TFX, Beam, TensorFlow) and tracebacks.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """cxr-pipeline: a TFX pipeline for chest X-rays."""
    ctx.obj = {"verbose": verbose}
    _setup_logging(verbose)
    # A run's console files the stack's import chatter in the run's log (pipelines/cli/console.py); other commands
    # import it here with that chatter captured. Either way, a refused config or command line answers at once.
    if not verbose and ctx.invoked_subcommand not in RUN_COMMANDS:
        console.quiet_imports()


def is_verbose() -> bool:
    """Whether the root command was given -v."""
    return bool((click.get_current_context().find_root().obj or {}).get("verbose"))
