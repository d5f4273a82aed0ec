"""Training data: the folders a run reads, the training and validation images, and the per-epoch sampler.

The order of samples comes from a generator seeded by (seed, epoch) and each sample's augmentation from one
seeded by (seed, epoch, index) (ganscan.data.augment), so neither the number of loader workers nor a resume
changes what the model sees.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ganscan.core.checkpoint import atomic_write_bytes
from ganscan.data.augment import AugmentConfig, degrade_for_validation, sample_rng, train_view
from ganscan.data.datasets import LabelledSet, require_both_classes, stratified_split, test_sets, training_set
from ganscan.data.decode import DecodeError, load_image
from ganscan.detectors.preprocess import views_uint8
from ganscan.detectors.registry import DetectorConfig
from ganscan.errors import DataError


@dataclass
class DataSpec:
    data: list[str] = field(default_factory=list)
    real: list[str] = field(default_factory=list)
    fake: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: [os.path.abspath(p) for p in getattr(self, k)] for k in ("data", "real", "fake", "val")}


def train_and_val_sets(spec: DataSpec, val_split: float, seed: int) -> tuple[LabelledSet, LabelledSet]:
    """The training images and the validation images: the --val folders, or ``val_split`` of each class."""
    train = training_set(spec.data, spec.real, spec.fake)
    if not spec.val:
        return stratified_split(train, val_split, seed)
    val = LabelledSet("val")
    for root in spec.val:
        for s in test_sets(root):
            val.paths += s.paths
            val.labels += s.labels
    require_both_classes(val, "validation data")
    return train, val


def check_format(train: LabelledSet, out: Path, log: Callable[[str], None]) -> None:
    """The format shortcut: how well could format alone separate the training classes? Logged, and stored
    in ``out``/format-check.json."""
    from ganscan.data.shortcut import describe, format_separability

    check = format_separability(train, max_files=20000)
    log(describe(check))
    if check["balanced_accuracy"] is not None and check["balanced_accuracy"] >= 0.75:
        log("  most skewed: " + "; ".join(f"{t['signature']} real {t['real']} fake {t['fake']}" for t in check["top"][:3]))
    atomic_write_bytes(out / "format-check.json", json.dumps(check, indent=2).encode())


class TrainImages(Dataset):
    """Keys are (index, epoch); an unreadable image is replaced by the next readable one and reported."""

    def __init__(self, data: LabelledSet, aug: AugmentConfig, seed: int, max_pixels: int):
        self.paths, self.labels = data.paths, data.labels
        self.aug, self.seed, self.max_pixels = aug, seed, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key):
        idx, epoch = key
        bad = []
        for attempt in range(min(16, len(self.paths))):
            i = (idx + attempt) % len(self.paths)
            try:
                img, _ = load_image(self.paths[i], self.max_pixels)
            except DecodeError as exc:
                bad.append((self.paths[i], str(exc)))
                continue
            arr = train_view(img, self.aug, sample_rng(self.seed, epoch, idx))
            return arr, self.labels[i], bad
        raise DataError(f"{len(bad)} unreadable training images in a row, e.g. {bad[0][0]}: {bad[0][1]}")


def collate_train(items):
    arrs, labels, bad = zip(*items)
    x = torch.from_numpy(np.stack(arrs))  # (N, H, W, 3) uint8
    y = torch.tensor(labels, dtype=torch.float32)
    return x, y, [b for part in bad for b in part]


class ValImages(Dataset):
    """Validation views through scan's preprocessing (after CNNDetection's fixed degradations)."""

    def __init__(self, data: LabelledSet, aug: AugmentConfig, cfg: DetectorConfig, seed: int, max_pixels: int):
        self.data, self.aug, self.cfg, self.seed, self.max_pixels = data, aug, cfg, seed, max_pixels

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        try:
            img, _ = load_image(self.data.paths[i], self.max_pixels)
        except DecodeError as exc:
            return i, None, str(exc)
        img = degrade_for_validation(img, self.aug, self.seed, i)
        return i, views_uint8(img, self.cfg), None


class EpochSampler(Sampler):
    """Yields (index, epoch) for one rank: a permutation seeded by (seed, epoch) split across ranks as
    DistributedSampler does (or class-balanced draws with replacement), minus the first ``skip``."""

    def __init__(self, labels: list[int], seed: int, rank: int, world: int, balance: str):
        self.labels = np.asarray(labels)
        self.seed, self.rank, self.world, self.balance = seed, rank, world, balance
        self.epoch, self.skip = 0, 0
        self.per_rank = math.ceil(len(labels) / world)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def indices(self) -> list[int]:
        n = len(self.labels)
        if self.balance == "sample":
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            w = np.where(self.labels == 1, 0.5 / max(1, (self.labels == 1).sum()),
                         0.5 / max(1, (self.labels == 0).sum()))
            idx = torch.multinomial(torch.as_tensor(w, dtype=torch.float64), n, replacement=True, generator=g).tolist()
        else:
            ds = DistributedSampler(range(n), num_replicas=1, rank=0, shuffle=True, seed=self.seed)
            ds.set_epoch(self.epoch)
            idx = list(ds)
        idx += idx[: self.per_rank * self.world - n]  # pad so every rank gets the same count
        return idx[self.rank::self.world]

    def __iter__(self):
        return ((i, self.epoch) for i in self.indices()[self.skip:])

    def __len__(self) -> int:
        return self.per_rank - self.skip
