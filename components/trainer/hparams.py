"""Training hyperparameters: one definition for the run's configuration and the Trainers (no TF import here)."""

from __future__ import annotations

import dataclasses
from typing import Any

from components import features as F

SEGMENTATION_ARCHS = ("unet", "resunet")
CLASSIFICATION_ARCHS = ("small_cnn", "mobilenet_v2", "densenet121", "resnet50")
CLASS_BALANCE = ("balanced", "none")
LR_SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class HParams:
    """Hyperparameters of one Trainer; they arrive through its custom_config (recorded in ML Metadata).

    Attributes:
      arch: the model: SEGMENTATION_ARCHS or CLASSIFICATION_ARCHS; "" picks the task's first one.
      mask_classes: segmentation outputs: 1 (lung vs background, Dice + BCE) or 3 (background, right and left
        lung, softmax with Dice + cross-entropy).
      alpha: MobileNetV2 width multiplier.
      weights: a local file of the backbone's no-top weights ("" trains from scratch; nothing is downloaded).
      class_balance: "balanced" weights classes by their training frequency; "none" does not.
      augment: joint geometric + intensity augmentation of the training split.
      lr_schedule: "cosine" (a short linear warm-up, then cosine decay to 0 over the run's steps) or "constant".
      validation_fraction: share of the training split's patients held out to watch training (early stopping,
        best weights); the eval split is never used for that.
      min_validation_examples: fewer held-out examples than this (tiny runs) and nothing is held out: the
        model trains on all and keeps its final weights.
      task: classification task (components.trainer.tasks.ClassificationTask.to_config()); {} is multi-label
        over every canonical label.
    """

    seg_size: int = F.DEFAULT_SEG_SIZE
    cls_size: int = F.DEFAULT_CLS_SIZE
    batch_size: int = 8
    epochs: int = 4
    learning_rate: float = 1e-3
    base_filters: int = 16
    depth: int = 4
    early_stopping_patience: int = 3
    seed: int = 0
    arch: str = ""
    mask_classes: int = 1
    alpha: float = 0.35
    weights: str = ""
    dropout: float = 0.2
    class_balance: str = "balanced"
    augment: bool = True
    lr_schedule: str = "cosine"
    validation_fraction: float = 0.1
    min_validation_examples: int = 32
    task: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.arch and self.arch not in SEGMENTATION_ARCHS + CLASSIFICATION_ARCHS:
            raise ValueError(
                f"unknown arch {self.arch!r}; segmentation: {SEGMENTATION_ARCHS}, classification: {CLASSIFICATION_ARCHS}"
            )
        if self.mask_classes not in (1, 3):
            raise ValueError(f"mask_classes must be 1 (lung) or 3 (background, right, left lung), got {self.mask_classes}")
        if self.class_balance not in CLASS_BALANCE:
            raise ValueError(f"class_balance must be one of {CLASS_BALANCE}, got {self.class_balance!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.validation_fraction < 0.5:
            raise ValueError(f"validation_fraction must be in [0, 0.5), got {self.validation_fraction}")
        for name in ("batch_size", "epochs", "base_filters", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")

    @classmethod
    def from_custom_config(cls, custom_config: dict[str, Any] | None) -> HParams:
        known = {f.name for f in dataclasses.fields(cls)}
        config = dict(custom_config or {})
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)}; known: {sorted(known)}")
        return cls(**config)

    def arch_for(self, archs: tuple[str, ...]) -> str:
        """This run's arch, checked against the task's (e.g. SEGMENTATION_ARCHS)."""
        arch = self.arch or archs[0]
        if arch not in archs:
            raise ValueError(f"arch {arch!r} does not fit this task; choose one of {archs}")
        return arch
