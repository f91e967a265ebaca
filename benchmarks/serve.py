"""Serving latency and throughput of the pushed models on CPU: one 1024x1024 PNG per call, and batches of 16."""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import components  # noqa: F401 - Keras 2 before TensorFlow

# isort: split
import numpy as np
import tensorflow as tf
from PIL import Image

from components import contract
from components import features as F
from pipelines.demo.phantom import render_phantom
from pipelines.results import pushed_models

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SERVING = REPO / contract.DEFAULT_RUN_DIR / contract.SERVING_DIR  # where `cxr demo` pushes
MODELS = contract.TASKS  # the demo's model names (push.model_names' defaults)
# A short demo run: both models trained briefly and pushed whatever their quality (speed does not depend on it).
DEMO_OVERRIDES = (
    "segmentation.train_steps=40",
    "segmentation.epochs=1",
    "segmentation.eval_steps=2",
    "classification.train_steps=40",
    "classification.epochs=1",
    "classification.eval_steps=2",
    "seg_blessing.floor=0.0",
    "cls_blessing.floor=0.0",
)


@dataclasses.dataclass(frozen=True)
class Latency:
    """Milliseconds per call over the timed calls."""

    p50: float
    p95: float
    mean: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ms = np.asarray(seconds) * 1000.0
        return cls(float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), float(ms.mean()))


@dataclasses.dataclass
class Probe:
    """One call to measure: `single(i)` sends test image i alone, `batch()` sends --batch images (None: not batched).

    Both return materialised (NumPy) outputs, so the timings include the whole answer.
    """

    model: str
    call: str
    output: str
    single: Callable[[int], object]
    batch: Callable[[], object] | None
    seconds: list[float] = dataclasses.field(default_factory=list)  # per single-image call
    batch_seconds: list[float] = dataclasses.field(default_factory=list)  # per batch call
    cpu_seconds: float = 0.0  # this process's CPU time during the single-image calls


def phantom_pngs(count: int, size: int) -> list[bytes]:
    """`count` different 8-bit grayscale phantoms (size x size) as PNGs, encoded with PIL's defaults like a client's file."""
    out = []
    for seed in range(count):
        buf = io.BytesIO()
        Image.fromarray(render_phantom(seed, size).image).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def run_demo(run_dir: str, overrides: Sequence[str]) -> float:
    """Runs `cxr demo` into run_dir in a child process (this one's TensorFlow stays untouched); returns its seconds.

    Its progress goes to stderr, so stdout holds only the benchmark's results.
    """
    command = [sys.executable, "-m", "pipelines.cli", "demo", "--run-dir", run_dir]
    for item in overrides:
        command += ["--set", item]
    print(f"running the demo pipeline into {run_dir} (several minutes on 2 cores):\n  {' '.join(command[1:])}", file=sys.stderr)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, stdout=sys.stderr, check=True)
    return time.perf_counter() - start


def _numpy(outputs: dict[str, tf.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in outputs.items()}


def signature_probe(model: str, call: str, signature: Callable[..., dict[str, tf.Tensor]], singles: list[tf.Tensor],
                    batch: tf.Tensor | None, output: str) -> Probe:  # fmt: skip
    """A Probe calling `signature(image_bytes=...)` with singles[i % len(singles)] or with `batch`."""
    return Probe(
        model,
        call,
        output,
        lambda i: _numpy(signature(image_bytes=singles[i % len(singles)])),
        None if batch is None else lambda: _numpy(signature(image_bytes=batch)),
    )


def interleaved(probes: list[Probe], calls: int, batches: int, warmup: int) -> None:
    """Times every probe, taking turns call by call, so a change in the machine's load falls on all of them alike.

    The first `warmup` single calls and the first batch call of each probe are not timed.
    """
    for probe in probes:
        for i in range(warmup):
            probe.single(i)
        if probe.batch:
            probe.batch()
    for i in range(calls):
        for probe in probes:
            cpu, start = time.process_time(), time.perf_counter()
            probe.single(i)
            probe.seconds.append(time.perf_counter() - start)
            probe.cpu_seconds += time.process_time() - cpu
    for _ in range(batches):
        for probe in (p for p in probes if p.batch):
            start = time.perf_counter()
            probe.batch()
            probe.batch_seconds.append(time.perf_counter() - start)


def describe(model: tf.Module, name: str) -> str:
    """The Keras model's input shape and weight count, read from the SavedModel."""
    weights = sum(v.shape.num_elements() for v in model.model.variables)
    try:
        shape = model.model.__call__.concrete_functions[0].structured_input_signature[0][0].shape
        size = "x".join(str(d) for d in shape[1:3])
    except (AttributeError, IndexError, TypeError):  # a model saved some other way: say what is known
        size = "?"
    return f"{name} ({size} input, {weights / 1e6:.2f}M weights)"


def _shape(spec: tf.TensorSpec) -> str:
    return "(" + ", ".join("B" if d is None else str(d) for d in spec.shape) + ")"


def obtain_models(args: argparse.Namespace) -> tuple[dict[str, str], str, str | None]:
    """(pushed version directories, how they were obtained, a temporary directory to remove afterwards or None)."""
    if args.serving_dir:
        return pushed_models(args.serving_dir), f"existing pushed models in {args.serving_dir}", None
    if not args.run_dir and not args.overrides and all(m in pushed_models(str(DEFAULT_SERVING)) for m in MODELS):
        return pushed_models(str(DEFAULT_SERVING)), f"existing pushed models in {DEFAULT_SERVING} (`cxr demo`'s)", None
    temporary = None if args.run_dir else tempfile.mkdtemp(prefix="cxr-bench-serve-")
    run_dir = os.path.abspath(args.run_dir or temporary)
    overrides = [*DEMO_OVERRIDES, *args.overrides]
    cached = os.path.exists(os.path.join(run_dir, contract.METADATA_FILE))  # a rerun: unchanged steps come from the cache
    try:
        seconds = run_demo(run_dir, overrides)
    except BaseException:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
        raise
    how = (
        f"{'a rerun of the demo, cached steps reused' if cached else 'a fresh demo run'} ({seconds:.0f} s, "
        f"`cxr demo --run-dir {args.run_dir or '<temporary>'}` with "
        f"{' '.join('--set ' + o for o in overrides)})"
    )
    return pushed_models(os.path.join(run_dir, contract.SERVING_DIR)), how, temporary


def print_table(probes: list[Probe], batch: int) -> None:
    """The results as a Markdown table, ready for the README."""
    print(
        f"| model | call (input) | output | p50 ms | p95 ms | mean ms | cores busy | img/s, batch 1 | img/s, batch {batch} | "
        "batch vs 1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in probes:
        latency = Latency.of(p.seconds)
        single_rate = 1000.0 / latency.mean
        rate = ratio = "-"
        if p.batch_seconds:
            batch_rate = batch * len(p.batch_seconds) / sum(p.batch_seconds)
            rate, ratio = f"{batch_rate:.1f}", f"{batch_rate / single_rate:.2f}x"
        print(
            f"| {p.model} | {p.call} | {p.output} | {latency.p50:.1f} | {latency.p95:.1f} | {latency.mean:.1f} | "
            f"{p.cpu_seconds / sum(p.seconds):.2f} | {single_rate:.1f} | {rate} | {ratio} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Measures and prints the serving table; returns 0, 1 when the demo run fails, 2 when there is no pushed model."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serving-dir", help=f"pushed models to measure, <dir>/<model>/<version>/ (default: {DEFAULT_SERVING} "
                        "when it holds both models, else a fresh demo run)")  # fmt: skip
    parser.add_argument("--run-dir", help="run the demo pipeline into this directory (kept; a rerun reuses its cache)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override for the demo run")
    parser.add_argument("--size", type=int, default=1024, help="side of the test PNGs in pixels (default 1024)")
    parser.add_argument("--calls", type=int, default=50, help="timed single-image calls per signature (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--batch", type=int, default=16, help="images per batch call (default 16)")
    parser.add_argument("--batches", type=int, default=5, help="timed batch calls per model (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra- and inter-op threads (default 0: TF's choice)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("calls", "warmup", "batch", "batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.threads < 0 or args.size < 32:
        parser.error("--threads must be >= 0 and --size >= 32")
    if args.serving_dir and (args.run_dir or args.overrides):
        parser.error("--serving-dir measures existing models; --run-dir and --set are for a demo run")

    tf.config.set_visible_devices([], "GPU")  # on CPU even where there is an accelerator
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    try:
        pushed, how, temporary = obtain_models(args)
    except subprocess.CalledProcessError as e:
        print(f"the demo pipeline failed (exit status {e.returncode}); its log is above, on stderr")
        return 1
    started = time.perf_counter()
    pngs = phantom_pngs(max(args.batch, 2), args.size)
    render_s = time.perf_counter() - started
    singles = [tf.constant([png]) for png in pngs]
    batch = tf.constant(pngs[: args.batch])
    probes: list[Probe] = []
    described, loads = [], []
    try:
        if not pushed:
            print(f"no pushed model to measure ({how})")
            return 2
        # Every model name found, so renamed models (push.model_names) are measured too; the demo's in its order.
        for name in sorted(pushed, key=lambda n: (MODELS.index(n) if n in MODELS else len(MODELS), n)):
            start = time.perf_counter()
            model = tf.saved_model.load(pushed[name])
            serve = model.signatures[F.SERVING_IMAGE_SIGNATURE]
            start_first = time.perf_counter()
            _numpy(serve(image_bytes=singles[0]))
            loads.append(f"{name} {start_first - start:.1f} s + first call {time.perf_counter() - start_first:.2f} s")
            described.append(f"{describe(model, name)}: {pushed[name]}")
            outputs = ", ".join(f"{k} {_shape(s)}" for k, s in sorted(serve.structured_outputs.items()))
            call = f"`{F.SERVING_IMAGE_SIGNATURE}` (batch of 1)"
            probes.append(signature_probe(name, call, serve, singles, batch, outputs))
            if F.SEGMENTATION_IMAGE_SIGNATURE in model.signatures:
                one = model.signatures[F.SEGMENTATION_IMAGE_SIGNATURE]
                scalars = [tf.constant(png) for png in pngs]
                full = ", ".join(f"{k} {v.shape}" for k, v in sorted(_numpy(one(image_bytes=scalars[0])).items()))
                probes.append(signature_probe(name, f"`{F.SEGMENTATION_IMAGE_SIGNATURE}` (one image)", one, scalars, None, full))
        # What decoding alone costs: the first step of the Transform graph inside every signature. Each image is
        # reduced to its maximum (decode_gray needs it anyway) rather than stacked, which would add copies of
        # (B, size, size) uint16 that the signatures never make.
        decode = tf.function(
            lambda image_bytes: {
                "max": tf.map_fn(
                    lambda e: tf.reduce_max(tf.io.decode_image(e, channels=1, dtype=tf.uint16, expand_animations=False)),
                    image_bytes,
                    fn_output_signature=tf.uint16,
                )
            }
        )
        call = "PNG decode only (`tf.io.decode_image`, uint16)"
        probes.append(signature_probe("reference", call, decode, singles, batch, "per-image max (B,)"))
        load_start = os.getloadavg()
        interleaved(probes, args.calls, args.batches, args.warmup)
        load_end = os.getloadavg()
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)

    print(f"\nServing benchmark: the pushed SavedModels' signatures called in-process on CPU, from {how}")
    for line in described:
        print(f"  {line}")
    print(f"loaded: {'; '.join(loads)}")
    print(f"input: {len(pngs)} different {args.size}x{args.size} 8-bit grayscale phantom PNGs "
          f"({np.mean([len(p) for p in pngs]) / 1e3:.0f} kB mean, rendered in {render_s:.0f} s)")  # fmt: skip
    print(f"timed: {args.calls} single-image calls per signature and {args.batches} batches of {args.batch}, "
          f"after {args.warmup} untimed calls / 1 untimed batch")  # fmt: skip
    threads = f"{args.threads} intra/inter-op threads" if args.threads else "TF's default threads"
    print(
        f"CPU: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {platform.processor() or platform.machine()}; "
        f"TensorFlow {tf.__version__}, {threads}"
    )
    print(
        f"load average (1 min) {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; timed calls "
        f"interleaved (one call of each in turn); cores busy = this process's CPU-seconds per second in its single calls\n"
    )
    print_table(probes, args.batch)
    decode_ms = Latency.of(probes[-1].seconds).p50
    shares = ", ".join(f"{p.model} {p.call.split()[0]} {decode_ms / Latency.of(p.seconds).p50:.0%}" for p in probes[:-1])
    print(f"\nPNG decoding alone, as a share of each single-image p50: {shares}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
