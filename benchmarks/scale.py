"""Scale: the whole pipeline on phantom archives of N images, per node seconds, s/1000 images and peak memory."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import itertools
import json
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import yaml

from components import contract
from pipelines import config as cfg

SIZES = "500,2000,8000"
DATA_NODES = (contract.EXAMPLE_GEN, contract.STATISTICS_GEN, contract.EXAMPLE_VALIDATOR, contract.DATA_GATE, contract.TRANSFORM)
TARGET_NODES = DATA_NODES + tuple(contract.evaluator(t) for t in contract.TASKS)
TARGET_GROWTH = 1.2  # per-image cost from 2,000 to 8,000 images: flat or falling, within 20 %
TARGET_RSS = 4e9  # bytes, at 8,000 images
TARGET_PAIR = (2000, 8000)
SEG = contract.trainer("segmentation")
RESULT_FORMAT = 2  # a cached result of another format (or other settings) is measured again
_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO "
# components/trainer/common.py logs the counts once its read passes (filter + cache) are done; the console logs
# the end of every epoch (components/progress.py): the time between two epochs is their steps alone.
READ_DONE = re.compile(_STAMP + r"components\.trainer\.common: (\d+) training examples")
EPOCH_END = re.compile(_STAMP + r"pipelines\.cli\.console: .*: epoch (\d+)/(\d+)")


def images_in_archive(n_per_source: int) -> int:
    """What write_demo_archive writes: three sources of n_per_source images and max(3, n // 3) DICOM files."""
    return 3 * n_per_source + max(3, n_per_source // 3)


def per_source_for(images: int) -> int:
    """The smallest images per source whose archive holds at least `images` images (500, 2,000, 8,000: exactly)."""
    n = 1
    while images_in_archive(n) < images:
        n += 1
    return n


def archive(cache: Path, n_per_source: int, size: int, workers: int) -> tuple[Path, dict[str, Any]]:
    """The cached archive (made first if missing or unfinished) and its marker: how long it took, its bytes."""
    from pipelines.demo.archive import write_demo_archive

    root = cache / f"archive-{n_per_source}x-{size}px"
    marker = root / "COMPLETE.json"
    if marker.is_file():
        print(f"the phantom archive: {root} (cached)", flush=True)
        return root, {**json.loads(marker.read_text()), "generated_now": False}
    shutil.rmtree(root, ignore_errors=True)  # an interrupted one
    images = images_in_archive(n_per_source)
    print(f"writing the phantom archive: {images} images at {size} px on {workers} workers into {root} ...", flush=True)
    start = time.perf_counter()
    write_demo_archive(root, n_per_source=n_per_source, size=size, seed=0, workers=workers)
    seconds = time.perf_counter() - start
    info = {"images": images, "n_per_source": n_per_source, "size": size, "workers": workers, "seconds": round(seconds, 1)}
    info["bytes"] = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    marker.write_text(json.dumps(info, indent=2))  # last: its presence means the archive is whole
    print(f"  {seconds:.0f} s ({images / seconds:.1f} images/s), {info['bytes'] / 1e9:.2f} GB", flush=True)
    return root, {**info, "generated_now": True}


def run_config(data_dir: Path, run_dir: Path, size: int, steps: int) -> cfg.PipelineConfig:
    """The demo's configuration at `size` px with a fixed short training, no validation hold-out (an epoch's time is
    its steps'), every model blessed (both Pushers and the report's sections run at every N) and the data gate's
    findings recorded instead of stopping the run."""
    overrides = [
        f"ingest.max_side={size}",
        "report.enabled=false",  # written and timed on its own afterwards
        "validation.continue_on_anomalies=true",
        "seg_blessing.floor=0.0",
        "cls_blessing.floor=0.0",
        "cls_blessing.floors={}",
    ]
    for task, epochs in (("segmentation", 2), ("classification", 1)):
        overrides += [f"{task}.epochs={epochs}", f"{task}.train_steps={epochs * steps}", f"{task}.validation_fraction=0.0"]
    return cfg.load_config(overrides=overrides, base=cfg.demo_config(str(data_dir), str(run_dir)))


class TreeMemory:
    """Samples the memory of a process and all its descendants (Beam's workers) every `interval` s, in a thread.

    Each sample sums RSS over the processes (what `ps` shows; pages they share, such as TensorFlow's libraries, count
    once per process) and PSS (a shared page split between its processes: the tree's own footprint).
    """

    def __init__(self, pid: int, interval: float):
        self.process, self.interval = psutil.Process(pid), interval
        self.samples: list[tuple[float, int, int, int]] = []  # (epoch seconds, RSS bytes, PSS bytes, processes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.process, *self.process.children(recursive=True)]
            except psutil.Error:  # the root has ended
                return
            rss = pss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                except psutil.Error:  # ended between listing and reading
                    continue
                rss, pss = rss + info.rss, pss + info.pss
            self.samples.append((time.time(), rss, pss, len(procs)))
            self._stop.wait(self.interval)

    def peak(self, start: float = 0.0, end: float = float("inf"), pss: bool = False) -> int | None:
        """The largest sum of RSS (or PSS) sampled between start and end; None when no sample fell there."""
        return max((sample[2 if pss else 1] for sample in self.samples if start <= sample[0] <= end), default=None)


def run_pipeline(config_path: Path, interval: float) -> tuple[int, float, TreeMemory]:
    """`cxr run --config` in a child process, as users run it (its lines echoed, indented); (exit code, seconds, memory)."""
    repo = Path(contract.__file__).resolve().parents[1]  # where this process imports the project from: so does the run
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(repo), str(repo / "kubeflow"), os.environ.get("PYTHONPATH")]))
    )
    env.setdefault("CXR_ID_SALT", cfg.DEMO_SALT)  # the demo's fixed split: the same patients per split at every rerun
    command = [sys.executable, "-c", "from pipelines.cli import main; main()", "run", "--config", str(config_path)]
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with TreeMemory(child.pid, interval) as memory:
        assert child.stdout is not None
        for line in child.stdout:
            print(f"    {line.rstrip()}", flush=True)
        code = child.wait()
    return code, time.perf_counter() - start, memory


def report_job(run_dir: str, pipeline_name: str, settings: dict[str, Any], log: str, answer: Any) -> None:
    """In a fresh process, its output (TensorFlow's) into `log`: times the run report (and model cards) and, alone,
    its reading of the Examples."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from components import mlmd
    from components.reporting import examples, report
    from components.reporting.options import ReportOptions

    options = ReportOptions(**settings)
    start = time.perf_counter()
    report.write_report(run_dir, options=options)
    seconds = time.perf_counter() - start
    store = mlmd.connect(os.path.join(run_dir, contract.METADATA_FILE))
    (execution,) = mlmd.node_executions(store, pipeline_name, contract.EXAMPLE_GEN)
    outputs = mlmd.outputs(store, execution.id)
    totals = json.loads(Path(outputs["ingest_report"][0].uri, "report.json").read_text())["sources"]  # as the report
    sizes = (options.samples_per_source, options.intensity_images_per_source, options.size_images_per_source)
    start = time.perf_counter()
    examples.read_examples(outputs["examples"][0].uri, *sizes, totals=totals)
    answer.put({"seconds": round(seconds, 2), "read_examples_s": round(time.perf_counter() - start, 2)})


def time_report(config: cfg.PipelineConfig, interval: float, log: Path) -> dict[str, Any]:
    """The run report's seconds, its reading of the Examples alone, and the peak RSS of its process."""
    context = multiprocessing.get_context("spawn")
    answer = context.Queue()
    settings = dataclasses.asdict(config.report.options())
    job = context.Process(target=report_job, args=(config.run_dir, config.pipeline_name, settings, str(log), answer))
    job.start()
    with TreeMemory(job.pid, interval) as memory:
        job.join()
    if job.exitcode != 0:
        return {"error": f"the report's process ended with exit code {job.exitcode} (its log: {log})", "peak_rss_bytes": 0}
    return {**answer.get(timeout=10), "peak_rss_bytes": memory.peak(), "peak_pss_bytes": memory.peak(pss=True)}


def _log_time(stamp: str) -> float:
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def trainer_figures(run_dir: Path, start: float, end: float, summary: dict[str, Any]) -> dict[str, Any]:
    """The segmentation Trainer's read/cache pass and its time per step between epochs 1 and 2, from the run's log."""
    read_done, epochs = None, {}
    for log in sorted((run_dir / contract.LOGS_DIR).glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if (m := READ_DONE.match(line)) and start <= _log_time(m[1]) <= end:
                read_done = _log_time(m[1])
            elif (m := EPOCH_END.match(line)) and start <= _log_time(m[1]) <= end:
                epochs[int(m[2])] = _log_time(m[1])
    out: dict[str, Any] = {"summary": summary}
    if read_done is not None:
        out["read_pass_s"] = round(read_done - start, 2)  # the Trainer's start to its examples counted (and cached)
        if 1 in epochs:
            out["first_epoch_s"] = round(epochs[1] - read_done, 2)  # model build, tracing, shuffle buffer, steps
    if 1 in epochs and 2 in epochs and summary.get("steps_per_epoch"):
        out["step_s"] = round((epochs[2] - epochs[1]) / summary["steps_per_epoch"], 4)
    return out


def read_back(run_dir: Path, memory: TreeMemory) -> dict[str, Any]:
    """Per node: state, seconds and peak RSS (ML Metadata's execution times); ingestion's counts; the Trainer."""
    from components import mlmd

    store = mlmd.connect(str(run_dir / contract.METADATA_FILE))
    executions = store.get_executions()
    nodes = mlmd.node_ids(store, [e.id for e in executions])
    out: dict[str, Any] = {"nodes": {}}
    for e in sorted(executions, key=lambda e: e.id):
        node = nodes.get(e.id, f"execution {e.id}")
        start, end = e.create_time_since_epoch / 1000, e.last_update_time_since_epoch / 1000
        state = mlmd.Execution.State.Name(e.last_known_state).lower()
        peaks = {"peak_rss_bytes": memory.peak(start, end), "peak_pss_bytes": memory.peak(start, end, pss=True)}
        out["nodes"][node] = {"state": state, "seconds": round(end - start, 2), **peaks}
        if e.last_known_state != mlmd.Execution.COMPLETE:
            continue
        outputs = mlmd.outputs(store, e.id)
        if node == contract.EXAMPLE_GEN:
            report = json.loads(Path(outputs["ingest_report"][0].uri, "report.json").read_text())
            sources = report["sources"].values()
            out["ingest"] = {
                "written": report["total_written"],
                "quarantined": report["total_quarantined"],
                "with_mask": sum(s["with_mask"] for s in sources),
                "splits": {k: sum(s["splits"].get(k, 0) for s in sources) for k in next(iter(sources))["splits"]},
            }
        elif node == contract.DATA_GATE:
            out["data_gate_anomalies"] = mlmd.value(outputs["report"][0], "anomalies_found", 0)
        elif node == SEG:
            summary = json.loads(Path(outputs["model_run"][0].uri, "training_summary.json").read_text())
            out["segmentation_trainer"] = trainer_figures(run_dir, start, end, summary)
    return out


def measure(args: argparse.Namespace, images: int, settings: dict[str, Any]) -> dict[str, Any] | None:
    """One size: the archive (cached), the pipeline in a child process, its report; None when the run failed."""
    n_per_source = per_source_for(images)
    data_dir, archive_info = archive(args.cache_dir, n_per_source, args.size, args.workers)
    run_dir = args.cache_dir / f"run-{images}-{args.size}px"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh store: nothing cached, nothing from an interrupted run
    run_dir.mkdir(parents=True)
    config = run_config(data_dir, run_dir, args.size, args.steps)
    config_path = run_dir / "scale.yaml"
    config_path.write_text(yaml.safe_dump(cfg.to_dict(config)))
    load = os.getloadavg()[0]
    print(f"\nN = {archive_info['images']}: cxr run --config {config_path}", flush=True)
    code, seconds, memory = run_pipeline(config_path, args.sample_s)
    if code != 0:
        logs = sorted((run_dir / contract.LOGS_DIR).glob("*.log"))
        print(f"the pipeline stopped with exit code {code}; its log: {logs[-1] if logs else run_dir}")
        return None
    result: dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "settings": settings,
        "images": archive_info["images"],
        "archive": archive_info,
        "pipeline": {"seconds": round(seconds, 1), "peak_rss_bytes": memory.peak(), "peak_pss_bytes": memory.peak(pss=True)},
        "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
        "processes_max": max(sample[3] for sample in memory.samples),
        **read_back(run_dir, memory),
    }
    result["report"] = time_report(config, args.sample_s, args.cache_dir / f"report-{images}-{args.size}px.log")
    if not args.keep_runs:
        shutil.rmtree(run_dir)
    return result


def _per_k(seconds: float | None, images: int) -> float | None:  # seconds per 1,000 images
    return None if seconds is None else 1000 * seconds / images


def _cells(values: Sequence[float | str | None], width: int, spec: str) -> str:
    return "".join(
        f"{'-':>{width}s}" if v is None else f"{v:>{width}s}" if isinstance(v, str) else f"{v:{width}{spec}}" for v in values
    )


def print_size(r: dict[str, Any]) -> None:
    """One size's table: per node state, seconds, s/1000 images and the peak RSS while it ran; its figures below."""
    n, p, rep = r["images"], r["pipeline"], r["report"]
    print(f"\nN = {n} images ({r['archive']['n_per_source']} per source) of {r['settings']['size']} px; pipeline "
          f"{p['seconds']:.0f} s, load average {r['load_average'][0]} -> {r['load_average'][1]}")  # fmt: skip
    print(f"{'node':34s}{_cells(['state', 'seconds', 's/1000 img', 'peak RSS GB', 'PSS GB'], 12, '')}")
    rows = [(node, e["state"], e["seconds"], e["peak_rss_bytes"], e["peak_pss_bytes"]) for node, e in r["nodes"].items()]
    rows.append(("pipeline (cxr run, whole)", "", p["seconds"], p["peak_rss_bytes"], p["peak_pss_bytes"]))
    if "error" in rep:
        print(f"run report: {rep['error']}")
    else:
        rows += [("run report (write_report)", "", rep["seconds"], rep["peak_rss_bytes"], rep["peak_pss_bytes"])]
        rows += [("  of which its read_examples", "", rep["read_examples_s"], None, None)]
    for name, state, seconds, rss, pss in rows:
        memory = [None if b is None else b / 1e9 for b in (rss, pss)]
        print(f"{name:34s}{_cells([state], 12, '')}{_cells([seconds, _per_k(seconds, n), *memory], 12, '.2f')}")
    ingest, seg = r.get("ingest", {}), r.get("segmentation_trainer", {})
    splits = ingest.get("splits", {})
    print(f"ingested {ingest.get('written')} {splits}, {ingest.get('quarantined')} quarantined, "
          f"{ingest.get('with_mask')} with a mask; data gate: {r.get('data_gate_anomalies')} anomalies (recorded)")  # fmt: skip
    summary = seg.get("summary", {})
    if summary and splits.get("train"):
        kept, train = summary["training_examples"], splits["train"]
        step = f"then {1000 * seg['step_s']:.1f} ms/step" if "step_s" in seg else "its step time is not in the log"
        print(f"{SEG}: keeps {kept} of the {train} training examples ({100 * kept / train:.0f} % have a mask); read/cache "
              f"pass {seg.get('read_pass_s')} s, first epoch {seg.get('first_epoch_s')} s, {step}")  # fmt: skip


def _growth(a: float | None, b: float | None) -> float | None:
    return b / a if a and b is not None else None


def print_comparison(results: dict[int, dict[str, Any]]) -> bool:
    """The table across sizes and the verdict per target; True when every target judged was met."""
    sizes = sorted(results)
    if len(sizes) < 2:
        return True
    judged = TARGET_PAIR if set(TARGET_PAIR) <= set(sizes) else (sizes[-2], sizes[-1])
    pair = f"N={results[judged[0]]['images']} -> {results[judged[1]]['images']}"
    where = "" if judged == TARGET_PAIR else f" (judged on {pair}; the targets are for 2,000 -> 8,000)"
    pairs = list(itertools.pairwise(sizes))
    results_at = [results[n] for n in sizes]
    all_met = True

    def row(label: str, values: list[float | None], target: str = "", spec: str = ".2f") -> None:
        """Prints values by N and their growth between sizes; `target` "growth" or "rss" judges them."""
        nonlocal all_met
        growth = [_growth(values[sizes.index(a)], values[sizes.index(b)]) for a, b in pairs]
        verdict = ""
        if target:
            if target == "rss":
                met, verdict = values[sizes.index(judged[1])] < TARGET_RSS / 1e9, f"< {TARGET_RSS / 1e9:.0f} GB"
            else:
                g = _growth(values[sizes.index(judged[0])], values[sizes.index(judged[1])])
                met, verdict = g is not None and g <= TARGET_GROWTH, f"growth <= {TARGET_GROWTH}"
            all_met &= met
            verdict = f"  {verdict}: {'met' if met else 'NOT met'}"
        print(f"{label:38s}{_cells(values, 10, spec)}{_cells(growth, 12, '.2f')}{verdict}")

    images = {n: results[n]["images"] for n in sizes}
    heading = f"{_cells([f'N={images[n]}' for n in sizes], 10, '')}"
    heading += f"{_cells([f'{images[a]}->{images[b]}' for a, b in pairs], 12, '')}  target"
    print(f"\nseconds per 1,000 images by N, and their growth between sizes (1.00: cost proportional to N){where}")
    print(f"{'node':38s}{heading}")
    for node in results_at[-1]["nodes"]:
        values = [_per_k(r["nodes"].get(node, {}).get("seconds"), r["images"]) for r in results_at]
        row(node, values, "growth" if node in TARGET_NODES else "")
    row("pipeline (cxr run, whole)", [_per_k(r["pipeline"]["seconds"], r["images"]) for r in results_at])
    seg = [r.get("segmentation_trainer", {}) for r in results_at]
    row(f"{SEG} read/cache pass", [_per_k(s.get("read_pass_s"), r["images"]) for s, r in zip(seg, results_at, strict=True)])
    print(f"\nby N, and their growth between sizes{where}")
    print(f"{'':38s}{heading}")
    row(f"{SEG} ms/step", [None if "step_s" not in s else 1000 * s["step_s"] for s in seg], "growth", ".1f")
    row("run report seconds", [r["report"].get("seconds") for r in results_at], "growth", ".1f")
    row("  of which read_examples seconds", [r["report"].get("read_examples_s") for r in results_at], "", ".1f")
    row("peak RSS GB (cxr run's process tree)", [r["pipeline"]["peak_rss_bytes"] / 1e9 for r in results_at], "rss")
    row("  its peak PSS GB (shared pages once)", [r["pipeline"]["peak_pss_bytes"] / 1e9 for r in results_at])
    print(f"\ntargets: {'all met' if all_met else 'NOT all met'}{where}")
    return all_met


def header(args: argparse.Namespace) -> dict[str, Any]:
    """Prints what is measured, where and how; returns the machine's description."""
    versions = {name: importlib.metadata.version(name) for name in ("tfx", "tensorflow", "apache-beam")}
    machine = {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1e9, 1), "machine": platform.machine()}
    machine |= {"python": platform.python_version(), **versions}
    print(f"Scale benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}: sizes {args.sizes} at {args.size} px")
    print(f"{machine['cpus']} CPUs, {machine['memory_gb']} GB, {machine['machine']}, Python {machine['python']}, "
          f"TFX {versions['tfx']}, TensorFlow {versions['tensorflow']}, Beam {versions['apache-beam']}; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"the demo's config and Beam settings (beam_args {cfg.PipelineConfig().beam_args}, ingestion multi_threading);")
    print(f"Trainers: {args.steps} steps per epoch (segmentation 2 epochs, classification 1), no validation hold-out;")
    print(f"every model blessed; peak RSS: the summed RSS of cxr run and all its descendants, sampled every {args.sample_s} s;")
    print(f"the run report timed on its own after the run; cache: {args.cache_dir}")
    return machine


def main(argv: Sequence[str] | None = None) -> int:
    """Measures the sizes (or reuses their cached results), prints the tables, writes the JSON; 0 when all met."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache-dir", type=Path, required=True, help="archives, runs and per-size results (reused)")
    parser.add_argument("--sizes", default=SIZES, help=f"comma-separated image counts (default {SIZES})")
    parser.add_argument("--size", type=int, default=1024, help="image width in pixels (default 1024)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per epoch of each Trainer (default 20)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing an archive (default: CPUs)")
    parser.add_argument("--sample-s", type=float, default=0.5, help="seconds between memory samples (default 0.5)")
    parser.add_argument("--out", type=Path, help="the JSON of every size measured (default <cache-dir>/scale.json)")
    parser.add_argument("--force", action="store_true", help="measure again sizes whose result is cached")
    parser.add_argument("--archives-only", action="store_true", help="only write the archives missing from the cache")
    parser.add_argument("--keep-runs", action="store_true", help="keep each run directory (default: removed once measured)")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if not sizes or min(sizes) < 12 or args.steps < 1 or args.sample_s <= 0:
        parser.error("sizes must be >= 12 images, --steps >= 1 and --sample-s > 0")
    args.cache_dir = args.cache_dir.resolve()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    machine = header(args)
    settings = {"size": args.size, "steps": args.steps, "sample_s": args.sample_s, "format": RESULT_FORMAT}
    results: dict[int, dict[str, Any]] = {}
    failed = []
    if args.archives_only:
        for images in sizes:
            archive(args.cache_dir, per_source_for(images), args.size, args.workers)
        return 0
    for images in sizes:
        cached = args.cache_dir / f"result-{images}-{args.size}px.json"
        if cached.is_file() and not args.force:
            result = json.loads(cached.read_text())
            if result.get("settings") == settings:
                print(f"\nN = {images}: the result of {result['date']} in {cached} (--force measures again)")
                results[images] = result
                continue
        result = measure(args, images, settings)
        if result is None:
            failed.append(images)
            continue
        result["machine"] = machine
        cached.write_text(json.dumps(result, indent=2))
        results[images] = result
    for images in sorted(results):
        print_size(results[images])
    met = print_comparison(results)
    out = args.out or args.cache_dir / "scale.json"
    out.write_text(json.dumps({"sizes": {str(n): results[n] for n in sorted(results)}, "failed": failed}, indent=2))
    print(f"results: {out}" + (f"; FAILED sizes: {failed}" if failed else ""))
    return 0 if met and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
