"""PNG figures (matplotlib, Agg backend, never a window): training curves, ROC and precision-recall
curves, and grids of the most confidently misclassified images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> str:
    from ganscan.engine.checkpoint import atomic_write_bytes
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    _plt().close(fig)
    return str(path)


def training_curves(rows: list[dict], out_dir: str | os.PathLike) -> list[str]:
    """loss.png and accuracy.png from training-log rows (epoch rows as points, step rows as a line)."""
    plt = _plt()
    out = []
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    vals = [r for r in rows if r.get("val_loss") is not None]

    def xs(rs):
        return [r["progress"] for r in rs]

    fig, ax = plt.subplots(figsize=(6.4, 4))
    if epochs:
        ax.plot(xs(epochs), [r["train_loss"] for r in epochs], "o-", label="train loss")
    if vals:
        ax.plot(xs(vals), [r["val_loss"] for r in vals], "s--", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("binary cross-entropy")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Loss")
    out.append(_save(fig, Path(out_dir) / "loss.png"))

    fig, ax = plt.subplots(figsize=(6.4, 4))
    if epochs:
        ax.plot(xs(epochs), [r["train_acc"] for r in epochs], "o-", label="train accuracy")
    if vals:
        ax.plot(xs(vals), [r["val_acc"] for r in vals], "s--", label="validation accuracy")
        aps = [(r["progress"], r["val_ap"]) for r in vals if r.get("val_ap") is not None]
        if aps:
            ax.plot([a for a, _ in aps], [b for _, b in aps], "^:", label="validation AP")
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Accuracy")
    out.append(_save(fig, Path(out_dir) / "accuracy.png"))
    return out


def roc_pr_curves(name: str, labels, scores, threshold: float, out_dir: str | os.PathLike) -> list[str]:
    """``<name>_roc.png`` and ``<name>_pr.png``; nothing for a single-class set (curves undefined)."""
    from ganscan.engine.metrics import average_precision, pr_curve, roc_auc, roc_curve

    y = np.asarray(labels)
    if not ((y == 0).any() and (y == 1).any()):
        return []
    plt = _plt()
    out = []
    fpr, tpr, _ = roc_curve(labels, scores)
    s = np.asarray(scores, dtype=np.float64)
    op_fpr = float((s[y == 0] >= threshold).mean())
    op_tpr = float((s[y == 1] >= threshold).mean())
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.plot(fpr, tpr, lw=2, label=f"AUC {roc_auc(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.plot([op_fpr], [op_tpr], "o", color="red", label=f"threshold {threshold:.3g}")
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
