"""Distributed training on CPU: Mirrored over 2 logical CPUs and 2-process MultiWorkerMirrored equal one device.

Each strategy trains the same tiny classifier (components.models.classifier.build_small_cnn) for a few SGD steps
from the same fixed weights on the same fixed, unshuffled data with the same global batch; the results must
match one-device training up to float rounding (the all-reduce sums per-replica gradients in another order).

The small CNN is used because it has neither BatchNorm nor (with dropout=0) randomness: under a mirrored
strategy BatchNorm normalises with each replica's own batch statistics (not SyncBatchNorm), so a U-Net's
training differs from one device by design, and an exact comparison would test nothing but that choice.

The strategies run in subprocesses (tests/components/distributed_worker.py): logical devices and
MultiWorkerMirroredStrategy must be set up before TensorFlow initialises, which this process already did.
The three processes (one device then Mirrored over two logical CPUs in one, two workers) run at once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT_S = 110
RTOL, ATOL = 1e-4, 1e-5


def _free_ports(n: int) -> list[int]:
    """n distinct free localhost ports (all held open while choosing, so they differ)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env(tf_config: dict | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update({"CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"})
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Runs the trainings at once; the .npz result of each, by name (single, mirrored, worker0, worker1)."""
    work = tmp_path_factory.mktemp("distributed")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    jobs = {
        "local": ("local", _env(), work),
        "worker0": ("multiworker", _env({"cluster": cluster, "task": {"type": "worker", "index": 0}}), work / "worker0.npz"),
        "worker1": ("multiworker", _env({"cluster": cluster, "task": {"type": "worker", "index": 1}}), work / "worker1.npz"),
    }
    procs: dict[str, subprocess.Popen] = {}
    logs = {name: work / f"{name}.log" for name in jobs}
    try:
        for name, (mode, env, out) in jobs.items():
            with open(logs[name], "w") as log:  # a file, not a pipe: a full pipe would block the worker
                procs[name] = subprocess.Popen(
                    [sys.executable, str(WORKER), mode, str(out)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=work,
                )
        deadline = time.monotonic() + TIMEOUT_S
        for name, proc in procs.items():
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} did not finish in {TIMEOUT_S} s:\n{logs[name].read_text()[-3000:]}")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name} failed (exit {proc.returncode}):\n{logs[name].read_text()[-3000:]}"
    return {name: work / f"{name}.npz" for name in ("single", "mirrored", "worker0", "worker1")}


def _load(path: Path) -> dict:
    data = np.load(path)
    weights = [data[f"weight_{i}"] for i in range(sum(k.startswith("weight_") for k in data.files))]
    initial = [data[f"initial_{i}"] for i in range(len(weights))]
    return {
        "losses": data["losses"],
        "final_loss": float(data["final_loss"]),
        "weights": weights,
        "initial": initial,
        "replicas": int(data["replicas"]),
        "strategy": str(data["strategy"]),
    }


def _max_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def _assert_same_training(result: dict, reference: dict) -> None:
    np.testing.assert_allclose(result["losses"], reference["losses"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(result["final_loss"], reference["final_loss"], rtol=RTOL, atol=ATOL)
    assert len(result["weights"]) == len(reference["weights"])
    for got, want in zip(result["weights"], reference["weights"], strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_reference_is_one_device_and_the_comparison_can_fail(runs):
    reference = _load(runs["single"])
    half = _load(Path(str(runs["single"]).replace(".npz", "_half.npz")))
    # distribution_strategy() without TF_CONFIG or GPUs: TensorFlow's default strategy, one replica.
    assert reference["replicas"] == 1 and reference["strategy"] == "_DefaultDistributionStrategy"
    assert len(reference["losses"]) == 5
    # Training moved the weights well beyond the tolerance, so equal weights mean equal training...
    assert _max_difference(reference["weights"], reference["initial"]) > 100 * ATOL
    # ...and one replica's share of the batch alone (what a missing all-reduce would give) is told apart.
    assert _max_difference(reference["weights"], half["weights"]) > 100 * ATOL
    with pytest.raises(AssertionError):
        _assert_same_training(half, reference)


def test_mirrored_over_two_logical_cpus_matches_one_device(runs):
    reference, mirrored = _load(runs["single"]), _load(runs["mirrored"])
    assert mirrored["replicas"] == 2 and mirrored["strategy"] == "MirroredStrategy"
    for got, want in zip(mirrored["initial"], reference["initial"], strict=True):
        np.testing.assert_array_equal(got, want)
    _assert_same_training(mirrored, reference)


def test_two_process_multiworker_matches_one_device(runs):
    reference, chief, worker = _load(runs["single"]), _load(runs["worker0"]), _load(runs["worker1"])
    # The strategy each worker got from components.trainer.common.distribution_strategy() with TF_CONFIG.
    for result in (chief, worker):
        assert result["strategy"] == "MultiWorkerMirroredStrategy" and result["replicas"] == 2
    _assert_same_training(chief, reference)
    # The workers stay in sync: the all-reduce hands both the same gradients.
    for got, want in zip(worker["weights"], chief["weights"], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
