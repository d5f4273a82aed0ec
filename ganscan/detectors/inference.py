"""Batched inference over a stream of files: decode in worker processes, forward in the main one."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

import numpy as np
import torch

from ganscan import __version__
from ganscan.data.decode import (DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_PIXELS, DecodeError,
                                 decode_image, read_file)
from ganscan.data.discover import discover
from ganscan.data.exif import empty_exif, read_exif
from ganscan.data.formats import looks_like_image_name, sniff
from ganscan.data.provenance import assess, dhash, jpeg_quality, phash, provenance, repeated_lines
from ganscan.detectors.preprocess import ScaleViews, aggregate_logits, normalize, views_uint8
from ganscan.detectors.load import LoadedDetector, column_names
from ganscan.detectors.registry import DetectorConfig
from ganscan.core.device import Precision, worker_init
from ganscan.reports.schema import iso_from_us

SKIPPED = "skipped"


@dataclass
class ScanSettings:
    paths: tuple[str, ...]
    recursive: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    batch_size: int = 32
    workers: int = 2
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES  # memory one file may need to decode (decode_cost)
    threshold: float | None = None
    low_jpeg: dict | None = None   # --low-jpeg-threshold: {"threshold", "max_quality"} for low-quality JPEG files
    read_exif: bool = True
    evidence: bool = True  # provenance columns and the evidence verdict (evaluate needs only scores)
    skip: dict = field(default_factory=dict)  # path -> (bytes, mtime) already reported (--resume)
    rank: int = 0
    world_size: int = 1
    file_timeout: float | None = DEFAULT_FILE_TIMEOUT  # seconds a decoding worker may spend on one file (None: no limit)


PROVENANCE_KEYS = ("phash", "dhash", "changed", "xmp", "xmp_creator_tool", "digital_source_type", "c2pa",
                   "c2pa_claim_generator", "generator_text", "jpeg_quality", "jpeg_tables", "repeated_lines")


def base_row(path: str) -> dict:
    return {"path": path, "sha256": None, "bytes": None, "modified": None, "format": None, "width": None,
            "height": None, "score": None, "verdict": None, "error": None, "note": None, **empty_exif(),
            **{k: None for k in PROVENANCE_KEYS}}


def model_views(img, cfgs: tuple[DetectorConfig, ...], jpeg: bool = False) -> tuple[torch.Tensor, ...]:
    """The normalised views of one decoded image for each detector's preprocessing: the pixel views are cut
    once per crop, tile or full-image rule, and detectors that also normalise alike share one tensor. ``jpeg``:
    the file is a JPEG (a detector whose half-size read is for lossless files skips making it)."""
    arr = np.array(img if img.mode == "RGB" else img.convert("RGB"))   # one pixel copy for every detector
    views: dict[tuple, np.ndarray] = {}
    made: dict[tuple, torch.Tensor] = {}
    out = []
    for cfg in cfgs:
        pre = cfg.preprocessing()
        cut = tuple(sorted((k, v) for k, v in pre.items() if k not in ("mean", "std")))
        key = (cut, tuple(pre["mean"]), tuple(pre["std"]))
        if cut not in views:
            views[cut] = views_uint8(arr, cfg, jpeg)
        if key not in made:
            made[key] = normalize(views[cut], cfg)
        out.append(made[key])
    return tuple(out)


def process_file(path: str, explicit: bool, cfgs: tuple[DetectorConfig, ...], settings: ScanSettings):
    """Everything a worker does for one file: (row, one views tensor per detector, or None). The file is
    read and decoded once, whatever the number of detectors. Never raises for a file."""
    row = base_row(path)
    try:
        prev = settings.skip.get(path)
        if prev is not None:
            st = os.stat(path)
            if (st.st_size, st.st_mtime_ns // 1000) == prev:
                row.update(verdict=SKIPPED, note="already in report")
                return row, None
        data, info = read_file(path)
    except DecodeError as exc:
        row.update(verdict="error", error=str(exc))
        return row, None
    except OSError as exc:
        row.update(verdict="error", error=f"cannot read file: {exc.strerror or exc}")
        return row, None
    row.update(sha256=info.sha256, bytes=info.bytes, modified=iso_from_us(info.mtime_us),
               changed=iso_from_us(info.ctime_us))
    if not explicit and sniff(data[:64]) is None and not looks_like_image_name(path):
        row.update(verdict=SKIPPED, note="not an image")  # found while walking a folder
        return row, None
    if settings.read_exif:
        row.update(read_exif(data))
    try:
        img = decode_image(data, info, settings.max_pixels, settings.max_decode_bytes)
        tensors = model_views(img, cfgs, info.format == "JPEG")
    except DecodeError as exc:
        row.update(verdict="error", error=str(exc), format=info.format)
        return row, None
    except Exception as exc:  # a decoder bug must not stop the scan
        row.update(verdict="error", error=f"decoder failure: {type(exc).__name__}: {exc}"[:200],
                   format=info.format)
        return row, None
    row.update(format=info.format, width=info.width, height=info.height,
               note="; ".join(info.notes) or None)
    if info.format == "JPEG" and info.quantization:   # a low-quality JPEG may have a threshold of its own
        row["jpeg_quality"] = jpeg_quality(info.quantization)
    if not settings.evidence:
        return row, tensors
    try:
        grey = img.convert("L")   # once for both hashes
        row.update(provenance(data, info.format, info.text, info.quantization), phash=phash(grey), dhash=dhash(grey),
                   repeated_lines=repeated_lines(img))
    except Exception as exc:  # evidence is extra: never lose the row over it
        row["note"] = "; ".join(x for x in (row["note"], f"provenance failed: {type(exc).__name__}") if x)
    return row, tensors


def _jobs(settings: ScanSettings) -> Iterator[tuple[str, bool]]:
    """(path, named explicitly) of the files this rank scans: every world_size-th of the sorted walk."""
    for i, found in enumerate(discover(settings.paths, settings.recursive, settings.include, settings.exclude)):
        if i % settings.world_size == settings.rank:
            yield found.path, found.explicit


def failed_row(path: str, reason: str) -> dict:
    """The row of a file whose decoding worker crashed or ran out of time."""
    row = base_row(path)
    row.update(verdict="error", error=reason)
    try:
        st = os.stat(path)
        row.update(bytes=st.st_size, modified=iso_from_us(st.st_mtime_ns // 1000),
                   changed=iso_from_us(st.st_ctime_ns // 1000))
    except OSError:
        pass
    return row


def file_items(settings: ScanSettings, cfgs: tuple[DetectorConfig, ...],
               on_failure=None) -> Iterator[list[tuple[dict, tuple[torch.Tensor, ...] | None]]]:
    """Batches of (row, views tensors or None) in discovery order. With workers, every file is read and
    decoded in a supervised worker process (ganscan.data.supervise): a crash or a time-out costs that
    file an error row, handed to ``on_failure`` as soon as it happens; with ``workers == 0`` everything
    runs in this process (no such protection)."""
    if settings.workers > 0:
        from ganscan.data.supervise import supervised_items

        yield from supervised_items(_jobs(settings),
                                    lambda path, explicit: process_file(path, explicit, cfgs, settings), failed_row,
                                    settings.workers, settings.batch_size, settings.file_timeout, init=worker_init,
                                    on_failure=on_failure)
        return
    batch = []
    for path, explicit in _jobs(settings):
        batch.append(process_file(path, explicit, cfgs, settings))
        if len(batch) >= settings.batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of an eval-mode model with every BatchNorm2d that directly follows a Conv2d folded into the
    convolution's weights (in a Sequential, and in torchvision's ``convN``/``bnN`` residual blocks): the same
    function, one pass over the activations fewer per convolution. ``model`` itself is left as it was."""
    import copy

    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fold(m: nn.Module) -> None:
        for child in m.children():
            fold(child)
        if isinstance(m, nn.Sequential):
            for i in range(len(m) - 1):
                if isinstance(m[i], nn.Conv2d) and isinstance(m[i + 1], nn.BatchNorm2d) and m[i + 1].track_running_stats:
                    m[i], m[i + 1] = fuse_conv_bn_eval(m[i], m[i + 1]), nn.Identity()
        for i in range(1, 4):
            conv, bn = getattr(m, f"conv{i}", None), getattr(m, f"bn{i}", None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                setattr(m, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                setattr(m, f"bn{i}", nn.Identity())

    if not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):
        return model
    model = copy.deepcopy(model).eval()
    fold(model)
    return model


def prepare_model(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    """The model ready for scoring: on the device, in eval mode, BatchNorm folded into the convolutions
    before it (a copy then: ``model`` keeps its own layers and state dict), channels-last on request."""
    model = fold_batchnorm(model.to(precision.device).eval())
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


@torch.inference_mode()
def forward_logits(model: torch.nn.Module, tensors: list, precision: Precision,
                   max_batch: int = 64, jpeg: list[bool] | None = None, half_margin: float = 0.0,
                   half_lossless: bool = False, half_jpeg_margin: float | None = None, pool: str = "mean",
                   pool_jpeg_only: bool = False) -> list[float]:
    """Mean logit per image for a list of (T,3,H,W) tensors; same-shape views are batched together. An image's
    ``ScaleViews`` pair (a ``half_tiles`` detector) scores the larger of its native mean logit and its half-size
    mean logit less ``half_margin`` (the native read alone when the half-size read has no tiles, or with
    ``half_lossless`` when ``jpeg`` says the file is a JPEG, unless ``half_jpeg_margin`` is given: a JPEG's half-size
    read, when its views have one, then counts at that margin). Each read's tile logits are pooled by ``pool``
    (``preprocess.pool_logits``: the mean unless given); with ``pool_jpeg_only`` a file that is not a JPEG keeps the
    mean.

    ``jpeg``: whether each image's file is a JPEG. A model with ``format_aware`` set (a fusion with a JPEG branch)
    receives it as one flag per tile; other models ignore it, and without it every image is read as lossless."""
    aware = jpeg is not None and getattr(model, "format_aware", False)
    if jpeg is not None and len(jpeg) != len(tensors):
        raise ValueError(f"{len(jpeg)} format flags for {len(tensors)} images")
    reads: list[torch.Tensor] = []   # every read of every image, and the image it belongs to
    owner: list[int] = []
    less: list[float] = []           # subtracted from the read's mean logit: the margin, for a half-size read
    pools: list[str] = []            # how each read's tiles are pooled
    for i, t in enumerate(tensors):
        is_jpeg = jpeg is not None and jpeg[i]
        image_pool = "mean" if pool_jpeg_only and not is_jpeg else pool
        two = isinstance(t, ScaleViews) and not (half_lossless and is_jpeg and half_jpeg_margin is None)
        margin = half_jpeg_margin if is_jpeg and half_jpeg_margin is not None else half_margin
        for r, m in zip(t, (0.0, margin)) if two else ((t.native if isinstance(t, ScaleViews) else t, 0.0),):
            if r.shape[0]:
                reads.append(r)
                owner.append(i)
                less.append(m)
                pools.append(image_pool)
    counts = [t.shape[0] for t in reads]
    means: list[float | None] = [None] * len(reads)
    groups: dict[tuple, list[int]] = {}
    for j, t in enumerate(reads):
        groups.setdefault(tuple(t.shape[1:]), []).append(j)
    for idxs in groups.values():
        for start in range(0, len(idxs), max_batch):
            part = idxs[start:start + max_batch]
            x = torch.cat([reads[j] for j in part]).to(precision.device, non_blocking=True)
            if precision.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with precision.autocast():
                if aware:
                    flags = torch.cat([torch.full((counts[j],), bool(jpeg[owner[j]])) for j in part])
                    logits = model(x, jpeg=flags.to(precision.device, non_blocking=True))
                else:
                    logits = model(x)
            agg = aggregate_logits(logits.float().reshape(-1), [counts[j] for j in part], [pools[j] for j in part])
            for j, v in zip(part, agg.cpu().tolist()):
                means[j] = v
    out: list[float | None] = [None] * len(tensors)
    for j, v, m in zip(owner, means, less):
        out[j] = v - m if out[j] is None else max(out[j], v - m)
    return out  # type: ignore[return-value]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def scan_batches(settings: ScanSettings, detectors: LoadedDetector | list[LoadedDetector], precision: Precision,
                 on_failure=None) -> Iterator[list[dict]]:
    """Yield finished rows, one list per batch, one row for every file: scored, an ``error`` row (a file
    that cannot be read or decoded keeps its row, with the reason), or ``skipped`` (already in the report
    being resumed, or a non-image found in a folder), which the caller counts but does not report.
    ``on_failure(row)`` receives, at once, a finished copy of the row of a file that crashed or stalled
    its worker (the scan journals it before going on); the row also comes again in its batch.

    With several detectors every file is decoded once and scored by each: the first gives ``score`` and
    ``verdict`` (and the evidence), and each one ``score_<name>`` and ``verdict_<name>`` (``column_names``).
    """
    dets = [detectors] if isinstance(detectors, LoadedDetector) else list(detectors)
    models = [prepare_model(d.model, precision) for d in dets]
    names = column_names(dets) if len(dets) > 1 else []
    main = dets[0]
    run = main.run_info()
    stamp = {"model": run["model"], "weights_sha256": run["weights_sha256"],
             "preprocessing": run["preprocessing"], "ganscan_version": __version__}

    def threshold_of(k: int, row: dict) -> float:   # the file's: the model's, or --threshold / --low-jpeg-threshold
        return dets[k].threshold_for(row.get("format"), row.get("jpeg_quality"), settings.threshold, settings.low_jpeg)

    def finish(row: dict, now: str) -> dict:
        row.update(stamp)
        row["threshold"] = threshold_of(0, row)
        row["scanned_at"] = now
        for name in names:   # a file that cannot be read is an error for every model
            row.setdefault(f"score_{name}", None)
            row.setdefault(f"verdict_{name}", row["verdict"] if row["verdict"] == "error" else None)
        if settings.evidence and row["verdict"] != SKIPPED:
            row.update(assess(row, row["threshold"], main.config.input_size, main.placeholder))
        return row

    failed = None
    if on_failure is not None:
        def failed(row):
            on_failure(finish(dict(row), datetime.now(timezone.utc).isoformat()))

    for items in file_items(settings, tuple(d.config for d in dets), failed):
        ready = [(row, t) for row, t in items if t is not None]
        for k, model in enumerate(models if ready else ()):
            logits = forward_logits(model, [t[k] for _, t in ready], precision, max_batch=max(settings.batch_size, 1),
                                    jpeg=[row.get("format") == "JPEG" for row, _ in ready],
                                    half_margin=dets[k].config.half_margin, half_lossless=dets[k].config.half_lossless,
                                    half_jpeg_margin=dets[k].config.jpeg_margin, pool=dets[k].config.tile_pool,
                                    pool_jpeg_only=dets[k].config.pool_jpeg_only)
            for (row, _), logit in zip(ready, logits):
                score = sigmoid(logit)
                verdict = "fake" if score >= threshold_of(k, row) else "real"
                if k == 0:
                    row["score"], row["verdict"] = round(score, 6), verdict
                if names:
                    row[f"score_{names[k]}"], row[f"verdict_{names[k]}"] = round(score, 6), verdict
        now = datetime.now(timezone.utc).isoformat()
        for row, _ in items:
            finish(row, now)
        yield [row for row, _ in items]


class Throughput:
    def __init__(self):
        self.start = time.perf_counter()
        self.images = 0

    def add(self, n: int) -> None:
        self.images += n

    @property
    def rate(self) -> float:
        dt = time.perf_counter() - self.start
        return self.images / dt if dt > 0 else 0.0

