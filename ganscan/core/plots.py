"""PNG figures (matplotlib, Agg backend, never a window), written atomically: training curves."""

from __future__ import annotations

import os
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> str:
    from ganscan.core.checkpoint import atomic_write_bytes
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


def gan_losses(rows: list[dict], path: str | os.PathLike, model: str) -> str | None:
    """The discriminator and generator losses of a GAN run (losses.csv rows), as a moving average over
    1/200 of the run so the trend shows through the noise."""
    if not rows:
        return None
    import numpy as np

    plt = _plt()
    steps = np.array([int(r["step"]) for r in rows])
    fig, ax = plt.subplots(figsize=(8, 4))
    for key, label in (("loss_d", "discriminator"), ("loss_g", "generator")):
        y = np.array([float(r[key]) for r in rows])
        k = max(1, len(y) // 200)
        ax.plot(steps[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{model} training losses")
    ax.legend()
    return _save(fig, path)
