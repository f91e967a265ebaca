"""Expected stops: a run refused for a reason its operator can act on, each with the exit code `cxr` ends with.

`cxr` prints an expected stop's message and exits with its code, without a traceback; anything else is an
unexpected error (exit 1, one line naming the log that holds the traceback). README, "Exit codes", lists them.
"""

from __future__ import annotations

OK = 0
UNEXPECTED = 1
USAGE = 2  # a bad command line (click's own code)


class PipelineStop(Exception):
    """The base of expected stops; `exit_code` says which."""

    exit_code = UNEXPECTED


class ConfigError(PipelineStop, ValueError):
    """The configuration cannot run: an unknown key, a bad value, a config file that cannot be read."""

    exit_code = 3


class DataStop(PipelineStop, RuntimeError):
    """The data gate found anomalies (the message lists each one)."""

    exit_code = 4


class InputStop(PipelineStop, RuntimeError):
    """Ingestion refused its inputs: a source root that does not exist, a quarantined share over the limit, a
    source that wrote nothing."""

    exit_code = 5


class RunDirectoryBusy(PipelineStop, RuntimeError):
    """Another run holds the run directory."""

    exit_code = 6


class NothingToServe(PipelineStop, LookupError):
    """No model in production (or pushed) to predict with or serve."""

    exit_code = 7


EXIT_CODES = {
    OK: "success",
    UNEXPECTED: "unexpected error (the message names the log file with the traceback)",
    USAGE: "bad command line (unknown option, missing argument)",
    ConfigError.exit_code: "configuration error (unknown key, bad value, unreadable config)",
    DataStop.exit_code: "stopped by the data gate (anomalies listed)",
    InputStop.exit_code: "inputs refused (missing source root, quarantined share over the limit, nothing written)",
    RunDirectoryBusy.exit_code: "the run directory is in use by another run",
    NothingToServe.exit_code: "no model in production or pushed to predict with or serve",
}
