"""Small native-layout trees for the source adapter tests (tests/components/test_sources_more.py, test_sources_covid.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from components import features as F
from components.ingest.sources import SourceConfig, make_source

MAX_PIXELS = 10**8


def source(kind: str, root: Path, **options):
    return make_source(SourceConfig(kind, kind, str(root), options))


def image(path: Path, size: tuple[int, int] = (8, 6), mode: str = "L", value: int = 100) -> Path:
    """Writes a (width, height) = size image, format from the suffix (PNG or JPEG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value,) * len(mode)
    Image.new(mode, size, color).save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    return path


def array_image(path: Path, arr: np.ndarray, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **save)
    return path


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def reasons(rejected) -> dict[str, tuple[str, int]]:
    return {r.rel_path: (r.reason, r.files) for r in rejected}


def label_map(h: int = 6, w: int = 8) -> np.ndarray:
    """A (h, w) uint8 lung label map: the right lung 1, the left lung 2 (features.MASK_*)."""
    m = np.zeros((h, w), np.uint8)
    m[1:5, 1:3] = F.MASK_RIGHT_LUNG
    m[1:5, 5:7] = F.MASK_LEFT_LUNG
    return m
