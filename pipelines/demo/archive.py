"""Writes a small synthetic multi-source chest X-ray archive in the native layouts of real datasets."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from pipelines.demo.allocator import tune_for_rendering
from pipelines.demo.dicom import plan_dicom
from pipelines.demo.layouts import MONTGOMERY_ASPECT, Study, image_height, plan_montgomery, plan_nih, plan_shenzhen, write_text
from pipelines.demo.phantom import MAX_SIZE, MIN_SIZE

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("montgomery", "shenzhen", "nih", "dicom")
_MAX_WORKERS = 256


def write_demo_archive(
    root: str | Path, n_per_source: int = 12, size: int = 256, seed: int = 0, *, workers: int = 1
) -> dict[str, Path]:
    """Writes synthetic phantom studies laid out like four real chest X-ray sources.

    Layout under ``root`` (``%`` patterns as in the original releases):

    * ``montgomery/MontgomerySet/``: ``CXR_png/MCUCXR_%04d_%d.png`` (suffix 1 = TB),
      ``ManualMask/{leftMask,rightMask}/<same name>.png`` and ``ClinicalReadings/<stem>.txt``.
    * ``shenzhen/``: ``ChinaSet_AllFiles/CXR_png/CHNCXR_%04d_%d.png``,
      ``ChinaSet_AllFiles/ClinicalReadings/<stem>.txt`` and, for about 3/4 of the images,
      ``mask/<stem>_mask.png`` (one mask for both lungs).
    * ``nih/``: ``images/%08d_%03d.png`` (patient id, follow-up) and ``Data_Entry_2017.csv``.
    * ``dicom/``: ``IMG%04d.dcm`` (explicit VR little endian; MONOCHROME1 and MONOCHROME2).
    * ``README.txt``.

    Images are 8-bit grayscale PNGs (DICOM: 8- or 16-bit) of width ``size``; masks are 8-bit
    PNGs holding only 0 and 255, the size of their image. Output is byte-identical for the same
    arguments, whatever the number of ``workers``: every random draw is made first, in this process
    and in a fixed order, and each study's files then depend on nothing but its own draws.

    Args:
        root: Output directory; created if missing. Its source sub-folders must not exist yet
            (or be empty), so stale files never mix with a new archive.
        n_per_source: Images per source (the DICOM folder gets max(3, n_per_source // 3)), >= 1.
        size: Image width in pixels, in [32, 8192].
        seed: Non-negative integer seed.
        workers: Processes rendering and writing the studies, in [1, 256]; 1 writes them in this
            process. More than one starts fresh interpreters (about a second), worth it from a few
            dozen images at 256 px or a handful at 1024 px.

    Returns:
        The root folder of each source, keyed 'montgomery', 'shenzhen', 'nih' and 'dicom'.

    Raises:
        ValueError: For invalid arguments or a non-empty existing source folder.
    """
    n_per_source = _check_int("n_per_source", n_per_source, 1, 100_000)
    size = _check_int("size", size, MIN_SIZE, MAX_SIZE)
    seed = _check_int("seed", seed, 0, 2**32 - 1)
    workers = _check_int("workers", workers, 1, _MAX_WORKERS)
    root = Path(root)
    for name in SOURCES:
        folder = root / name
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise ValueError(f"{folder} already exists and is not an empty folder; use a fresh output folder")
    root.mkdir(parents=True, exist_ok=True)

    # One independent stream per source, so the sources never repeat each other's patients.
    plans = {
        "montgomery": plan_montgomery(root / "montgomery", n_per_source, size, _source_rng(seed, 0)),
        "shenzhen": plan_shenzhen(root / "shenzhen", n_per_source, size, _source_rng(seed, 1)),
        "nih": plan_nih(root / "nih", n_per_source, size, _source_rng(seed, 2)),
        "dicom": plan_dicom(root / "dicom", max(3, n_per_source // 3), size, seed, _source_rng(seed, 3)),
    }
    _write_studies([study for plan in plans.values() for study in plan.studies], workers)
    for plan in plans.values():
        for path, text in plan.texts:
            write_text(path, text)
        logger.info("%s", plan.summary)
    (root / "README.txt").write_text(_readme(n_per_source, size, seed), encoding="utf-8")
    return {name: plan.root for name, plan in plans.items()}


def _write_studies(studies: list[Study], workers: int) -> None:
    """Writes every study, in this process or spread over ``workers`` processes."""
    workers = min(workers, len(studies))
    if workers <= 1:
        for study in studies:
            study.write()
        return
    # Fresh interpreters, not forks: a caller running TensorFlow or Beam holds threads and locks that
    # a forked child would inherit mid-use.
    context = multiprocessing.get_context("spawn")
    # Small chunks balance the load: a TB study renders its phantom three times.
    chunksize = max(1, len(studies) // (4 * workers))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=tune_for_rendering) as pool:
        for _ in pool.map(_write_study, studies, chunksize=chunksize):
            pass


def _write_study(study: Study) -> None:
    """Writes one study (a module-level function, so a worker process can be handed it)."""
    study.write()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: ``python -m pipelines.demo --out DIR``.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        Process exit status (0 on success).
    """
    parser = argparse.ArgumentParser(description="Write a synthetic multi-source chest X-ray demo archive.")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--n-per-source", type=int, default=12, help="images per source (default 12)")
    parser.add_argument("--size", type=int, default=256, help="image width in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="processes writing the studies (default 1)")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        write_demo_archive(args.out, n_per_source=args.n_per_source, size=args.size, seed=args.seed, workers=args.workers)
    except ValueError as err:
        parser.error(str(err))
    return 0


def _check_int(name: str, value: object, low: int, high: int) -> int:
    """Validates an integer argument (bools rejected) and returns it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def _source_rng(seed: int, source_index: int) -> np.random.Generator:
    """Generator of one source; seeded with seed * 1000 + source index."""
    return np.random.default_rng(seed * 1000 + source_index)


def _readme(n_per_source: int, size: int, seed: int) -> str:
    """Text of the archive's README.txt."""
    return (
        "Synthetic phantom data generated by cxr-pipeline (pipelines.demo).\n"
        "These are procedurally drawn chest X-ray phantoms, not images of real people; every name,\n"
        "ID, date and address in them is fake.\n"
        "\n"
        f"seed: {seed}\n"
        f"images per source: {n_per_source} (dicom: {max(3, n_per_source // 3)})\n"
        f"image width: {size} px (montgomery {size}x{image_height(size, MONTGOMERY_ASPECT)}, "
        "shenzhen heights vary, dicom 16-bit files 1.2x as tall)\n"
        "\n"
        "montgomery/MontgomerySet/  NLM Montgomery County layout: CXR_png, ManualMask/{left,right}Mask,\n"
        "                           ClinicalReadings (suffix _1 = TB)\n"
        "shenzhen/                  ChinaSet_AllFiles/{CXR_png,ClinicalReadings} and mask/*_mask.png\n"
        "                           (masks for about 3/4 of the images)\n"
        "nih/                       ChestX-ray14 layout: images/ and Data_Entry_2017.csv (OriginalImage\n"
        "                           columns describe a simulated original, as in the official table)\n"
        "dicom/                     unlabeled DX files: MONOCHROME1 12-bit, MONOCHROME2 14-bit with\n"
        "                           rescale, MONOCHROME2 8-bit secondary capture\n"
    )
