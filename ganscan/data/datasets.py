"""Labelled image sets for training and evaluation.

Layouts understood (a ``class`` folder may itself contain sub-folders; images are found recursively
and recognised by their extension):

- CNNDetection: ``ROOT/0_real`` + ``ROOT/1_fake``, or ``ROOT/<class>/0_real`` + ``ROOT/<class>/1_fake``
  (several object classes, merged);
- plain: ``ROOT/real`` + ``ROOT/fake`` (or ``ROOT/<class>/real|fake``);
- explicit folders: ``--real DIR`` and ``--fake DIR`` (each repeatable).

For evaluation, a folder that is not itself a set but whose sub-folders are (``val/stargan128``,
``val/cyclegan``, ...) yields one test set per sub-folder.

Label 0 is real, 1 is fake. Nothing here decodes images; unreadable files are found (and skipped,
with a count) by the loaders that decode them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from ganscan.data.discover import discover
from ganscan.data.formats import looks_like_image_name
from ganscan.errors import DataError

REAL_DIRS = ("0_real", "real")
FAKE_DIRS = ("1_fake", "fake")
LABEL_NAMES = {0: "real", 1: "fake"}


@dataclass
class LabelledSet:
    name: str
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)   # the folders the images came from

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def n_real(self) -> int:
        return sum(1 for y in self.labels if y == 0)

    @property
    def n_fake(self) -> int:
        return sum(1 for y in self.labels if y == 1)

    def extend(self, paths: list[str], label: int, source: str) -> None:
        self.paths.extend(paths)
        self.labels.extend([label] * len(paths))
        self.sources.append(source)

    def subset(self, idx, name: str | None = None) -> "LabelledSet":
        idx = list(idx)
        return LabelledSet(name or self.name, [self.paths[i] for i in idx], [self.labels[i] for i in idx],
                           list(self.sources))

    def fingerprint(self) -> str:
        """sha256 of the sorted (label, path) list: detects a dataset that changed under a resume."""
        h = hashlib.sha256()
        for p, y in sorted(zip(self.paths, self.labels)):
            h.update(f"{y}\t{os.path.abspath(p)}\n".encode())
        return h.hexdigest()

    def describe(self) -> str:
        return f"{len(self)} images ({self.n_real} real, {self.n_fake} fake)"


def list_images(folder: str) -> list[str]:
    """Image files under ``folder``, recursively, in a stable sorted order."""
    return [f.path for f in discover([folder], recursive=True) if looks_like_image_name(f.path)]


def _child(root: str, names: tuple[str, ...]) -> str | None:
    for n in names:
        p = os.path.join(root, n)
        if os.path.isdir(p):
            return p
    return None


def is_direct_set(root: str) -> bool:
    """``root`` holds 0_real/1_fake or real/fake itself."""
    return _child(root, REAL_DIRS) is not None or _child(root, FAKE_DIRS) is not None


def _subdirs(root: str) -> list[str]:
    try:
        with os.scandir(root) as it:
            return sorted(e.path for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


def _add_direct(out: LabelledSet, root: str, require_both: bool) -> None:
    for label, names in ((0, REAL_DIRS), (1, FAKE_DIRS)):
        d = _child(root, names)
        if d is None:
            continue  # a single-class set: training reports it with the totals, evaluation accepts it
        imgs = list_images(d)
        if not imgs and require_both:
            raise DataError(f"{d}: class folder holds no images",
                            hint="put images in it or remove the empty folder")
        out.extend(imgs, label, d)


def collect(root: str, require_nonempty_classes: bool = True) -> LabelledSet:
    """All labelled images under one root (direct, plain or per-class layout), merged."""
    if not os.path.isdir(root):
        raise DataError(f"data folder not found: {root}")
    name = os.path.basename(os.path.normpath(root)) or root
    out = LabelledSet(name)
    if is_direct_set(root):
        _add_direct(out, root, require_nonempty_classes)
        return out
    classes = [d for d in _subdirs(root) if is_direct_set(d)]
    if not classes:
        raise DataError(f"{root}: no 0_real/1_fake or real/fake folders found",
                        hint="expected ROOT/0_real + ROOT/1_fake, ROOT/<class>/0_real|1_fake, "
                             "ROOT/real + ROOT/fake, or pass --real DIR --fake DIR")
    for d in classes:
        _add_direct(out, d, require_nonempty_classes)
    return out


def training_set(data: tuple[str, ...] | list[str] = (), real: tuple[str, ...] | list[str] = (),
                 fake: tuple[str, ...] | list[str] = (), name: str = "train") -> LabelledSet:
    """Merge data roots and explicit --real/--fake folders into one labelled set; both classes required."""
    out = LabelledSet(name)
    for root in data:
        part = collect(root)
        out.paths += part.paths
        out.labels += part.labels
        out.sources += part.sources
    for label, dirs in ((0, real), (1, fake)):
        for d in dirs:
            if not os.path.isdir(d):
                raise DataError(f"{LABEL_NAMES[label]} folder not found: {d}")
            imgs = list_images(d)
            if not imgs:
                raise DataError(f"{d}: {LABEL_NAMES[label]} folder holds no images")
            out.extend(imgs, label, d)
    if not out.paths:
        raise DataError("no training images given", hint="pass a DATA folder or --real DIR --fake DIR")
    require_both_classes(out, "training data")
    return out


def require_both_classes(s: LabelledSet, what: str) -> None:
    if s.n_real == 0 or s.n_fake == 0:
        have, missing = ("fake", "real") if s.n_real == 0 else ("real", "fake")
        raise DataError(f"{what} is single-class: {len(s)} {have} images and no {missing} ones",
                        hint=f"a detector needs both classes; add {missing} images "
                             f"({'0_real' if missing == 'real' else '1_fake'}/ or --{missing} DIR)")


def stratified_split(s: LabelledSet, fraction: float, seed: int) -> tuple[LabelledSet, LabelledSet]:
    """(train, val): ``round(fraction * n)`` images of each class go to validation, chosen with ``seed``."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"--val-split must be between 0 and 1 (exclusive), got {fraction}")
    labels = np.asarray(s.labels)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0xA11])))
    val_idx: list[int] = []
    for c in (0, 1):
        idx = np.nonzero(labels == c)[0]
        n_val = int(round(fraction * idx.size))
        if n_val == 0:
            raise DataError(f"--val-split {fraction:g} leaves no {LABEL_NAMES[c]} images for validation "
                            f"(of {idx.size})", hint="use a larger --val-split or pass --val DIR")
        if n_val >= idx.size:
            raise DataError(f"--val-split {fraction:g} leaves no {LABEL_NAMES[c]} images to train on "
                            f"(of {idx.size})", hint="use a smaller --val-split or pass --val DIR")
        val_idx += rng.permutation(idx)[:n_val].tolist()
    val_set = set(val_idx)
    train_idx = [i for i in range(len(s)) if i not in val_set]
    return s.subset(train_idx, s.name), s.subset(sorted(val_idx), "val")


def test_sets(root: str) -> list[LabelledSet]:
    """One set for a folder that is a set (direct layout), else one per sub-folder that is one (direct or
    per-class). Missing or empty class folders make a single-class set (reported as such)."""
    if not os.path.isdir(root):
        raise DataError(f"test data folder not found: {root}")
    if is_direct_set(root):
        sets = [collect(root, require_nonempty_classes=False)]
    else:
        sets = []
        for d in _subdirs(root):
            if is_direct_set(d) or any(is_direct_set(c) for c in _subdirs(d)):
                sets.append(collect(d, require_nonempty_classes=False))
        if not sets:
            raise DataError(f"{root}: no test sets found",
                            hint="expected 0_real/1_fake (or real/fake) folders in it or in its sub-folders")
    for s in sets:
        if not s.paths:
            raise DataError(f"{root}: test set {s.name!r} holds no images")
    return sets


def unique_names(sets: list[LabelledSet]) -> None:
    """Make set names unique in place (``cyclegan``, ``cyclegan-2``)."""
    seen: dict[str, int] = {}
    for s in sets:
        n = seen.get(s.name, 0)
        seen[s.name] = n + 1
        if n:
            s.name = f"{s.name}-{n + 1}"
