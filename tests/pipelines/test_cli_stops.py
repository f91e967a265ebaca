"""Expected stops end `cxr` with their documented exit code and message, never a traceback (README, exit codes)."""

from __future__ import annotations

import dataclasses

import pytest
from cli_run import cxr, write_config

from components import stops
from pipelines import config as cfg

pytestmark = pytest.mark.slow  # each test starts `cxr` in a process of its own


def _no_traceback(done) -> None:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr[-3000:]


def test_unknown_config_key_is_a_configuration_stop(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("pipeline_name: x\nsegmentaton: {train_steps: 3}\n")
    done = cxr("run", "--config", str(path))
    assert done.code == stops.ConfigError.exit_code == 3
    assert done.stderr.strip().startswith("cxr: stopped:") and "unknown PipelineConfig keys ['segmentaton']" in done.stderr
    _no_traceback(done)
    # Import chatter (CUDA factories, FutureWarnings) stays off the terminal of a refused command.
    assert "cuDNN" not in done.stderr and "FutureWarning" not in done.stderr, done.stderr


def test_bad_command_line_and_unknown_node_are_usage_errors(tmp_path, tiny_archive):
    done = cxr("run", "--confg", "x.yaml")
    assert done.code == stops.USAGE and "No such option '--confg'" in done.stderr
    config = cfg.demo_config(str(tiny_archive), str(tmp_path / "run"))
    done = cxr("run", "--config", write_config(config, tmp_path / "c.yaml"), "--to", "Trainer.segmentaton")
    assert done.code == stops.USAGE and "unknown nodes ['Trainer.segmentaton']" in done.stderr
    _no_traceback(done)


def test_an_unexpected_error_prints_one_line_and_keeps_the_traceback_in_the_run_log(tmp_path, tiny_archive):
    config = cfg.demo_config(str(tiny_archive), str(tmp_path / "run"))
    (tmp_path / "run" / "metadata.sqlite").mkdir(parents=True)  # a store that cannot be opened
    done = cxr("run", "--config", write_config(config, tmp_path / "c.yaml"))
    assert done.code == stops.UNEXPECTED
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("cxr: unexpected error: ") and "(traceback in " in line
    log = line.rsplit("(traceback in ", 1)[1].rstrip(")")
    assert log.startswith(str(tmp_path / "run" / "logs")) and "Traceback (most recent call last)" in open(log).read()


def test_a_missing_source_root_is_an_input_stop(tmp_path, tiny_archive):
    config = cfg.demo_config(str(tiny_archive), str(tmp_path / "run"))
    config.sources = [dataclasses.replace(config.sources[0], root=str(tmp_path / "not-there")), *config.sources[1:]]
    done = cxr("run", "--config", write_config(config, tmp_path / "c.yaml"), "--to", "CxrExampleGen")
    assert done.code == stops.InputStop.exit_code == 5, done.stderr[-2000:]
    assert f"cxr: stopped: source {config.sources[0].name}: " in done.stderr and "not-there" in done.stderr
    _no_traceback(done)


def test_a_busy_run_directory_is_refused_naming_its_holder(tmp_path, tiny_archive):
    import os
    import socket

    from pipelines import run_lock

    config = cfg.demo_config(str(tiny_archive), str(tmp_path / "run"))
    os.makedirs(config.run_dir)
    with run_lock.hold(config.run_dir, command="cxr run --config other.yaml"):
        done = cxr("run", "--config", write_config(config, tmp_path / "c.yaml"))
    assert done.code == stops.RunDirectoryBusy.exit_code == 6
    assert f"is in use by pid {os.getpid()} on host {socket.gethostname()}" in done.stderr
    assert "cxr run --config other.yaml" in done.stderr
    _no_traceback(done)
