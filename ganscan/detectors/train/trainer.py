"""The detector training loop: validation, checkpoints, exact resume, Ctrl-C, DDP.

A run directory holds:

- ``best.safetensors``: the best model so far (by the recipe's monitored validation metric), a normal
  detector checkpoint (``ganscan scan --model RUN/best.safetensors``) with the calibrated threshold;
- ``last.safetensors``: the model after the latest epoch, same format;
- ``resume.safetensors``: everything needed to continue exactly (model, optimiser, scheduler, epoch and
  step, RNG states, log so far), in ganscan.core.runs' format;
- ``log.csv`` / ``log.json``: one row per validation (per epoch, and every ``val_every`` steps);
- ``loss.png`` / ``accuracy.png``: the training curves.

Determinism: see ganscan.detectors.train.data; the DataLoader gets its own generator too. On the CPU, with
the same number of threads, a run that is stopped (Ctrl-C saves the resume state after the step in flight)
or killed and then resumed ends bit-for-bit where an uninterrupted run ends.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ganscan.core.checkpoint import atomic_write_bytes, load_strict, save_checkpoint
from ganscan.core.device import (barrier, configure_threads, cores, data_loader, default_workers, distributed_env,
                                 gather, init_distributed, leave_distributed, resolve_device, training_precision)
from ganscan.core.runs import CsvLog, StopFlag, guard_run, load_state, rng_state, save_state, set_rng_state
from ganscan.detectors import metrics as M
from ganscan.detectors.inference import forward_logits, sigmoid
from ganscan.detectors.preprocess import normalize
from ganscan.detectors.registry import build_detector, get_config
from ganscan.detectors.train.data import (DataSpec, EpochSampler, TrainImages, ValImages, check_format, collate_train,
                                          train_and_val_sets)
from ganscan.detectors.train.model import load_init, make_optimizer, set_train_mode
from ganscan.detectors.train.options import MONITORS, augment_config
from ganscan.detectors.train.schedule import Schedule, improved
from ganscan.errors import DataError, GanscanError

LOG_FIELDS = ("kind", "epoch", "step", "progress", "lr", "train_loss", "train_acc", "train_real_acc", "train_fake_acc",
              "val_loss", "val_acc", "val_bacc", "val_real_acc", "val_fake_acc", "val_ap", "val_auc", "seconds",
              "train_images_per_s")
#: The training metrics of an epoch so far (summed over the processes).
ZERO_ACCUM = {"loss_sum": 0.0, "n": 0, "correct_real": 0, "n_real": 0, "correct_fake": 0, "n_fake": 0}


@dataclass
class Runtime:
    device: str = "auto"
    precision: str = "auto"
    workers: int | None = None
    threads: int | None = None
    channels_last: bool = True
    name: str | None = None
    checkpoint_every: int = 0             # also save the resume state every N steps


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
    interrupted: bool = False             # Ctrl-C / SIGTERM: the resume state holds the step reached


class Trainer:
    def __init__(self, spec: DataSpec, options: dict, out_dir: str | os.PathLike, runtime: Runtime | None = None,
                 recipe: str | None = None, resume: bool = False, force: bool = False,
                 log: Callable[[str], None] | None = None):
        self.spec, self.o, self.rt = spec, options, runtime or Runtime()
        self.recipe, self.out, self.resume, self.force = recipe, Path(out_dir), resume, force
        self._log = log or (lambda msg: None)
        self.rank, self.world = distributed_env()
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        self.ddp = self.world > 1
        self.device = resolve_device(self.rt.device)
        if self.ddp and self.device.type == "cuda":
            self.device = torch.device("cuda", self.local_rank)
        self.precision, self.precision_text = training_precision(self.device, self.rt.precision,
                                                                 self.rt.channels_last)
        self.workers = (default_workers(self.world, 1 if self.device.type == "cuda" else 2)
                        if self.rt.workers is None else int(self.rt.workers))
        self.aug = augment_config(options, get_config(options["arch"]).input_size)
        # validation, scan and evaluate: the arch's policy at the training crop
        # (tiles on the grid the training crops were aligned to)
        self.cfg = replace(get_config(options["arch"]), input_size=self.aug.crop, tile_align=self.aug.crop_align)
        self.state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "rows": [], "best": None,
                      "best_value": None, "accum": dict(ZERO_ACCUM), "skipped": [], "stop_reason": ""}
        self.stop = StopFlag()
        self._val_cache, self._val_unreadable = None, set()
        self._t0 = self._t_epoch = time.perf_counter()
        self._val_time, self._epoch_rate = 0.0, (0, 0.0)

    # -- helpers
    def log(self, msg: str) -> None:
        if self.is_main:
            self._log(msg)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- setup
    def _setup_process(self) -> None:
        """Threads (the cores shared by this machine's processes) or cuDNN autotuning; the process group."""
        if self.device.type == "cpu":
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
            configure_threads(self.rt.threads or max(1, cores() // local_world))
        else:
            torch.backends.cudnn.benchmark = True
        if self.ddp:
            init_distributed(self.device, self.local_rank)

    def _prepare_data(self) -> None:
        o = self.o
        self.train_set, self.val_set = train_and_val_sets(self.spec, float(o["val_split"]), int(o["seed"]))
        self.per_rank_batch = int(o["batch_size"]) // self.world
        if int(o["batch_size"]) % self.world:
            raise GanscanError(f"batch size {o['batch_size']} is not divisible by the {self.world} processes")
        self.steps_per_epoch = math.ceil(len(self.train_set) / self.world) // self.per_rank_batch
        if self.steps_per_epoch == 0:
            raise DataError(f"only {len(self.train_set)} training images for a batch size of {o['batch_size']}",
                            hint="lower --batch-size or add images")
        if self.per_rank_batch < 2:
            raise GanscanError("a batch of 1 image per process cannot train BatchNorm layers",
                               hint="raise --batch-size")

    def _build_model(self) -> None:
        o = self.o
        torch.manual_seed(int(o["seed"]))
        self.model = build_detector(o["arch"], pretrained=o["pretrained"])
        if o["init"]:
            load_init(self.model, o["init"], o["arch"])
        self.opt = make_optimizer(self.model, o)
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.model.to(self.device)
        if self.precision.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.schedule = Schedule(o["schedule"], MONITORS[o["monitor"]], o["patience"], o["lr_factor"], o["min_lr"],
                                 o["min_delta"])
        fp16 = self.precision.autocast_dtype is torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        pos_weight = self.train_set.n_real / self.train_set.n_fake if o["balance"] == "weight" else 1.0
        self.pos_weight = torch.tensor([pos_weight], dtype=torch.float32, device=self.device)
        self.net = self.model
        if self.ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.net = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # -- state
    def _train_meta(self) -> dict:
        return {"data": self.spec.as_dict(), "recipe": self.recipe, "options": self.o,
                "data_fingerprint": self.train_set.fingerprint(), "val_fingerprint": self.val_set.fingerprint()}

    def _save_resume(self) -> None:
        if not self.is_main:
            return
        save_state(self.out / "resume.safetensors", {f"model.{k}": v for k, v in self.model.state_dict().items()},
                   {"optimizer": self.opt.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng_state()},
                   {"kind": "train-state", "arch": self.o["arch"], "training": self._train_meta(),
                    "schedule": self.schedule.state_dict(), "state": self.state, "world_size": self.world})

    def _load_resume(self) -> None:
        path = self.out / "resume.safetensors"
        tensors, saved, meta = load_state(path, "train-state")
        t = meta["training"]
        if t["data_fingerprint"] != self.train_set.fingerprint() or t["val_fingerprint"] != self.val_set.fingerprint():
            raise DataError(f"{self.out}: the training or validation images changed since the run started",
                            hint="an exact resume needs the same data; start a new run with -o NEWDIR")
        if meta.get("world_size", 1) != self.world:
            raise GanscanError(f"the run used {meta.get('world_size', 1)} processes; resume it with the same number")
        load_strict(self.model, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
                    str(path), "the resume state does not fit the model")
        self.opt.load_state_dict(saved["optimizer"])
        self.scaler.load_state_dict(saved["scaler"])
        self.schedule.load_state_dict(meta["schedule"])
        set_rng_state(saved["rng"])
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
            "metrics": {k: row.get(k) for k in LOG_FIELDS if k.startswith("val_") or k in ("train_loss", "train_acc")},
        }

    def _save_detector(self, kind: str, row: dict, calib: M.Calibration) -> None:
        if self.is_main:
            save_checkpoint(self.out / f"{kind}.safetensors", self.model.state_dict(), self._detector_meta(kind, row, calib))

    # -- validation
    def _loader(self, dataset, batch_size: int, collate, **kwargs):
        if self.workers > 0:
            kwargs["prefetch_factor"] = 4
        return data_loader(dataset, batch_size, self.workers, collate, pin_memory=self.device.type == "cuda",
                           generator=torch.Generator().manual_seed(int(self.o["seed"])), **kwargs)

    def _val_views(self):
        """(index, views uint8) for this rank's share of the validation set, cached in memory when small."""
        if self._val_cache is not None:
            return self._val_cache
        mine = list(range(self.rank, len(self.val_set), self.world))
        ds = ValImages(self.val_set, self.aug, self.cfg, int(self.o["seed"]), int(self.o["max_pixels"]))
        out, size = [], 0
        for items in self._loader(torch.utils.data.Subset(ds, mine), batch_size=16, collate=list):
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
        self.model.eval()
        views = self._val_views()
        idx, logits = [i for i, _ in views], []
        for start in range(0, len(views), self.per_rank_batch):
            tensors = [normalize(v, self.cfg) for _, v in views[start:start + self.per_rank_batch]]
            logits.extend(forward_logits(self.model, tensors, self.precision, max_batch=self.per_rank_batch))
        set_train_mode(self.model, self.o["arch"], self.o["freeze_backbone"])
        pairs = sorted((i, lg) for ids, ls in gather((idx, logits), self.world) for i, lg in zip(ids, ls))
        labels = np.array([self.val_set.labels[i] for i, _ in pairs])
        lg = np.array([v for _, v in pairs], dtype=np.float64)
        scores = np.array([sigmoid(float(v)) for v in lg])
        acc = M.accuracies(labels, scores, 0.5)
        bacc = None if acc["real_acc"] is None or acc["fake_acc"] is None else (acc["real_acc"] + acc["fake_acc"]) / 2
        out = {"val_loss": M.balanced_loss(lg, labels), "val_acc": acc["accuracy"], "val_bacc": bacc,
               "val_real_acc": acc["real_acc"], "val_fake_acc": acc["fake_acc"],
               "val_ap": M.average_precision(labels, scores), "val_auc": M.roc_auc(labels, scores),
               "_labels": labels, "_scores": scores}
        self._val_time += time.perf_counter() - t0
        return out

    def _record(self, kind: str, val: dict) -> dict:
        """A log row for one validation; the best checkpoint when the monitored metric improved (the
        schedule's rule, min_delta included)."""
        st, a = self.state, self.state["accum"]
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
        if improved(monitor, st["best_value"], MONITORS[self.o["monitor"]], float(self.o["min_delta"])):
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
        CsvLog(self.out / "log.csv", LOG_FIELDS).write(rows)
        doc = {"recipe": self.recipe, "options": self.o, "data": self.spec.as_dict(),
               "n_train": {"real": self.train_set.n_real, "fake": self.train_set.n_fake},
               "n_val": {"real": self.val_set.n_real, "fake": self.val_set.n_fake},
               "skipped_unreadable": sorted(self.state["skipped"]), "best": self.state["best"],
               "stop_reason": self.state["stop_reason"], "rows": rows}
        atomic_write_bytes(self.out / "log.json", json.dumps(doc, indent=1, default=str).encode())
        if plots and rows:
            from ganscan.core.plots import training_curves

            training_curves(rows, self.out)

    # -- main
    def run(self) -> TrainResult:
        self._setup_process()
        try:
            return self._run()
        finally:
            if self.ddp:
                leave_distributed()

    def _run(self) -> TrainResult:
        o, st = self.o, self.state
        if self.is_main:
            guard_run(self.out, "resume.safetensors", self.resume, self.force)
            self.out.mkdir(parents=True, exist_ok=True)
        barrier(self.world)
        random.seed(int(o["seed"]))
        np.random.seed(int(o["seed"]) % (2**32))
        self._prepare_data()
        if self.is_main and not self.resume:
            check_format(self.train_set, self.out, self.log)
        self._build_model()
        if self.resume:
            self._load_resume()
            st = self.state
        self._start()
        sampler = EpochSampler(self.train_set.labels, int(o["seed"]), self.rank, self.world, o["balance"])
        dataset = TrainImages(self.train_set, self.aug, int(o["seed"]), int(o["max_pixels"]))
        with self.stop:  # from here Ctrl-C stops after the step in flight
            while st["epoch"] < int(o["epochs"]) and not self.schedule.stopped:
                if not self._train_epoch(sampler, dataset):
                    return self._finish("interrupted")
                self._end_epoch()
        return self._finish(self.schedule.reason if self.schedule.stopped else f"reached {o['epochs']} epochs")

    def _start(self) -> None:
        """The clock, the log line that says what trains where, train mode and the learning rates."""
        o, st = self.o, self.state
        self._t0 = time.perf_counter()
        st["seconds_before"] = st["rows"][-1]["seconds"] if st["rows"] else 0.0
        self.log(f"training {o['arch']} on {self.train_set.describe()}, validating on {self.val_set.describe()}; "
                 f"{self.steps_per_epoch} steps of {o['batch_size']} per epoch on {self.device.type}"
                 + (f" x{self.world} processes" if self.ddp else "") + f" ({self.precision_text})"
                 + (f"; resuming at epoch {st['epoch'] + 1} step {st['step_in_epoch']}" if self.resume else ""))
        if self.resume and (st["epoch"] >= int(o["epochs"]) or self.schedule.stopped):
            self.log(f"the run is already complete ({st['epoch']} epochs"
                     + (f", {self.schedule.reason}" if self.schedule.stopped else "") + ")"
                     + ("" if self.schedule.stopped else "; pass a larger --epochs to continue it"))
        set_train_mode(self.model, o["arch"], o["freeze_backbone"])
        self._apply_lr()

    def _train_epoch(self, sampler: EpochSampler, dataset: TrainImages) -> bool:
        """The steps left in this epoch; False when a stop was asked for (the state is saved after the step)."""
        from ganscan.console import Progress

        o, st = self.o, self.state
        sampler.set_epoch(st["epoch"], skip=st["step_in_epoch"] * self.per_rank_batch)
        loader = self._loader(dataset, self.per_rank_batch, collate_train, sampler=sampler, drop_last=True)
        self._t_epoch, self._val_time, self._epoch_rate = time.perf_counter(), 0.0, (0, 0.0)
        n_epoch = 0
        bar = Progress(f"epoch {st['epoch'] + 1}/{o['epochs']}", total=self.steps_per_epoch,
                       fields=("loss", "acc", "img/s"))
        with bar if self.is_main else nullcontext(bar):  # a bar never entered shows nothing
            bar.update(advance=st["step_in_epoch"])
            for x, y, bad in islice(loader, self.steps_per_epoch - st["step_in_epoch"]):
                for path, _reason in bad:
                    if path not in st["skipped"]:
                        st["skipped"].append(path)
                stop = self._accumulate(*self._train_step(x, y), y)
                st["step_in_epoch"] += 1
                st["global_step"] += 1
                n_epoch += x.shape[0] * self.world
                self._epoch_rate = (n_epoch, time.perf_counter() - self._t_epoch - self._val_time)
                a = st["accum"]
                bar.update(advance=1, loss=a["loss_sum"] / a["n"], acc=(a["correct_real"] + a["correct_fake"]) / a["n"],
                           **{"img/s": n_epoch / max(1e-9, time.perf_counter() - self._t_epoch)})
                self._between_steps()  # the step's validation row belongs to the run even when it stops here
                if stop:
                    return False
        return True

    def _between_steps(self) -> None:
        """Within an epoch: validate every val_every steps, save the resume state every checkpoint_every."""
        st, every = self.state, int(self.o["val_every"])
        if st["step_in_epoch"] == self.steps_per_epoch:
            return  # the epoch's end does both
        if every and st["global_step"] % every == 0:
            self.log(self._describe(self._record("step", self._validate())))
            self._save_resume()
            self._write_logs()
        elif self.rt.checkpoint_every and st["global_step"] % self.rt.checkpoint_every == 0:
            self._save_resume()

    def _train_step(self, x: torch.Tensor, y: torch.Tensor):
        dev = self.device
        x = x.to(dev, non_blocking=True).permute(0, 3, 1, 2).float()  # NHWC uint8 -> NCHW view
        mean = torch.tensor(self.cfg.mean, device=dev).view(1, 3, 1, 1)
        std = torch.tensor(self.cfg.std, device=dev).view(1, 3, 1, 1)
        x = x.div_(255.0).sub_(mean).div_(std)
        x = x.contiguous(memory_format=torch.channels_last) if self.precision.channels_last else x.contiguous()
        y = y.to(dev, non_blocking=True)
        with self.precision.autocast():
            logits = self.net(x).reshape(-1)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=self.pos_weight)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss.detach(), logits.detach().float()

    def _accumulate(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> bool:
        """Add one step to the epoch's training metrics, summed over the processes; True when any of them
        was asked to stop (so that all stop after the same step)."""
        y = y.to(logits.device)
        pred = logits >= 0
        real, fake = y == 0, y == 1
        vals = torch.tensor([float(loss) * y.numel(), y.numel(), int((~pred & real).sum()), int(real.sum()),
                             int((pred & fake).sum()), int(fake.sum()), float(self.stop.requested)],
                            dtype=torch.float64, device=self.device if self.ddp else None)
        if self.ddp:
            torch.distributed.all_reduce(vals)
        vals = vals.tolist()
        a = self.state["accum"]
        a["loss_sum"] += vals[0]
        for k, v in zip(("n", "correct_real", "n_real", "correct_fake", "n_fake"), vals[1:6]):
            a[k] += int(v)
        return vals[6] > 0

    def _end_epoch(self) -> None:
        st = self.state
        val = self._validate()
        row = self._record("epoch", val)
        event = self.schedule.step(row.get(self.o["monitor"]), max(self.base_lrs))
        self._apply_lr()
        self._save_detector("last", row, self._calibrate(val))
        self.log(self._describe(row) + (f" | {event}" if event else ""))
        if st["skipped"]:
            self.log(f"warning: {len(st['skipped'])} unreadable training images skipped so far "
                     f"(e.g. {st['skipped'][0]})")
        st["epoch"] += 1
        st["step_in_epoch"] = 0
        st["accum"] = dict(ZERO_ACCUM)
        if self.schedule.stopped:
            st["stop_reason"] = self.schedule.reason
        self._save_resume()
        self._write_logs(plots=time.perf_counter() - self._t_epoch > 30)
        barrier(self.world)

    def _finish(self, reason: str) -> TrainResult:
        st = self.state
        st["stop_reason"] = reason
        self._save_resume()
        self._write_logs(plots=True)
        barrier(self.world)
        best = st["best"] or {}
        if self._val_unreadable:
            self.log(f"warning: {len(self._val_unreadable)} unreadable validation images were left out")
        return TrainResult(out_dir=self.out, best_path=self.out / "best.safetensors",
                           last_path=self.out / "last.safetensors", rows=st["rows"], best=best,
                           threshold=best.get("threshold", 0.5), threshold_rule=best.get("threshold_rule", ""),
                           epochs_run=st["epoch"], skipped=len(st["skipped"]), stop_reason=reason,
                           interrupted=reason == "interrupted")

    @staticmethod
    def _describe(row: dict) -> str:
        def f(v):
            return "n/a" if v is None else f"{v:.4f}"

        where = f"epoch {row['epoch']}" if row["kind"] == "epoch" else f"step {row['step']} (epoch {row['progress']:.2f})"
        return (f"{where}: loss {f(row['train_loss'])} acc {f(row['train_acc'])} | val loss {f(row['val_loss'])} "
                f"acc {f(row['val_acc'])} (real {f(row['val_real_acc'])}, fake {f(row['val_fake_acc'])}, "
                f"balanced {f(row.get('val_bacc'))}) "
                f"AP {f(row['val_ap'])} AUC {f(row['val_auc'])}")


def train(spec: DataSpec, options: dict, out_dir, runtime: Runtime | None = None, recipe: str | None = None,
          resume: bool = False, force: bool = False, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train a detector (see the module docstring for what the run directory holds)."""
    return Trainer(spec, options, out_dir, runtime, recipe, resume, force, log).run()
