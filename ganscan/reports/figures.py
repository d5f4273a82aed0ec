"""Figures of an evaluation: ROC and precision-recall curves, and a grid of the misclassified images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ganscan.core.plots import _plt, _save


def roc_pr_curves(name: str, labels, scores, threshold: float, out_dir: str | os.PathLike, per_file=None) -> list[str]:
    """``<name>_roc.png`` and ``<name>_pr.png``; nothing for a single-class set (curves undefined). ``per_file``:
    each file's own threshold, where the model has more than one (the operating point is then theirs)."""
    from ganscan.detectors.metrics import average_precision, pr_curve, roc_auc, roc_curve

    y = np.asarray(labels)
    if not ((y == 0).any() and (y == 1).any()):
        return []
    plt = _plt()
    out = []
    fpr, tpr, _ = roc_curve(labels, scores)
    s = np.asarray(scores, dtype=np.float64)
    t = threshold if per_file is None else np.asarray(per_file, dtype=np.float64)
    called = s >= t
    op_fpr = float(called[y == 0].mean())
    op_tpr = float(called[y == 1].mean())
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.plot(fpr, tpr, lw=2, label=f"AUC {roc_auc(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.plot([op_fpr], [op_tpr], "o", color="red", label=f"threshold {threshold:.3g}" + (" (or a file's own)" if per_file is not None else ""))
    ax.set_xlabel("false-positive rate (real called fake)")
    ax.set_ylabel("true-positive rate (fake caught)")
    ax.set_title(f"ROC: {name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    out.append(_save(fig, Path(out_dir) / f"{_safe(name)}_roc.png"))

    precision, recall, _ = pr_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.step(np.r_[0.0, recall], np.r_[precision[0] if precision.size else 1.0, precision], where="post", lw=2,
            label=f"AP {average_precision(labels, scores):.3f}")
    ax.axhline(float((y == 1).mean()), ls=":", color="grey", label="chance")
    ax.set_xlabel("recall (fakes found)")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Precision-recall: {name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    out.append(_save(fig, Path(out_dir) / f"{_safe(name)}_pr.png"))
    return out


def misclassified_grid(name: str, items: list[tuple[str, int, float]], out_dir: str | os.PathLike,
                       thumb: int = 128, cols: int = 6) -> str | None:
    """A grid of (path, label, score) images, most confident mistakes first; None when there are none."""
    if not items:
        return None
    from ganscan.data.decode import DecodeError, load_image

    plt = _plt()
    rows = (len(items) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.9, rows * 2.15), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (path, label, score) in zip(axes.ravel(), items):
        try:
            img, _ = load_image(path)
            img.thumbnail((thumb, thumb))
            ax.imshow(np.asarray(img))
        except DecodeError:
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center")
        truth = "fake" if label == 1 else "real"
        ax.set_title(f"{truth}, P(fake) {score:.3f}\n{Path(path).name[:22]}", fontsize=7)
    fig.suptitle(f"{name}: most confident mistakes", fontsize=10)
    return _save(fig, Path(out_dir) / f"{_safe(name)}_misclassified.png")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "set"
