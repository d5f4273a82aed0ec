"""Training loops for DCGAN (BCE), AutoGAN (L1 + least squares) and ProGAN (WGAN-GP, progressive growing)
with exact resume; Ctrl-C or SIGTERM stops after the step in flight, with a checkpoint.

A run directory holds:

* ``run.json``: the settings (a resumed run must use the same model, data and seed);
* ``ckpt-STEP.safetensors``: generator, discriminator and, for ProGAN, the averaged generator, with the
  optimiser states, RNG states and counters (ganscan.core.runs' resume format), and ``checkpoint.json``
  pointing at the newest; a folder from before that format (``ckpt-STEP.state.pt`` beside the weights,
  read with ``weights_only=True``) still resumes;
* ``generator.safetensors``: the generator alone, with ``kind="gan"`` metadata, for ``ganscan generate``;
* ``losses.csv`` (one row per step), ``loss.png``, and ``samples/step-STEP.png`` grids from one fixed
  latent batch.

Every random draw comes from the global torch RNG, whose state is checkpointed, except the order of the
training images, which is a function of (seed, epoch): so a run stopped and resumed from a checkpoint
computes exactly the same weights as one that ran straight through (same machine and thread count).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ganscan.core.checkpoint import atomic_write_bytes, load_strict, save_checkpoint
from ganscan.core.plots import gan_losses
from ganscan.core.runs import (CsvLog, StopFlag, guard_run, load_state, read_csv, rng_state, save_state,
                               set_rng_state)
from ganscan.errors import CheckpointError, GanscanError
from ganscan.gans import registry
from ganscan.gans.images import ImageSet, load_image_folder, save_grid, to_float

CSV_FIELDS = ("step", "images", "resolution", "alpha", "loss_d", "loss_g", "extra", "seconds")
PROGAN_BATCH = {4: 32, 8: 32, 16: 32, 32: 16, 64: 16, 128: 8}
#: What the settings left unset mean for each family (ProGAN's batch size depends on the resolution).
FAMILY_DEFAULTS = {"dcgan": {"batch_size": 32, "lr": 2e-4, "beta1": 0.5},
                   "autogan": {"batch_size": 16, "lr": 2e-4, "beta1": 0.5},
                   "progan": {"batch_size": PROGAN_BATCH, "lr": 1e-3, "beta1": 0.0}}


@dataclass
class TrainSettings:
    model: str
    data: str
    run_dir: str
    seed: int = 0
    resolution: int | None = None
    steps: int | None = None  # optimiser steps in all (DCGAN default: 20 epochs)
    kimg: float | None = None  # or thousands of real images shown
    epochs: float | None = None  # or passes over the training images
    batch_size: int | None = None  # these three: FAMILY_DEFAULTS
    lr: float | None = None
    beta1: float | None = None
    width: int | None = None  # DCGAN base width
    widths: list[int] | None = None  # ProGAN channels per resolution, 4x4 first
    layers: int | None = None  # AutoGAN: stride-2 stages in the encoder and the decoder (1 or 4 in the seed)
    rec_weight: float = 10.0  # AutoGAN: weight of the L1 reconstruction loss against the adversarial loss
    phase_kimg: float | list[float] = 20.0  # ProGAN: kimg per fade-in and per stabilisation phase (or one per level)
    gp_weight: float = 10.0
    drift: float = 0.001
    ema_kimg: float = 10.0  # ProGAN generator averaging: half-life in thousands of images...
    ema_rampup: float | None = 0.05  # ...but at most this fraction of the images shown so far
    mirror: bool = True  # random horizontal flips of the training images
    holdout: float = 0.0  # fraction of the folder kept out of training (for metrics)
    sample_every: int = 500  # steps between sample grids
    checkpoint_every: int = 500  # steps between checkpoints
    keep_checkpoints: int = 2
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time
    min_images: int = 16

    def key(self) -> dict:
        """What must not change between a run and its resumption."""
        return {k: getattr(self, k) for k in ("model", "seed", "resolution", "width", "widths", "layers",
                                               "holdout", "mirror", "batch_size", "lr", "beta1")}


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    images: int
    seconds: float
    finished: bool
    losses: dict
    generator: Path
    notes: list[str] = field(default_factory=list)
    trained_resolution: int = 0
    resumed_from: int | None = None
    interrupted: bool = False


def train(settings: TrainSettings, resume: bool = False, progress=None,
          on_note: Callable[[str], None] | None = None, invocation: str | None = None) -> TrainResult:
    """Train (or continue training) a GAN; see the module docstring for what the run directory holds."""
    cfg = registry.get_gan_config(settings.model)
    settings.resolution = res = registry.check_resolution(settings.model, settings.resolution)
    run = Path(settings.run_dir)
    guard_run(run, "checkpoint.json", resume)
    saved = _resumable(run, settings) if resume else None
    data = load_image_folder(settings.data, res, holdout=settings.holdout, split="train",
                             min_images=settings.min_images)
    for note in data.notes:
        if on_note:
            on_note(note)
    if data.images.shape[0] < (settings.batch_size or 1):
        raise GanscanError(f"{data.images.shape[0]} training images are fewer than one batch of {settings.batch_size}",
                           hint="lower --batch-size")

    run.mkdir(parents=True, exist_ok=True)
    (run / "samples").mkdir(exist_ok=True)
    loop = {"dcgan": _DCGANLoop, "progan": _ProGANLoop, "autogan": _AutoGANLoop}[cfg.family](settings, cfg, data)
    record = {"settings": asdict(settings), "key": settings.key(), "images": int(data.images.shape[0]),
              "held_out": data.held_out, "history": [], "commands": [invocation] if invocation else []}
    log = CsvLog(run / "losses.csv", CSV_FIELDS)
    resumed_from, rows = None, []
    if resume:
        resumed_from = loop.load(run)
        if cfg.family == "progan" and not loop.same_phases(saved["settings"]["phase_kimg"]):
            raise GanscanError(f"cannot resume {run}: the new --phase-kimg changes phases already trained",
                               hint="only phases after the current one may change")
        record.update({k: v for k, v in saved.items() if k not in record})
        record["commands"] = saved.get("commands", []) + ([invocation] if invocation else [])
        record["history"] = saved.get("history", []) + [{"resumed_at_step": resumed_from,
                                                          "settings": saved["settings"]}]
        rows = [r for r in read_csv(log.path) if int(r["step"]) <= resumed_from]
    (run / "run.json").write_text(json.dumps(record, indent=2))
    log.write(rows)
    finished, interrupted = _steps(loop, settings, run, log, rows, progress)
    loop.save(run)
    loop.sample(run / "samples" / f"step-{loop.step:07d}.png")
    gan_losses(rows, run / "loss.png", settings.model)
    losses = {k: float(rows[-1][k]) for k in ("loss_d", "loss_g", "extra")} if rows else {}
    return TrainResult(run, loop.step, loop.images, loop.elapsed, finished, losses, run / "generator.safetensors",
                       data.notes, loop.trained_resolution(), resumed_from, interrupted)


def _resumable(run: Path, settings: TrainSettings) -> dict:
    """The run.json of the run to continue, once the settings that fix what the weights mean match it; the
    architecture settings not given are taken from it."""
    saved = json.loads((run / "run.json").read_text())
    mismatch = {k: (saved["key"].get(k), v) for k, v in settings.key().items() if saved["key"].get(k) != v
                and not (k in ("widths", "layers") and v is None)}
    if mismatch:
        what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in mismatch.items())
        raise GanscanError(f"cannot resume {run} with different settings: {what}",
                           hint="resume with the settings the run started with")
    for k in ("widths", "layers"):
        if getattr(settings, k) is None:
            setattr(settings, k, saved["key"].get(k))
    return saved


def _steps(loop: _Loop, settings: TrainSettings, run: Path, log: CsvLog, rows: list[dict],
           progress) -> tuple[bool, bool]:
    """Train until the last step, the time limit or Ctrl-C: a loss row per step, sample grids and checkpoints
    on schedule. Returns (finished, interrupted)."""
    total = loop.total_steps()
    t0, elapsed0 = time.monotonic(), loop.elapsed
    deadline = None if settings.max_minutes is None else t0 + settings.max_minutes * 60
    with StopFlag() as stop, log:
        if progress is not None:
            progress.update(advance=loop.step, total=total)
        while loop.step < total:
            row = loop.train_step()
            loop.elapsed = elapsed0 + time.monotonic() - t0
            row["seconds"] = round(loop.elapsed, 3)
            log.add(row)
            rows.append(row)
            if progress is not None:
                progress.update(advance=1, loss_d=float(row["loss_d"]), loss_g=float(row["loss_g"]),
                                res=int(row["resolution"]))
            if loop.step % settings.sample_every == 0:
                loop.sample(run / "samples" / f"step-{loop.step:07d}.png")
            if loop.step % settings.checkpoint_every == 0:
                log.flush()
                loop.save(run)
                gan_losses(rows, run / "loss.png", settings.model)
            if stop.requested or (deadline is not None and time.monotonic() > deadline):
                break
    return loop.step >= total, stop.requested


# --- the loops -------------------------------------------------------------------------------------

class _Loop:
    """Shared: the sample stream, checkpoints, the generator export."""

    ema: torch.nn.Module | None = None

    def __init__(self, settings: TrainSettings, cfg: registry.GanConfig, data: ImageSet):
        self.s, self.cfg, self.data = settings, cfg, data
        self.res = settings.resolution
        self.step = 0
        self.images = 0
        self.elapsed = 0.0
        torch.manual_seed(settings.seed)
        self.G, self.D = registry.build_gan(settings.model, self.res, **self.arch_options())
        self.fixed_z = torch.randn(64, max(cfg.latent_size, 1),
                                   generator=torch.Generator().manual_seed(settings.seed + 1))
        self._perm_epoch = -1
        self._perm = None

    def arch_options(self) -> dict:
        return {}

    def _optimisers(self, beta2: float) -> None:
        """Adam for G and D, with the family's (or the given) learning rate and beta1."""
        lr, b1 = self.setting("lr"), self.setting("beta1")
        self.opt_g, self.opt_d = (torch.optim.Adam(m.parameters(), lr=lr, betas=(b1, beta2))
                                  for m in (self.G, self.D))

    def setting(self, key: str):
        """A setting as given, or its family's default."""
        value = getattr(self.s, key)
        return FAMILY_DEFAULTS[self.cfg.family][key] if value is None else value

    def next_batch(self, n: int) -> torch.Tensor:
        """Real images [pos, pos + n) of an endless stream of per-epoch permutations (float [-1, 1])."""
        N = self.data.images.shape[0]
        idx = []
        pos = self.images
        while len(idx) < n:
            epoch, off = divmod(pos, N)
            if epoch != self._perm_epoch:
                gen = torch.Generator().manual_seed(self.s.seed * 1_000_003 + epoch)
                self._perm, self._perm_epoch = torch.randperm(N, generator=gen), epoch
            take = min(n - len(idx), N - off)
            idx.extend(self._perm[off:off + take].tolist())
            pos += take
        x = to_float(self.data.images[idx])
        if self.s.mirror:
            flip = torch.rand(n) < 0.5
            x[flip] = x[flip].flip(-1)
        return x

    def modules(self) -> dict:
        mods = {"G": self.G, "D": self.D}
        if self.ema is not None:
            mods["G_ema"] = self.ema
        return mods

    def export_module(self) -> torch.nn.Module:
        return self.ema if self.ema is not None else self.G

    def save(self, run: Path) -> None:
        stem = f"ckpt-{self.step:08d}"
        state = {"step": self.step, "images": self.images, "elapsed": self.elapsed, "rng": rng_state(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}
        save_state(run / f"{stem}.safetensors",
                   {f"{p}.{k}": v for p, m in self.modules().items() for k, v in m.state_dict().items()}, state,
                   {"kind": "gan-training", "model": self.s.model, "step": self.step, "images": self.images})
        meta = registry.generator_meta(self.s.model, self.res, self.arch_options(), step=self.step,
                                       images=self.images, trained_resolution=self.trained_resolution(),
                                       seed=self.s.seed, data=os.path.abspath(self.s.data),
                                       name=run.resolve().name, averaged=self.ema is not None)
        save_checkpoint(run / "generator.safetensors", self.export_module().state_dict(), meta)
        atomic_write_bytes(run / "checkpoint.json", json.dumps({"step": self.step, "weights": f"{stem}.safetensors"}).encode())
        for old in sorted(run.glob("ckpt-*.safetensors"))[:-self.s.keep_checkpoints]:
            old.unlink()
            old.with_suffix(".state.pt").unlink(missing_ok=True)  # the state beside it, in a folder of the old format

    def load(self, run: Path) -> int:
        ptr = json.loads((run / "checkpoint.json").read_text())
        tensors, state, meta = load_state(run / ptr["weights"], "gan-training")
        if meta.get("model") != self.s.model:
            raise CheckpointError(f"{run}: a {meta.get('model')} run, not {self.s.model}")
        for prefix, mod in self.modules().items():
            load_strict(mod, {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")},
                        str(run), "checkpoint does not fit the model")
        if state is None:  # a folder of the old format: the state beside the weights, saved by torch
            try:
                state = torch.load(run / ptr["state"], map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - pickle, EOF and zip errors alike
                raise CheckpointError(f"{run / ptr['state']}: unreadable training state ({exc})") from None
            state["rng"] = {"torch": state["rng"]}
        if state["step"] != meta.get("step"):
            raise CheckpointError(f"{run}: weights and training state are from different steps")
        self.step, self.images, self.elapsed = state["step"], state["images"], float(state["elapsed"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        set_rng_state(state["rng"])
        return self.step

    @staticmethod
    def _update(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def _row(self, b: int, resolution: int, alpha: float, loss_d, loss_g, extra) -> dict:
        """Count a step of ``b`` images; its losses.csv row."""
        self.step += 1
        self.images += b
        return {"step": self.step, "images": self.images, "resolution": resolution, "alpha": alpha,
                "loss_d": round(loss_d.item(), 6), "loss_g": round(loss_g.item(), 6), "extra": round(extra.item(), 6)}

    @staticmethod
    def _eval(module: torch.nn.Module, x: torch.Tensor, **kw) -> torch.Tensor:
        """``module(x)`` in eval mode, without gradients (for the sample grids)."""
        was = module.training
        module.eval()
        with torch.no_grad():
            out = module(x, **kw)
        module.train(was)
        return out

    def trained_resolution(self) -> int:
        return self.res


class _DCGANLoop(_Loop):
    def __init__(self, settings, cfg, data):
        super().__init__(settings, cfg, data)
        self.batch = self.setting("batch_size")
        self._optimisers(0.999)

    def arch_options(self):
        return {"width": self.s.width} if self.s.width else {}

    def total_steps(self) -> int:
        if self.s.steps is not None:
            return self.s.steps
        n = self.data.images.shape[0]
        if self.s.kimg is not None:
            return math.ceil(self.s.kimg * 1000 / self.batch)
        if self.s.epochs is not None:
            return math.ceil(self.s.epochs * n / self.batch)
        return 20 * (n // self.batch)

    def train_step(self) -> dict:
        real = self.next_batch(self.batch)
        b = real.shape[0]
        z = torch.randn(b, self.cfg.latent_size)
        fake = self.G(z)
        ones, zeros = torch.ones(b, 1), torch.zeros(b, 1)
        d_real = self.D(real)
        d_fake = self.D(fake.detach())
        loss_d = F.binary_cross_entropy_with_logits(d_real, ones) + F.binary_cross_entropy_with_logits(d_fake, zeros)
        self._update(self.opt_d, loss_d)
        loss_g = F.binary_cross_entropy_with_logits(self.D(fake), ones)
        self._update(self.opt_g, loss_g)
        return self._row(b, self.res, 1.0, loss_d, loss_g, torch.sigmoid(d_real).mean())

    def sample(self, path: Path) -> None:
        save_grid(self._eval(self.G, self.fixed_z), path, nrow=8, upscale=max(1, 64 // self.res))


class _AutoGANLoop(_DCGANLoop):
    """Reconstruction (L1) plus least-squares adversarial loss on a PatchGAN discriminator."""

    def __init__(self, settings, cfg, data):
        super().__init__(settings, cfg, data)
        self.fixed = to_float(data.images[:32])

    def arch_options(self):
        return {"layers": self.s.layers or self.cfg.options.get("layers", 1), **super().arch_options()}

    def train_step(self) -> dict:
        real = self.next_batch(self.batch)
        b = real.shape[0]
        rec = self.G(real)
        d_real, d_rec = self.D(real), self.D(rec.detach())
        loss_d = 0.5 * ((d_real - 1).square().mean() + d_rec.square().mean())
        self._update(self.opt_d, loss_d)
        l1 = (rec - real).abs().mean()
        loss_g = (self.D(rec) - 1).square().mean() + self.s.rec_weight * l1
        self._update(self.opt_g, loss_g)
        return self._row(b, self.res, 1.0, loss_d, loss_g, l1)

    def sample(self, path: Path) -> None:
        """Pairs: each real image above its reconstruction."""
        rec = self._eval(self.G, self.fixed)
        n = self.fixed.shape[0]
        rows = [t for i in range(0, n, 8) for t in (self.fixed[i:i + 8], rec[i:i + 8])]
        save_grid(torch.cat(rows), path, nrow=8, upscale=max(1, 64 // self.res))


class _ProGANLoop(_Loop):
    def __init__(self, settings, cfg, data):
        super().__init__(settings, cfg, data)
        import copy

        from ganscan.gans.progan import levels_for

        self.max_level = levels_for(self.res)
        self.ema = copy.deepcopy(self.G).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self._optimisers(0.99)

    def arch_options(self):
        return {"widths": list(self.s.widths or self.cfg.options.get("widths", []))}

    def batch_for(self, level: int) -> int:
        return self.s.batch_size or PROGAN_BATCH.get(4 * 2 ** level, 8)

    def phase(self, images: int) -> tuple[int, float]:
        """(level, alpha) after ``images`` real images: stabilise 4x4, then fade in and stabilise each level."""
        start = 0
        for k, length in enumerate(_phase_lengths(self.s.phase_kimg, self.max_level)):
            if images < start + length:
                return (k + 1) // 2, (images - start) / length if k % 2 == 1 else 1.0
            start += length
        return self.max_level, 1.0

    def same_phases(self, phase_kimg) -> bool:
        """True when every phase begun so far has the same length under ``phase_kimg`` as now."""
        start = 0
        for x, y in zip(_phase_lengths(phase_kimg, self.max_level), _phase_lengths(self.s.phase_kimg, self.max_level)):
            if start >= self.images:
                break
            if x != y:
                return False
            start += x
        return True

    def total_images(self) -> int:
        """By default the schedule, then one more stabilisation phase at the full resolution."""
        if self.s.kimg is not None:
            return int(self.s.kimg * 1000)
        if self.s.epochs is not None:
            return int(self.s.epochs * self.data.images.shape[0])
        lengths = _phase_lengths(self.s.phase_kimg, self.max_level)
        return sum(lengths) + lengths[-1]

    def total_steps(self) -> int:
        if self.s.steps is not None:
            return self.s.steps
        images, steps, target = 0, 0, self.total_images()
        while images < target:
            images += self.batch_for(self.phase(images)[0])
            steps += 1
        return steps

    def trained_resolution(self) -> int:
        level, alpha = self.phase(self.images)
        return 4 * 2 ** (level if alpha >= 1.0 else level - 1)

    def train_step(self) -> dict:
        level, alpha = self.phase(self.images)
        b = self.batch_for(level)
        r = 4 * 2 ** level
        real = self.next_batch(b)
        if r != self.res:
            real = F.adaptive_avg_pool2d(real, r) if self.res % r == 0 else F.interpolate(real, size=r, mode="area")
        if alpha < 1.0:  # blend the real images like the generator's fading output
            low = F.interpolate(F.avg_pool2d(real, 2), scale_factor=2, mode="nearest")
            real = torch.lerp(low, real, alpha)
        z = torch.randn(b, self.cfg.latent_size)
        fake = self.G(z, level, alpha)
        # critic
        d_real = self.D(real, level, alpha)
        d_fake = self.D(fake.detach(), level, alpha)
        eps = torch.rand(b, 1, 1, 1)
        mixed = torch.lerp(fake.detach(), real, eps).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(mixed, level, alpha).sum(), mixed, create_graph=True)
        gp = (grad.flatten(1).norm(2, dim=1) - 1.0).square().mean()
        wdist = d_real.mean() - d_fake.mean()
        loss_d = -wdist + self.s.gp_weight * gp + self.s.drift * d_real.square().mean()
        self._update(self.opt_d, loss_d)
        # generator
        loss_g = -self.D(fake, level, alpha).mean()
        self._update(self.opt_g, loss_g)
        # generator average
        half_life = self.s.ema_kimg * 1000
        if self.s.ema_rampup is not None:
            half_life = min(half_life, self.images * self.s.ema_rampup)
        beta = 0.5 ** (b / max(1.0, half_life))
        with torch.no_grad():
            for pe, p in zip(self.ema.parameters(), self.G.parameters()):
                pe.lerp_(p, 1.0 - beta)
        return self._row(b, r, round(alpha, 4), loss_d, loss_g, wdist)

    def sample(self, path: Path) -> None:
        level, alpha = self.phase(self.images)
        imgs = self._eval(self.ema, self.fixed_z, level=level, alpha=alpha)
        if imgs.shape[-1] != self.res:
            imgs = F.interpolate(imgs, size=self.res, mode="nearest")
        save_grid(imgs, path, nrow=8, upscale=max(1, 64 // self.res))


def _phase_lengths(phase_kimg, max_level: int) -> list[int]:
    """Images per phase: [stabilise 4x4, fade 8x8, stabilise 8x8, fade 16x16, ...]."""
    per_level = list(phase_kimg) if isinstance(phase_kimg, (list, tuple)) else [phase_kimg]
    per_level = [float(per_level[min(lv, len(per_level) - 1)]) for lv in range(max_level + 1)]
    out = [max(1, int(per_level[0] * 1000))]
    for lv in range(1, max_level + 1):
        out += [max(1, int(per_level[lv] * 1000))] * 2
    return out
