"""The learning-rate schedule and the one rule of "improved" that it and the best checkpoint share."""

from __future__ import annotations


def improved(value: float | None, best: float | None, mode: str, min_delta: float) -> bool:
    """Is ``value`` better than ``best`` by more than ``min_delta`` (``mode`` max: higher is better)? Any
    value improves on none; no value never improves."""
    if value is None:
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


class Schedule:
    """Plateau / early stopping on one monitored validation metric, counted in epochs."""

    def __init__(self, kind: str, mode: str, patience: int, factor: float, min_lr: float, min_delta: float):
        self.kind, self.mode, self.patience = kind, mode, int(patience)
        self.factor, self.min_lr, self.min_delta = float(factor), float(min_lr), float(min_delta)
        self.best: float | None = None
        self.bad_epochs = 0
        self.lr_scale = 1.0
        self.stopped = False
        self.reason = ""

    def step(self, value: float | None, max_base_lr: float) -> str | None:
        """Feed one epoch's metric; returns an event message (LR drop or stop) or None."""
        if self.kind == "none" or value is None:
            return None
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.bad_epochs = value, 0
            return None
        self.bad_epochs += 1
        if self.bad_epochs < self.patience:
            return None
        self.bad_epochs = 0
        if self.kind == "early_stop":
            self.stopped, self.reason = True, f"no improvement for {self.patience} epochs: early stop"
            return self.reason
        self.lr_scale *= self.factor
        lr = max_base_lr * self.lr_scale
        if lr < self.min_lr * (1 - 1e-9):
            self.stopped, self.reason = True, f"learning rate {lr:.1e} below {self.min_lr:.0e}: stop"
            return self.reason
        return f"no improvement for {self.patience} epochs: learning rate -> {lr:.1e}"

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("best", "bad_epochs", "lr_scale", "stopped", "reason")}

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            setattr(self, k, v)
