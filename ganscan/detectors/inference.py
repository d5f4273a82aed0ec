"""Batched inference over a stream of files: decode in worker processes, forward in the main one."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

import torch

from ganscan import __version__
from ganscan.data.decode import (DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_PIXELS, DecodeError,
                                 decode_image, read_file)
from ganscan.data.discover import discover
from ganscan.data.exif import empty_exif, read_exif
from ganscan.data.formats import looks_like_image_name, sniff
from ganscan.data.provenance import assess, dhash, phash, provenance
from ganscan.detectors.preprocess import aggregate_logits, normalize, views_uint8
from ganscan.detectors.load import LoadedDetector
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
    read_exif: bool = True
    evidence: bool = True  # provenance columns and the evidence verdict (evaluate needs only scores)
    skip: dict = field(default_factory=dict)  # path -> (bytes, mtime) already reported (--resume)
    rank: int = 0
    world_size: int = 1
    file_timeout: float | None = DEFAULT_FILE_TIMEOUT  # seconds a decoding worker may spend on one file (None: no limit)


PROVENANCE_KEYS = ("phash", "dhash", "changed", "xmp", "xmp_creator_tool", "digital_source_type", "c2pa",
                   "c2pa_claim_generator", "generator_text", "jpeg_quality", "jpeg_tables")


def base_row(path: str) -> dict:
    return {"path": path, "sha256": None, "bytes": None, "modified": None, "format": None, "width": None,
            "height": None, "score": None, "verdict": None, "error": None, "note": None, **empty_exif(),
            **{k: None for k in PROVENANCE_KEYS}}


def process_file(path: str, explicit: bool, cfg: DetectorConfig, settings: ScanSettings):
    """Everything a worker does for one file: (row, views tensor or None). Never raises for a file."""
    row = base_row(path)
    try:
        if settings.skip:
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
        views = views_uint8(img, cfg)
        tensor = normalize(views, cfg)
    except DecodeError as exc:
        row.update(verdict="error", error=str(exc), format=info.format)
        return row, None
    except Exception as exc:  # a decoder bug must not stop the scan
        row.update(verdict="error", error=f"decoder failure: {type(exc).__name__}: {exc}"[:200],
                   format=info.format)
        return row, None
    row.update(format=info.format, width=info.width, height=info.height,
               note="; ".join(info.notes) or None)
    if not settings.evidence:
        return row, tensor
    try:
        row.update(provenance(data, info.format, info.text, info.quantization), phash=phash(img), dhash=dhash(img))
    except Exception as exc:  # evidence is extra: never lose the row over it
        row["note"] = "; ".join(x for x in (row["note"], f"provenance failed: {type(exc).__name__}") if x)
    return row, tensor


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


def file_items(settings: ScanSettings, cfg: DetectorConfig,
               on_failure=None) -> Iterator[list[tuple[dict, torch.Tensor | None]]]:
    """Batches of (row, views tensor or None) in discovery order. With workers, every file is read and
    decoded in a supervised worker process (ganscan.data.supervise): a crash or a time-out costs that
    file an error row, handed to ``on_failure`` as soon as it happens; with ``workers == 0`` everything
    runs in this process (no such protection)."""
    if settings.workers > 0:
        from ganscan.data.supervise import supervised_items

        def process(path, explicit):
            return process_file(path, explicit, cfg, settings)

        yield from supervised_items(_jobs(settings), process, failed_row, settings.workers, settings.batch_size,
                                    settings.file_timeout, init=worker_init, on_failure=on_failure)
        return
    batch = []
    for path, explicit in _jobs(settings):
        batch.append(process_file(path, explicit, cfg, settings))
        if len(batch) >= settings.batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def prepare_model(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    model = model.to(precision.device).eval()
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


@torch.inference_mode()
def forward_logits(model: torch.nn.Module, tensors: list[torch.Tensor], precision: Precision,
                   max_batch: int = 64) -> list[float]:
    """Mean logit per image for a list of (T,3,H,W) tensors; same-shape views are batched together."""
    counts = [t.shape[0] for t in tensors]
    out: list[float | None] = [None] * len(tensors)
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape[1:]), []).append(i)
    for idxs in groups.values():
        for start in range(0, len(idxs), max_batch):
            part = idxs[start:start + max_batch]
            x = torch.cat([tensors[i] for i in part]).to(precision.device, non_blocking=True)
            if precision.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with precision.autocast():
                logits = model(x)
            logits = logits.float().reshape(-1)
            agg = aggregate_logits(logits, [counts[i] for i in part])
            for i, v in zip(part, agg.cpu().tolist()):
                out[i] = v
    return out  # type: ignore[return-value]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def scan_batches(settings: ScanSettings, detector: LoadedDetector, precision: Precision,
                 on_failure=None) -> Iterator[list[dict]]:
    """Yield finished rows, one list per batch, one row for every file: scored, an ``error`` row (a file
    that cannot be read or decoded keeps its row, with the reason), or ``skipped`` (already in the report
    being resumed, or a non-image found in a folder), which the caller counts but does not report.
    ``on_failure(row)`` receives, at once, a finished copy of the row of a file that crashed or stalled
    its worker (the scan journals it before going on); the row also comes again in its batch."""
    model = prepare_model(detector.model, precision)
    threshold = detector.threshold if settings.threshold is None else settings.threshold
    run = detector.run_info()
    stamp = {"threshold": threshold, "model": run["model"], "weights_sha256": run["weights_sha256"],
             "preprocessing": run["preprocessing"], "ganscan_version": __version__}

    def finish(row: dict, now: str) -> dict:
        row.update(stamp)
        row["scanned_at"] = now
        if settings.evidence and row["verdict"] != SKIPPED:
            row.update(assess(row, threshold, detector.config.input_size, detector.placeholder))
        return row

    failed = None
    if on_failure is not None:
        def failed(row):
            on_failure(finish(dict(row), datetime.now(timezone.utc).isoformat()))

    for items in file_items(settings, detector.config, failed):
        ready = [(row, t) for row, t in items if t is not None]
        if ready:
            logits = forward_logits(model, [t for _, t in ready], precision, max_batch=max(settings.batch_size, 1))
            for (row, _), logit in zip(ready, logits):
                score = sigmoid(logit)
                row["score"] = round(score, 6)
                row["verdict"] = "fake" if score >= threshold else "real"
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

