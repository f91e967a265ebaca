"""Ingestion's options: a module of its own so that reading a run config does not import Beam or TensorFlow."""

from __future__ import annotations

import dataclasses

from components import imaging


@dataclasses.dataclass(frozen=True)
class IngestOptions:
    """Knobs of ingestion that do not identify anybody (recorded in ML Metadata as parameters).

    Attributes:
      max_side: longest side of the stored image; larger images are downsized (bilinear, masks nearest).
      max_pixels: images whose header claims more pixels are refused before decoding (decompression bombs);
        at most PIL's own ceiling, imaging.PIL_MAX_PIXELS.
      min_side: images with a shorter side are refused (icons, 1xN strips, thumbnails).
      max_aspect_ratio: images whose longest / shortest side passes this are refused (strips, crops).
      split_ratios: {split name: relative weight}, in split order; patients are assigned by their hashed id.
      max_quarantine_fraction: the component fails when a source's quarantined share of its listed
        inputs passes this.
    """

    max_side: int = 1024
    max_pixels: int = 60_000_000
    min_side: int = 32
    max_aspect_ratio: float = 3.0
    split_ratios: dict[str, float] = dataclasses.field(default_factory=lambda: {"train": 0.75, "eval": 0.25})
    max_quarantine_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.max_side < 16:
            raise ValueError(f"max_side must be >= 16, got {self.max_side}")
        if not 0 < self.max_pixels <= imaging.PIL_MAX_PIXELS:
            raise ValueError(f"max_pixels must be in (0, {imaging.PIL_MAX_PIXELS}], got {self.max_pixels}")
        if self.min_side < 1:
            raise ValueError(f"min_side must be >= 1, got {self.min_side}")
        if self.max_aspect_ratio < 1:
            raise ValueError(f"max_aspect_ratio must be >= 1, got {self.max_aspect_ratio}")
        if not self.split_ratios or any(not isinstance(r, int | float) or r <= 0 for r in self.split_ratios.values()):
            raise ValueError(f"split ratios must be positive, got {self.split_ratios}")
        if not 0 <= self.max_quarantine_fraction <= 1:
            raise ValueError(f"max_quarantine_fraction must be in [0, 1], got {self.max_quarantine_fraction}")

    @property
    def split_names(self) -> list[str]:
        return list(self.split_ratios)
