"""Phantoms per second at 1024 px on one core and over N worker processes, and the demo archive's, in one run."""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from pipelines.demo.allocator import tune_for_rendering
from pipelines.demo.archive import write_demo_archive
from pipelines.demo.phantom import Findings, random_findings, render_phantom

SIZE = 1024  # the size of the NIH originals the phantoms stand in for


def cases(count: int) -> list[tuple[int, Findings]]:
    """`count` (seed, findings) pairs with the demo's mix of findings."""
    rng = np.random.default_rng(0)
    return [(seed, random_findings(rng)) for seed in range(count)]


def render_digest(case: tuple[int, Findings], size: int) -> str:
    """Renders one phantom and returns its image's digest (what comes back from a worker is small)."""
    seed, findings = case
    return hashlib.sha256(render_phantom(seed, size, findings).image.tobytes()).hexdigest()


def warm_up(_: int) -> None:
    """Imports the renderer and warms its caches in a worker; the pause keeps each worker to one call."""
    render_phantom(0, 64)
    time.sleep(0.5)


def render_all(items: list[tuple[int, Findings]], size: int) -> list[str]:
    """Renders the phantoms in this process, one after the other: one core."""
    return [render_digest(case, size) for case in items]


def timed(run: Callable[[], object]) -> tuple[float, float, object]:
    """(wall seconds, this process's CPU seconds, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main(argv: Sequence[str] | None = None) -> int:
    """Measures and prints the table; returns 0, or 1 when the parallel phantoms differ from the serial ones."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=24, help="phantoms per measurement (default 24)")
    parser.add_argument("--size", type=int, default=SIZE, help=f"image width in pixels (default {SIZE})")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: the CPUs)")
    parser.add_argument(
        "--archive-per-source", type=int, default=6, help="images per source of the archive measured (default 6; 0 skips it)"
    )
    args = parser.parse_args(argv)
    items = cases(args.count)
    print(f"{args.count} phantoms of {args.size}x{args.size} px (demo mix of findings), {args.workers} workers,")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start\n")

    render_digest(items[0], args.size)  # imports and caches warm
    serial_wall, serial_cpu, serial = timed(lambda: render_all(items, args.size))
    context = multiprocessing.get_context("spawn")
    # As the archive renders: worker processes whose allocator is set at their start (pipelines/demo/allocator.py).
    with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=tune_for_rendering) as pool:
        list(pool.map(warm_up, range(1)))
        worker_wall, _, in_worker = timed(lambda: pool.submit(render_all, items, args.size).result())
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=context, initializer=tune_for_rendering) as pool:
        # Every worker starts (a fresh interpreter, about a second) before the clock does.
        list(pool.map(warm_up, range(args.workers)))
        parallel_wall, _, parallel = timed(lambda: list(pool.map(partial(render_digest, size=args.size), items)))
    here, one_core = args.count / serial_wall, args.count / worker_wall
    spread = args.count / parallel_wall
    print(f"{'phantoms':<28}{'images/s':>10}{'ms/image':>10}")
    cpu_rate = args.count / serial_cpu
    print(f"{'one core, this process':<28}{here:>10.2f}{1000 / here:>10.1f}   (glibc's defaults; CPU time {cpu_rate:.2f}/s)")
    print(f"{'one core, an archive worker':<28}{one_core:>10.2f}{1000 / one_core:>10.1f}")
    print(f"{f'{args.workers} workers':<28}{spread:>10.2f}{1000 / spread:>10.1f}")
    print(f"{'ratio (to one worker)':<28}{spread / one_core:>10.2f}x")
    if parallel != serial or in_worker != serial:
        print("the phantoms rendered by the workers differ from those rendered in this process")
        return 1

    if args.archive_per_source > 0:
        n = args.archive_per_source
        images = 3 * n + max(3, n // 3)
        print(f"\ndemo archive: {images} images at {args.size} px (render, PNG/DICOM and text files, worker start-up)")
        rates = {}
        with tempfile.TemporaryDirectory() as tmp:
            for workers in sorted({1, args.workers}):
                wall, _, _ = timed(partial(write_demo_archive, Path(tmp, f"w{workers}"), n, args.size, 0, workers=workers))
                rates[workers] = images / wall
                label = f"{workers} worker{'s' if workers > 1 else ''}"
                print(f"{label:<28}{rates[workers]:>10.2f}{1000 / rates[workers]:>10.1f}")
        print(f"{'ratio':<28}{rates[args.workers] / rates[1]:>10.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
