"""The detector training loop: recipes, data loading, validation, checkpoints, exact resume, DDP.

A run directory holds:

- ``best.safetensors``: the best model so far (by the recipe's monitored validation metric), a normal
  detector checkpoint (``ganscan scan --model RUN/best.safetensors``) with the calibrated threshold;
- ``last.safetensors``: the model after the latest epoch, same format;
- ``resume.safetensors``: everything needed to continue exactly (model, optimiser, scheduler, epoch and
  step, RNG states, log so far);
- ``log.csv`` / ``log.json``: one row per validation (per epoch, and every ``val_every`` steps);
- ``loss.png`` / ``accuracy.png``: the training curves.

Determinism: the order of samples comes from a generator seeded by (seed, epoch), each sample's
augmentation from one seeded by (seed, epoch, index) (ganscan.data.augment), and the DataLoader gets its
own generator, so neither the number of workers nor a resume changes what the model sees. On the CPU,
with the same number of threads, a run that is killed and resumed ends bit-for-bit where an
uninterrupted run ends.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ganscan.data.augment import AugmentConfig, degrade_for_validation, sample_rng, train_view
from ganscan.data.datasets import LabelledSet, require_both_classes, stratified_split, test_sets, training_set
from ganscan.data.decode import DEFAULT_MAX_PIXELS, DecodeError, load_image
from ganscan.detectors.preprocess import normalize, views_uint8
from ganscan.detectors.registry import DetectorConfig, build_detector, classifier_prefixes, get_config
from ganscan.detectors import metrics as M
from ganscan.core.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from ganscan.core.device import Precision, choose_precision, configure_threads, resolve_device, worker_init
from ganscan.detectors.inference import forward_logits, sigmoid
from ganscan.errors import CheckpointError, DataError, GanscanError

# --- recipes ----------------------------------------------------------------------------------------

#: Every option a run records; a recipe sets some, the command line overrides any.
DEFAULTS: dict = {
    "arch": "resnet50",
    "epochs": 100,
    "batch_size": 64,
    "optimizer": "adam",          # adam | sgd
    "lr": 1e-4,                   # base learning rate (backbone and head)
    "backbone_lr": None,          # overrides lr for the backbone (fine-tuning: lower)
    "head_lr": None,              # overrides lr for the classifier head
    "momentum": 0.9,              # SGD momentum
    "betas": [0.9, 0.999],        # Adam betas
    "weight_decay": 0.0,          # L2 on the backbone
    "head_weight_decay": None,    # L2 on the head (default: weight_decay)
    "crop": None,                 # training crop and validation centre crop (default: the arch's input)
    "resize": None,               # shorter side to N before augmenting (off: resampling erases traces)
    "flip_prob": 0.5,
    "blur_prob": 0.0,
    "blur_sigma": [0.0, 3.0],
    "jpeg_prob": 0.0,
    "jpeg_quality": [30, 100],
    "rescale_prob": 0.0,          # random down-scaling of both classes (robustness to resized uploads)
    "rescale_range": [0.5, 1.0],  # its scale factor range
    "schedule": "plateau",        # plateau: LR x lr_factor when `monitor` stalls `patience` epochs, stop below
                                  # min_lr | early_stop: stop when it stalls | none
    "monitor": "val_bacc",        # val_bacc (accuracy balanced over the classes: equal to the accuracy on a
                                  # balanced set such as CNNDetection's) | val_acc | val_loss | val_ap | val_auc
    "patience": 5,
    "lr_factor": 0.1,
    "min_lr": 1e-6,
    "min_delta": 0.001,
    "val_split": 0.1,             # used when no --val set is given
    "val_every": 0,               # also validate every N training steps (0: per epoch only)
    "balance": "weight",          # weight (pos_weight = n_real/n_fake) | sample (class-balanced draws) | none
    "threshold_rule": "eer",      # eer | fpr:X | fixed:T
    "seed": 0,
    "freeze_backbone": False,
    "init": None,                 # a detector checkpoint to start from (fine-tuning)
    "pretrained": None,           # a local ImageNet state dict for the backbone
    "max_pixels": DEFAULT_MAX_PIXELS,
}

RECIPES: dict[str, dict] = {
    # Wang et al. 2020 (CNNDetection, seed 001): ImageNet ResNet-50, Adam 1e-4, batch 64, blur+JPEG at
    # p 0.5 (the paper's other model: p 0.1), 224 crops; early stop on val accuracy with patience 5 ->
    # LR / 10, stop below 1e-6. Accuracy is balanced over the classes (CNNDetection's val set is balanced).
    "wang2020": {"arch": "resnet50", "epochs": 100, "batch_size": 64, "optimizer": "adam", "lr": 1e-4,
                 "crop": 224, "flip_prob": 0.5, "blur_prob": 0.5, "jpeg_prob": 0.5, "schedule": "plateau",
                 "monitor": "val_bacc", "patience": 5, "lr_factor": 0.1, "min_lr": 1e-6, "val_split": 0.1},
    # Khan (seed 000): from scratch, SGD momentum 0.9, body lr 1e-3 / L2 1e-3, last layer lr 5e-5 / L2 1e-5,
    # random horizontal flips, early stopping on validation loss, 30 % validation split.
    "khan": {"arch": "inception_resnet_v2", "epochs": 50, "batch_size": 32, "optimizer": "sgd", "lr": 1e-3,
             "momentum": 0.9, "weight_decay": 1e-3, "head_lr": 5e-5, "head_weight_decay": 1e-5,
             "flip_prob": 0.5, "blur_prob": 0.0, "jpeg_prob": 0.0, "schedule": "early_stop",
             "monitor": "val_loss", "patience": 5, "val_split": 0.3},
    # Sanna & Zagni, Trieste (seed 002): ResNet-18, Adam, batch 64, 20 epochs, LR / 10 when val accuracy
    # stalls (by 0.1 %) for 5 epochs, stop at 1e-6; 224 crop, JPEG p 0.5, flip, blur sigma U[0,3] p 0.5.
    "trieste": {"arch": "resnet18", "epochs": 20, "batch_size": 64, "optimizer": "adam", "lr": 1e-4,
                "crop": 224, "flip_prob": 0.5, "blur_prob": 0.5, "jpeg_prob": 0.5, "schedule": "plateau",
                "monitor": "val_bacc", "patience": 5, "lr_factor": 0.1, "min_lr": 1e-6, "min_delta": 0.001,
                "val_split": 0.1},
}

MONITORS = {"val_bacc": "max", "val_acc": "max", "val_loss": "min", "val_ap": "max", "val_auc": "max"}


def resolve_options(recipe: str | None, overrides: dict | None = None) -> dict:
    """DEFAULTS <- RECIPES[recipe] <- overrides (None values ignored); checked."""
    if recipe is not None and recipe not in RECIPES:
        raise GanscanError(f"unknown recipe {recipe!r}", hint="use one of " + ", ".join(RECIPES))
    opts = dict(DEFAULTS)
    if recipe:
        opts.update(RECIPES[recipe])
    unknown = set(overrides or {}) - set(DEFAULTS)
    if unknown:
        raise GanscanError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    for k, v in (overrides or {}).items():
        if v is not None:
            opts[k] = list(v) if isinstance(v, tuple) else v
    _check_options(opts)
    return opts


def _check_options(o: dict) -> None:
    def bad(msg, hint=None):
        raise GanscanError(msg, hint=hint)

    get_config(o["arch"])  # unknown arch -> clear error with suggestion
    if o["optimizer"] not in ("adam", "sgd"):
        bad(f"unknown optimizer {o['optimizer']!r}", "use adam or sgd")
    if o["schedule"] not in ("plateau", "early_stop", "none"):
        bad(f"unknown schedule {o['schedule']!r}", "use plateau, early_stop or none")
    if o["monitor"] not in MONITORS:
        bad(f"unknown monitor {o['monitor']!r}", "use " + ", ".join(MONITORS))
    if o["balance"] not in ("weight", "sample", "none"):
        bad(f"unknown balance {o['balance']!r}", "use weight, sample or none")
    try:
        M.parse_rule(o["threshold_rule"])
    except ValueError as exc:
        bad(str(exc))
    if int(o["epochs"]) < 1 or int(o["batch_size"]) < 1:
        bad("epochs and batch size must be at least 1")
    for k in ("lr", "backbone_lr", "head_lr"):
        if o[k] is not None and not float(o[k]) > 0:
            bad(f"{k.replace('_', '-')} must be positive")
    try:
        augment_config(o, get_config(o["arch"]))
    except ValueError as exc:
        bad(str(exc))


def augment_config(o: dict, cfg: DetectorConfig) -> AugmentConfig:
    return AugmentConfig(crop=int(o["crop"] or cfg.input_size), resize=o["resize"], flip_prob=o["flip_prob"],
                         blur_prob=o["blur_prob"], blur_sigma=tuple(o["blur_sigma"]), jpeg_prob=o["jpeg_prob"],
                         jpeg_quality=tuple(o["jpeg_quality"]), rescale_prob=o["rescale_prob"],
                         rescale_range=tuple(o["rescale_range"]))


# --- data -------------------------------------------------------------------------------------------

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


def _collate_list(items):
    return items


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
            from torch.utils.data import DistributedSampler

            ds = DistributedSampler(range(n), num_replicas=1, rank=0, shuffle=True, seed=self.seed)
            ds.set_epoch(self.epoch)
            idx = list(ds)
        idx += idx[: self.per_rank * self.world - n]  # pad so every rank gets the same count
        return idx[self.rank::self.world]

    def __iter__(self):
        for i in self.indices()[self.skip:]:
            yield (i, self.epoch)

    def __len__(self) -> int:
        return self.per_rank - self.skip


# --- state packing (optimizer state etc. into safetensors + JSON) -----------------------------------

def pack(obj, prefix: str, tensors: dict):
    if torch.is_tensor(obj):
        tensors[prefix] = obj
        return {"__t": prefix}
    if isinstance(obj, np.ndarray):
        return {"__np": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        return {"__d": [[k, pack(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__l" if isinstance(obj, list) else "__tu": [pack(v, f"{prefix}.{i}", tensors)
                                                             for i, v in enumerate(obj)]}
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    return obj


def unpack(obj, tensors: dict):
    if isinstance(obj, dict):
        if "__t" in obj:
            return tensors[obj["__t"]]
        if "__np" in obj:
            return np.asarray(obj["__np"], dtype=obj["dtype"])
        if "__d" in obj:
            return {k: unpack(v, tensors) for k, v in obj["__d"]}
        if "__l" in obj:
            return [unpack(v, tensors) for v in obj["__l"]]
        if "__tu" in obj:
            return tuple(unpack(v, tensors) for v in obj["__tu"])
    return obj


# --- schedule ---------------------------------------------------------------------------------------

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

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta

    def step(self, value: float | None, max_base_lr: float) -> str | None:
        """Feed one epoch's metric; returns an event message (LR drop or stop) or None."""
        if self.kind == "none" or value is None:
            return None
        if self.improved(value):
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


# --- model helpers ----------------------------------------------------------------------------------

def split_params(model: nn.Module, arch: str) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(backbone, head) parameters; the head is the registry's classifier prefixes."""
    prefixes = classifier_prefixes(arch)
    body, head = [], []
    for name, p in model.named_parameters():
        (head if prefixes and name.startswith(prefixes) else body).append(p)
    if not head:  # no declared head: the last parameterised module
        last = [n for n, _ in model.named_parameters()][-2:]
        body = [p for n, p in model.named_parameters() if n not in last]
        head = [p for n, p in model.named_parameters() if n in last]
    return body, head


def head_modules(model: nn.Module, arch: str) -> set[str]:
    prefixes = classifier_prefixes(arch)
    return {n for n, _ in model.named_modules() if prefixes and (n + ".").startswith(prefixes)}


def set_train_mode(model: nn.Module, arch: str, frozen_backbone: bool) -> None:
    """train(); with a frozen backbone its BatchNorm layers stay in eval mode (running stats fixed)."""
    model.train()
    if frozen_backbone:
        heads = head_modules(model, arch)
        for name, m in model.named_modules():
            if name not in heads and isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def load_init(model: nn.Module, spec: str, arch: str) -> dict:
    """Initialise from a detector checkpoint (shipped name or file) of the same architecture."""
    from ganscan.detectors.load import resolve_detector

    path = resolve_detector(spec)
    state, meta = load_checkpoint(path)
    ck_arch = meta.get("arch")
    if ck_arch and ck_arch != arch:
        raise CheckpointError(f"{path}: a {ck_arch} checkpoint cannot initialise a {arch} model",
                              hint=f"pass --arch {ck_arch}, or leave --arch out when using --init")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit architecture {arch} ({str(exc).splitlines()[0][:160]})",
                              hint="is it a checkpoint of another architecture?") from None
    return meta


def checkpoint_arch(spec: str) -> str | None:
    """The architecture recorded in a detector checkpoint (for --init without --arch)."""
    from ganscan.detectors.load import resolve_detector
    from ganscan.core.checkpoint import read_metadata

    return read_metadata(resolve_detector(spec)).get("arch")


# --- the run ----------------------------------------------------------------------------------------

@dataclass
class DataSpec:
    data: list[str] = field(default_factory=list)
    real: list[str] = field(default_factory=list)
    fake: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: [os.path.abspath(p) for p in getattr(self, k)] for k in ("data", "real", "fake", "val")}


@dataclass
class Runtime:
    device: str = "auto"
    precision: str = "auto"
    workers: int | None = None
    threads: int | None = None
    channels_last: bool = True
    name: str | None = None
    stop_after_steps: int | None = None   # tests: simulate a kill (no save) after this many steps
    checkpoint_every: int = 0             # also save the resume state every N steps


class SimulatedKill(Exception):
    pass


@dataclass
class TrainResult:
    out_dir: Path
    best_path: Path
    last_path: Path
    rows: list[dict]
    best: dict
    threshold: float
    threshold_rule: str
    epochs_run: int
    skipped: int
    stop_reason: str


class Trainer:
    def __init__(self, spec: DataSpec, options: dict, out_dir: str | os.PathLike, runtime: Runtime | None = None,
                 recipe: str | None = None, resume: bool = False, force: bool = False,
                 log: Callable[[str], None] | None = None):
        self.spec, self.o, self.rt = spec, options, runtime or Runtime()
        self.recipe = recipe
        self.out = Path(out_dir)
        self.resume, self.force = resume, force
        self._log = log or (lambda msg: None)
        self.rank, self.world, self.local_rank = 0, 1, 0
        self.ddp = False

    # -- helpers
    def log(self, msg: str) -> None:
        if self.rank == 0:
            self._log(msg)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _setup_distributed(self) -> None:
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return
        import torch.distributed as dist

        self.rank, self.world = int(os.environ["RANK"]), world
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        if not dist.is_initialized():
            backend = "nccl" if (self.device.type == "cuda" and dist.is_nccl_available()) else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group(backend=backend)
        self.ddp = True

    def _gather(self, obj):
        if not self.ddp:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def _barrier(self):
        if self.ddp:
            import torch.distributed as dist

            dist.barrier()

    # -- setup
    def _prepare_data(self) -> None:
        o = self.o
        self.train_set = training_set(self.spec.data, self.spec.real, self.spec.fake)
        if self.spec.val:
            val = LabelledSet("val")
            for root in self.spec.val:
                for s in test_sets(root):
                    val.paths += s.paths
                    val.labels += s.labels
            require_both_classes(val, "validation data")
            self.val_set = val
        else:
            self.train_set, self.val_set = stratified_split(self.train_set, float(o["val_split"]), int(o["seed"]))
        self.per_rank_batch = int(o["batch_size"]) // self.world
        if int(o["batch_size"]) % self.world:
            raise GanscanError(f"batch size {o['batch_size']} is not divisible by the {self.world} processes")
        per_rank = math.ceil(len(self.train_set) / self.world)
        self.steps_per_epoch = per_rank // self.per_rank_batch
        if self.steps_per_epoch == 0:
            raise DataError(f"only {len(self.train_set)} training images for a batch size of {o['batch_size']}",
                            hint="lower --batch-size or add images")
        if self.per_rank_batch < 2:
            raise GanscanError("a batch of 1 image per process cannot train BatchNorm layers",
                               hint="raise --batch-size")

    def _check_format(self) -> None:
        """The format shortcut: how well could format alone separate the training classes? (logged, stored)"""
        self.format_check = None
        if not self.is_main or self.resume:
            return
        from ganscan.data.shortcut import describe, format_separability

        self.format_check = format_separability(self.train_set, max_files=20000)
        self.log(describe(self.format_check))
        if self.format_check["balanced_accuracy"] is not None and self.format_check["balanced_accuracy"] >= 0.75:
            self.log("  most skewed: " + "; ".join(f"{t['signature']} real {t['real']} fake {t['fake']}"
                                                  for t in self.format_check["top"][:3]))
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.out / "format-check.json", json.dumps(self.format_check, indent=2).encode())

    def _build_model(self) -> None:
        o = self.o
        arch = o["arch"]
        torch.manual_seed(int(o["seed"]))
        self.cfg = get_config(arch)
        self.aug = augment_config(o, self.cfg)
        self.cfg = replace(self.cfg, input_size=self.aug.crop)  # validation, scan and evaluate: the arch's policy
        model = build_detector(arch, pretrained=o["pretrained"])
        self.init_meta = load_init(model, o["init"], arch) if o["init"] else None
        self.model = model
        body, head = split_params(model, arch)
        if o["freeze_backbone"]:
            for p in body:
                p.requires_grad_(False)
        lr = float(o["lr"])
        wd = float(o["weight_decay"])
        groups = []
        if not o["freeze_backbone"]:
            groups.append({"params": body, "lr": float(o["backbone_lr"] or lr), "weight_decay": wd, "name": "backbone"})
        groups.append({"params": head, "lr": float(o["head_lr"] or lr),
                       "weight_decay": float(o["head_weight_decay"] if o["head_weight_decay"] is not None else wd),
                       "name": "head"})
        self.base_lrs = [g["lr"] for g in groups]
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if o["optimizer"] == "adam":
            self.opt = torch.optim.Adam(groups, betas=tuple(o["betas"]))
        else:
            self.opt = torch.optim.SGD(groups, momentum=float(o["momentum"]))
        self.schedule = Schedule(o["schedule"], MONITORS[o["monitor"]], o["patience"], o["lr_factor"], o["min_lr"],
                                 o["min_delta"])
        fp16 = self.precision.autocast_dtype is torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        n_real, n_fake = self.train_set.n_real, self.train_set.n_fake
        pos_weight = n_real / n_fake if o["balance"] == "weight" else 1.0
        self.pos_weight = torch.tensor([pos_weight], dtype=torch.float32, device=self.device)
        self.net = model
        if self.ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.net = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # -- state
    def _fresh_state(self) -> dict:
        return {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "rows": [], "best": None, "best_value": None,
                "accum": self._zero_accum(), "skipped": [], "stop_reason": "", "images_seen": 0}

    @staticmethod
    def _zero_accum() -> dict:
        return {"loss_sum": 0.0, "n": 0, "correct_real": 0, "n_real": 0, "correct_fake": 0, "n_fake": 0}

    def _train_meta(self) -> dict:
        return {"data": self.spec.as_dict(), "recipe": self.recipe, "options": self.o,
                "data_fingerprint": self.train_set.fingerprint(), "val_fingerprint": self.val_set.fingerprint()}

    def _save_resume(self) -> None:
        if not self.is_main:
            return
        tensors: dict = {}
        model_state = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        skeleton = {
            "optimizer": pack(self.opt.state_dict(), "opt", tensors),
            "scaler": pack(self.scaler.state_dict(), "scaler", tensors),
            "rng": {"torch": pack(torch.get_rng_state(), "rng.torch", tensors),
                    "cuda": pack(torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [], "rng.cuda",
                                 tensors),
                    "numpy": pack(np.random.get_state(), "rng.numpy", tensors),
                    "python": pack(random.getstate(), "rng.python", tensors)},
        }
        meta = {"kind": "train-state", "arch": self.o["arch"], "training": self._train_meta(),
                "schedule": self.schedule.state_dict(), "state": self.state, "skeleton": skeleton,
                "world_size": self.world}
        save_checkpoint(self.out / "resume.safetensors", {**model_state, **tensors}, meta)

    def _load_resume(self) -> None:
        path = self.out / "resume.safetensors"
        tensors, meta = load_checkpoint(path, verify=False)
        if meta.get("kind") != "train-state":
            raise CheckpointError(f"{path}: not a ganscan training state")
        t = meta["training"]
        if t["data_fingerprint"] != self.train_set.fingerprint() or t["val_fingerprint"] != self.val_set.fingerprint():
            raise DataError(f"{self.out}: the training or validation images changed since the run started",
                            hint="an exact resume needs the same data; start a new run with -o NEWDIR")
        if meta.get("world_size", 1) != self.world:
            raise GanscanError(f"the run used {meta.get('world_size', 1)} processes; resume it with the same number")
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model_state, strict=True)
        sk = meta["skeleton"]
        self.opt.load_state_dict(unpack(sk["optimizer"], tensors))
        self.scaler.load_state_dict(unpack(sk["scaler"], tensors))
        self.schedule.load_state_dict(meta["schedule"])
        self._apply_lr()
        rng = sk["rng"]
        torch.set_rng_state(unpack(rng["torch"], tensors))
        cuda = unpack(rng["cuda"], tensors)
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state(unpack(rng["numpy"], tensors))
        py = unpack(rng["python"], tensors)
        random.setstate((py[0], tuple(py[1]), py[2]))
        self.state = meta["state"]

    def _apply_lr(self) -> None:
        for g, base in zip(self.opt.param_groups, self.base_lrs):
            g["lr"] = base * self.schedule.lr_scale

    # -- checkpoints
    def _detector_meta(self, kind: str, row: dict, calib: M.Calibration) -> dict:
        name = self.rt.name or self.out.name
        return {
            "kind": "detector", "arch": self.o["arch"], "name": f"{name}" if kind == "best" else f"{name}-last",
            "threshold": calib.threshold, "threshold_rule": calib.rule,
            "threshold_calibration": calib.as_dict(),
            "preprocessing": self.cfg.preprocessing(),
            "training": {"data": self.spec.as_dict(), "recipe": self.recipe, "options": self.o,
                         "epochs": row.get("epoch"), "step": row.get("step"), "seed": self.o["seed"],
                         "n_train": {"real": self.train_set.n_real, "fake": self.train_set.n_fake},
                         "n_val": {"real": self.val_set.n_real, "fake": self.val_set.n_fake},
                         "init": self.o["init"], "skipped_unreadable": len(self.state["skipped"]),
                         "pretrained_weights": getattr(self.model, "ganscan_pretrained", None)},
            "metrics": {k: row.get(k) for k in ("val_loss", "val_acc", "val_bacc", "val_real_acc", "val_fake_acc", "val_ap",
                                                  "val_auc", "train_loss", "train_acc")},
        }

    def _save_detector(self, kind: str, row: dict, calib: M.Calibration) -> Path:
        path = self.out / f"{kind}.safetensors"
        if self.is_main:
            save_checkpoint(path, self.model.state_dict(), self._detector_meta(kind, row, calib))
        return path

    # -- validation
    def _val_views(self):
        """(index, views uint8) for this rank's share of the validation set, cached in memory when small."""
        if self._val_cache is not None:
            return self._val_cache
        mine = list(range(self.rank, len(self.val_set), self.world))
        ds = ValImages(self.val_set, self.aug, self.cfg, int(self.o["seed"]), int(self.o["max_pixels"]))
        loader = self._loader(torch.utils.data.Subset(ds, mine), batch_size=16, collate=_collate_list)
        out, size = [], 0
        for items in loader:
            for i, views, err in items:
                if views is None:
                    self._val_unreadable.add(self.val_set.paths[i])
                    continue
                out.append((i, views))
                size += views.nbytes
        if size < 1 << 30:
            self._val_cache = out
        return out

    def _validate(self) -> dict:
        t0 = time.perf_counter()
        try:
            return self._validate_inner()
        finally:
            self._val_time += time.perf_counter() - t0

    def _validate_inner(self) -> dict:
        model = self.model
        model.eval()
        idx, logits = [], []
        batch: list = []

        def flush():
            if batch:
                tensors = [normalize(v, self.cfg) for _, v in batch]
                logits.extend(forward_logits(model, tensors, self.precision, max_batch=self.per_rank_batch))
                idx.extend(i for i, _ in batch)
                batch.clear()

        for i, views in self._val_views():
            batch.append((i, views))
            if len(batch) >= self.per_rank_batch:
                flush()
        flush()
        set_train_mode(model, self.o["arch"], self.o["freeze_backbone"])
        parts = self._gather((idx, logits))
        pairs = sorted((i, l) for ids, ls in parts for i, l in zip(ids, ls))
        labels = np.array([self.val_set.labels[i] for i, _ in pairs])
        lg = np.array([l for _, l in pairs], dtype=np.float64)
        scores = np.array([sigmoid(float(v)) for v in lg])
        acc = M.accuracies(labels, scores, 0.5)
        bacc = None if acc["real_acc"] is None or acc["fake_acc"] is None else (acc["real_acc"] + acc["fake_acc"]) / 2
        return {"val_loss": M.balanced_loss(lg, labels), "val_acc": acc["accuracy"], "val_bacc": bacc,
                "val_real_acc": acc["real_acc"], "val_fake_acc": acc["fake_acc"],
                "val_ap": M.average_precision(labels, scores), "val_auc": M.roc_auc(labels, scores),
                "_labels": labels, "_scores": scores}

    def _record(self, kind: str, val: dict) -> dict:
        a = self.state["accum"]
        st = self.state
        row = {"kind": kind, "epoch": st["epoch"] + (1 if kind == "epoch" else 0), "step": st["global_step"],
               "progress": st["epoch"] + st["step_in_epoch"] / self.steps_per_epoch if kind == "step"
               else st["epoch"] + 1,
               "lr": max(g["lr"] for g in self.opt.param_groups),
               "train_loss": a["loss_sum"] / a["n"] if a["n"] else None,
               "train_acc": (a["correct_real"] + a["correct_fake"]) / a["n"] if a["n"] else None,
               "train_real_acc": a["correct_real"] / a["n_real"] if a["n_real"] else None,
               "train_fake_acc": a["correct_fake"] / a["n_fake"] if a["n_fake"] else None}
        row.update({k: v for k, v in val.items() if not k.startswith("_")})
        row["seconds"] = round(time.perf_counter() - self._t0 + st.get("seconds_before", 0.0), 3)
        n, dt = self._epoch_rate
        row["train_images_per_s"] = round(n / dt, 2) if dt > 0 else None
        st["rows"].append(row)
        monitor = row.get(self.o["monitor"])
        better = monitor is not None and (
            st["best_value"] is None
            or (monitor > st["best_value"] if MONITORS[self.o["monitor"]] == "max" else monitor < st["best_value"]))
        if better:
            st["best_value"] = monitor
            calib = self._calibrate(val)
            st["best"] = {**row, "threshold": calib.threshold, "threshold_rule": calib.rule,
                          "calibration": calib.as_dict()}
            self._save_detector("best", row, calib)
        return row

    def _calibrate(self, val: dict) -> M.Calibration:
        try:
            return M.calibrate_threshold(val["_labels"], val["_scores"], self.o["threshold_rule"])
        except ValueError as exc:
            raise GanscanError(f"threshold calibration failed: {exc}") from None

    def _write_logs(self, plots: bool = False) -> None:
        """log.csv and log.json; the curve PNGs too when ``plots`` (each epoch of a long run, and at the end)."""
        if not self.is_main:
            return
        rows = self.state["rows"]
        cols = ["kind", "epoch", "step", "progress", "lr", "train_loss", "train_acc", "train_real_acc",
                "train_fake_acc", "val_loss", "val_acc", "val_bacc", "val_real_acc", "val_fake_acc", "val_ap", "val_auc",
                "seconds",
                "train_images_per_s"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
        atomic_write_bytes(self.out / "log.csv", buf.getvalue().encode())
        doc = {"recipe": self.recipe, "options": self.o, "data": self.spec.as_dict(),
               "n_train": {"real": self.train_set.n_real, "fake": self.train_set.n_fake},
               "n_val": {"real": self.val_set.n_real, "fake": self.val_set.n_fake},
               "skipped_unreadable": sorted(self.state["skipped"]), "best": self.state["best"],
               "stop_reason": self.state["stop_reason"], "rows": rows}
        atomic_write_bytes(self.out / "log.json", json.dumps(doc, indent=1, default=str).encode())
        if plots:
            from ganscan.core.plots import training_curves

            training_curves(rows, self.out)

    # -- loader
    def _loader(self, dataset, batch_size: int, collate, sampler=None, drop_last: bool = False) -> DataLoader:
        workers = self.workers
        kwargs = {}
        if workers > 0:
            kwargs.update(worker_init_fn=worker_init, prefetch_factor=4, persistent_workers=False,
                          multiprocessing_context="fork" if os.name == "posix" else None)
        g = torch.Generator()
        g.manual_seed(int(self.o["seed"]))
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                          pin_memory=self.device.type == "cuda", drop_last=drop_last, generator=g, **kwargs)

    # -- main
    def run(self) -> TrainResult:
        self.device = resolve_device(self.rt.device)
        self._setup_distributed()
        if self.ddp and self.device.type == "cuda":
            self.device = torch.device("cuda", self.local_rank)
        try:
            return self._run()
        finally:
            if self.ddp:
                import torch.distributed as dist

                if dist.is_initialized():
                    dist.destroy_process_group()

    def _run(self) -> TrainResult:
        o = self.o
        if self.device.type == "cpu":
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            configure_threads(self.rt.threads or max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", self.world))))
            prec = self.rt.precision if self.rt.precision != "auto" else "fp32"
        else:
            torch.backends.cudnn.benchmark = True
            prec = self.rt.precision
        self.precision = choose_precision(self.device, prec)
        self.channels_last = self.rt.channels_last
        self.precision = Precision(self.device, self.precision.autocast_dtype, self.channels_last)
        if self.rt.workers is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
            self.workers = max(1, min(8, cores // max(1, self.world) // (1 if self.device.type == "cuda" else 2)))
        else:
            self.workers = int(self.rt.workers)

        resume_path = self.out / "resume.safetensors"
        if self.is_main:
            if self.resume and not resume_path.exists():
                raise GanscanError(f"nothing to resume in {self.out}", hint="start the run without --resume")
            if not self.resume and resume_path.exists() and not self.force:
                raise GanscanError(f"{self.out} already holds a training run",
                                   hint="pass --resume to continue it, --force to start over, or another -o")
            self.out.mkdir(parents=True, exist_ok=True)
        self._barrier()

        random.seed(int(o["seed"]))
        np.random.seed(int(o["seed"]) % (2**32))
        self._prepare_data()
        self._check_format()
        self._build_model()
        self.state = self._fresh_state()
        if self.resume:
            self._load_resume()
        self._val_cache = None
        self._val_unreadable: set[str] = set()
        self._t0 = time.perf_counter()
        self._val_time, self._epoch_rate, self._t_epoch = 0.0, (0, 0.0), self._t0
        self.state.setdefault("seconds_before", 0.0)
        seconds_before = self.state["rows"][-1]["seconds"] if self.state["rows"] else 0.0
        self.state["seconds_before"] = seconds_before
        self.log(f"training {o['arch']} on {self.train_set.describe()}, validating on {self.val_set.describe()}; "
                 f"{self.steps_per_epoch} steps of {o['batch_size']} per epoch on {self.device.type}"
                 + (f" x{self.world} processes" if self.ddp else "") + f" ({self.precision.name})"
                 + (f"; resuming at epoch {self.state['epoch'] + 1} step {self.state['step_in_epoch']}"
                    if self.resume else ""))
        if self.resume and (self.state["epoch"] >= int(o["epochs"]) or self.schedule.stopped):
            self.log(f"the run is already complete ({self.state['epoch']} epochs"
                     + (f", {self.schedule.reason}" if self.schedule.stopped else "") + ")"
                     + ("" if self.schedule.stopped else "; pass a larger --epochs to continue it"))
        sampler = EpochSampler(self.train_set.labels, int(o["seed"]), self.rank, self.world, o["balance"])
        dataset = TrainImages(self.train_set, self.aug, int(o["seed"]), int(o["max_pixels"]))
        set_train_mode(self.model, o["arch"], o["freeze_backbone"])
        self._apply_lr()
        crit_weight = self.pos_weight
        st = self.state
        from ganscan.console import Progress

        while st["epoch"] < int(o["epochs"]) and not self.schedule.stopped:
            epoch = st["epoch"]
            sampler.set_epoch(epoch, skip=st["step_in_epoch"] * self.per_rank_batch)
            loader = self._loader(dataset, self.per_rank_batch, collate_train, sampler=sampler, drop_last=True)
            remaining = self.steps_per_epoch - st["step_in_epoch"]
            t_epoch, n_epoch = time.perf_counter(), 0
            self._t_epoch, self._val_time, self._epoch_rate = t_epoch, 0.0, (0, 0.0)
            with Progress(f"epoch {epoch + 1}/{o['epochs']}", total=self.steps_per_epoch,
                          fields=("loss", "acc", "img/s")) if self.is_main else _NoProgress() as bar:
                bar.update(advance=st["step_in_epoch"])
                for step_i, (x, y, bad) in enumerate(loader):
                    if step_i >= remaining:
                        break
                    for path, _reason in bad:
                        if path not in st["skipped"]:
                            st["skipped"].append(path)
                    loss, logits = self._train_step(x, y, crit_weight)
                    self._accumulate(loss, logits, y)
                    st["step_in_epoch"] += 1
                    st["global_step"] += 1
                    n_epoch += x.shape[0] * self.world
                    self._epoch_rate = (n_epoch, time.perf_counter() - t_epoch - self._val_time)
                    a = st["accum"]
                    bar.update(advance=1, loss=a["loss_sum"] / a["n"],
                               acc=(a["correct_real"] + a["correct_fake"]) / a["n"],
                               **{"img/s": n_epoch / max(1e-9, time.perf_counter() - t_epoch)})
                    if self.rt.stop_after_steps and st["global_step"] >= self.rt.stop_after_steps:
                        raise SimulatedKill(f"stopped after {st['global_step']} steps")
                    last_step = st["step_in_epoch"] == self.steps_per_epoch
                    if o["val_every"] and st["global_step"] % int(o["val_every"]) == 0 and not last_step:
                        row = self._record("step", self._validate())
                        self.log(self._describe(row))
                        self._save_resume()
                        self._write_logs()
                    elif self.rt.checkpoint_every and st["global_step"] % self.rt.checkpoint_every == 0 \
                            and not last_step:
                        self._save_resume()
            self._end_epoch()
        if self.schedule.stopped:
            st["stop_reason"] = self.schedule.reason
        else:
            st["stop_reason"] = f"reached {o['epochs']} epochs"
        self._save_resume()
        self._write_logs(plots=True)
        self._barrier()
        best = st["best"] or {}
        if self._val_unreadable:
            self.log(f"warning: {len(self._val_unreadable)} unreadable validation images were left out")
        return TrainResult(out_dir=self.out, best_path=self.out / "best.safetensors",
                           last_path=self.out / "last.safetensors", rows=st["rows"], best=best,
                           threshold=best.get("threshold", 0.5), threshold_rule=best.get("threshold_rule", ""),
                           epochs_run=st["epoch"], skipped=len(st["skipped"]), stop_reason=st["stop_reason"])

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor):
        dev = self.device
        x = x.to(dev, non_blocking=True).permute(0, 3, 1, 2).float()  # NHWC uint8 -> NCHW view
        mean = torch.tensor(self.cfg.mean, device=dev).view(1, 3, 1, 1)
        std = torch.tensor(self.cfg.std, device=dev).view(1, 3, 1, 1)
        x = x.div_(255.0).sub_(mean).div_(std)
        x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()
        y = y.to(dev, non_blocking=True)
        with self.precision.autocast():
            logits = self.net(x).reshape(-1)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=pos_weight)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss.detach(), logits.detach().float()

    def _accumulate(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        y = y.to(logits.device)
        pred = logits >= 0
        real, fake = y == 0, y == 1
        vals = torch.tensor([float(loss) * y.numel(), y.numel(), int((~pred & real).sum()), int(real.sum()),
                             int((pred & fake).sum()), int(fake.sum())], dtype=torch.float64)
        if self.ddp:
            import torch.distributed as dist

            dist.all_reduce(vals)
        a = self.state["accum"]
        a["loss_sum"] += float(vals[0])
        for k, v in zip(("n", "correct_real", "n_real", "correct_fake", "n_fake"), vals[1:].tolist()):
            a[k] += int(v)

    def _end_epoch(self) -> None:
        st = self.state
        val = self._validate()
        row = self._record("epoch", val)
        event = self.schedule.step(row.get(self.o["monitor"]), max(self.base_lrs))
        self._apply_lr()
        calib = self._calibrate(val)
        self._save_detector("last", row, calib)
        self.log(self._describe(row) + (f" | {event}" if event else ""))
        if st["skipped"]:
            self.log(f"warning: {len(st['skipped'])} unreadable training images skipped so far "
                     f"(e.g. {st['skipped'][0]})")
        st["epoch"] += 1
        st["step_in_epoch"] = 0
        st["accum"] = self._zero_accum()
        if self.schedule.stopped:
            st["stop_reason"] = self.schedule.reason
        self._save_resume()
        self._write_logs(plots=time.perf_counter() - self._t_epoch > 30)
        self._barrier()

    @staticmethod
    def _describe(row: dict) -> str:
        def f(v):
            return "n/a" if v is None else f"{v:.4f}"

        where = f"epoch {row['epoch']}" if row["kind"] == "epoch" else f"step {row['step']} (epoch {row['progress']:.2f})"
        return (f"{where}: loss {f(row['train_loss'])} acc {f(row['train_acc'])} | val loss {f(row['val_loss'])} "
                f"acc {f(row['val_acc'])} (real {f(row['val_real_acc'])}, fake {f(row['val_fake_acc'])}, "
                f"balanced {f(row.get('val_bacc'))}) "
                f"AP {f(row['val_ap'])} AUC {f(row['val_auc'])}")


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def update(self, *a, **k):
        pass


def train(spec: DataSpec, options: dict, out_dir, runtime: Runtime | None = None, recipe: str | None = None,
          resume: bool = False, force: bool = False, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train a detector (see the module docstring for what the run directory holds)."""
    return Trainer(spec, options, out_dir, runtime, recipe, resume, force, log).run()


def stored_options(out_dir: str | os.PathLike) -> tuple[DataSpec, dict, str | None]:
    """(data, options, recipe) of an existing run, read from its resume state."""
    from ganscan.core.checkpoint import read_metadata

    path = Path(out_dir) / "resume.safetensors"
    if not path.exists():
        raise GanscanError(f"nothing to resume in {out_dir}", hint="start the run without --resume")
    meta = read_metadata(path)
    t = meta.get("training") or {}
    d = t.get("data") or {}
    return DataSpec(**{k: list(d.get(k, [])) for k in ("data", "real", "fake", "val")}), dict(t.get("options") or {}), \
        t.get("recipe")
