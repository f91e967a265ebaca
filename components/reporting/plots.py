"""The report's pictures as PNG bytes: matplotlib figures (Agg, no display) and image overlays drawn with numpy."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

DPI = 80
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
# Mask overlay colours: right lung (label 1), left lung (label 2); truth and prediction outlines.
RIGHT_LUNG, LEFT_LUNG = np.array([0.0, 0.75, 1.0]), np.array([1.0, 0.55, 0.0])
TRUTH, PREDICTION = np.array([0.1, 0.9, 0.1]), np.array([1.0, 0.1, 0.4])


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    """The figure as a palette PNG (a plot has few colours: a third of the bytes of full RGB)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def array_png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) float in [0, 1] -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _fit(image: np.ndarray, side: int, resample: int) -> np.ndarray:
    """Resizes so the longer side is `side` pixels (aspect kept)."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if image.dtype == np.uint8 or image.dtype == bool:
        return np.asarray(Image.fromarray(image.astype(np.uint8)).resize(size, resample))
    return np.asarray(Image.fromarray(image.astype(np.float32)).resize(size, resample)).astype(np.float64)


def mask_overlay(image: np.ndarray, mask: np.ndarray | None, side: int = 160, alpha: float = 0.35) -> bytes:
    """A grayscale image (H, W) in [0, 1] with its lung label map tinted (right lung blue, left lung orange)."""
    gray = _fit(image, side, Image.BILINEAR)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    if mask is not None and mask.size:
        labels = _fit(mask, side, Image.NEAREST)
        for value, color in ((1, RIGHT_LUNG), (2, LEFT_LUNG)):
            where = labels == value
            rgb[where] = (1 - alpha) * rgb[where] + alpha * color
    return array_png(rgb)


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    return mask & ~inner


def segmentation_overlay(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, scale: int = 3) -> bytes:
    """The model input (S, S) with the reference mask outlined in green and the prediction in red (upscaled)."""
    up = np.kron(image, np.ones((scale, scale)))
    t = np.kron(truth, np.ones((scale, scale), dtype=bool)).astype(bool)
    p = np.kron(prediction, np.ones((scale, scale), dtype=bool)).astype(bool)
    rgb = np.repeat(up[..., None], 3, axis=-1)
    rgb[p] = 0.88 * rgb[p] + 0.12 * PREDICTION
    rgb[_outline(t)] = TRUTH
    rgb[_outline(p)] = PREDICTION
    return array_png(rgb)


def intensity_histograms(histograms: Mapping[str, np.ndarray]) -> bytes:
    """One line per source: share of pixels per intensity bin over [0, 1]."""
    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    for i, (name, counts) in enumerate(histograms.items()):
        counts = np.asarray(counts, dtype=np.float64)
        if counts.sum() == 0:
            continue
        edges = np.linspace(0, 1, counts.size + 1)
        ax.stairs(counts / counts.sum(), edges, label=name, color=COLORS[i % len(COLORS)], linewidth=1.6)
    ax.set_xlabel("stored pixel value / largest value of its bit depth")
    ax.set_ylabel("share of pixels")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    return to_png(fig)


def image_sizes(original: Mapping[str, Sequence[tuple[int, int]]], stored: Mapping[str, Sequence[tuple[int, int]]]) -> bytes:
    """Width x height scatter per source: as acquired (before any resize) and as stored."""
    fig = _figure(8, 3.4)
    for k, (title, sizes) in enumerate((("original size", original), ("stored size", stored))):
        ax = fig.add_subplot(1, 2, k + 1)
        for i, (name, points) in enumerate(sizes.items()):
            if points:
                hw = np.asarray(points)
                ax.scatter(hw[:, 1], hw[:, 0], s=14, alpha=0.6, label=name, color=COLORS[i % len(COLORS)])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("width (px)")
        ax.set_ylabel("height (px)")
        if k == 0:
            ax.legend(fontsize=7)
    return to_png(fig)


def label_distribution(per_source: Mapping[str, Mapping[str, Mapping[str, int]]], labels: Sequence[str]) -> bytes:
    """Per source, per label: positive and negative images side by side with the unknown ones apart (grey)."""
    n = max(1, len(per_source))
    fig = _figure(3.2 * n, 0.28 * len(labels) + 1.3)
    y = np.arange(len(labels))
    for k, (name, counts) in enumerate(per_source.items()):
        ax = fig.add_subplot(1, n, k + 1)
        pos = np.array([counts[label]["positive"] for label in labels])
        neg = np.array([counts[label]["negative"] for label in labels])
        unknown = np.array([counts[label]["unknown"] for label in labels])
        ax.barh(y - 0.27, pos, height=0.27, color="#d62728", label="positive")
        ax.barh(y, neg, height=0.27, color="#1f77b4", label="negative")
        ax.barh(y + 0.27, unknown, height=0.27, color="#c8c8c8", label="unknown")
        ax.set_yticks(y, labels if k == 0 else [""] * len(labels), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("images", fontsize=8)
        if k == n - 1:
            ax.legend(fontsize=7, loc="lower right")
    return to_png(fig)


def training_curves(curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]]) -> bytes:
    """One panel per metric: the training and validation value after each epoch."""
    n = max(1, len(curves))
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = _figure(3.3 * cols, 2.6 * rows)
    for k, (metric, phases) in enumerate(curves.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        for phase, color in (("train", COLORS[0]), ("validation", COLORS[1])):
            points = phases.get(phase) or []
            if points:
                epochs, values = zip(*points, strict=True)
                ax.plot([e + 1 for e in epochs], values, marker="o", markersize=3, color=color, label=phase)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.legend(fontsize=7)
    return to_png(fig)


def roc_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]]) -> bytes:
    """ROC curve per class, {class: (fpr, tpr, auc)}, with the chance diagonal."""
    fig = _figure(4.6, 4.2)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#bbbbbb", linestyle="--", linewidth=1)
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        label = f"{name} (AUC {auc:.3f})" if not math.isnan(auc) else f"{name} (AUC undefined)"
        ax.plot(fpr, tpr, color=COLORS[i % len(COLORS)], linewidth=1.8, label=label, drawstyle="default")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    return to_png(fig)


def confusion_matrix(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str) -> bytes:
    """A count matrix as a heat map with the counts written in (rows: truth, columns: decision)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    fig = _figure(1.1 + 0.75 * len(cols), 0.9 + 0.6 * len(rows))
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1.0, float(matrix.max())))
    for (r, c), v in np.ndenumerate(matrix):
        ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=9, color="white" if v > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    ax.set_title(title, fontsize=9)
    return to_png(fig)


def dice_histograms(histograms: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> bytes:
    """Images per Dice bin, one panel per slice: {slice: (bin lower edges, counts)}."""
    n = max(1, len(histograms))
    fig = _figure(min(3.0 * n, 12), 2.6)
    for k, (name, (lower, counts)) in enumerate(histograms.items()):
        ax = fig.add_subplot(1, n, k + 1)
        width = (lower[1] - lower[0]) if len(lower) > 1 else 1.0
        ax.bar(lower, counts, width=width, align="edge", color=COLORS[k % len(COLORS)], edgecolor="white")
        ax.set_xlim(0, 1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("Dice", fontsize=8)
        if k == 0:
            ax.set_ylabel("images", fontsize=8)
    return to_png(fig)
