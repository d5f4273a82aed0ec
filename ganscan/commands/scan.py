"""ganscan scan: score every image under the given paths."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import click

from ganscan.cli import EXIT_FAKE_FOUND, device_options, guard_options, loader_options, quiet_option
from ganscan.errors import GanscanError
from ganscan.reports.writers import FORMATS

EXAMPLES = """
\b
Examples:
  ganscan scan examples/                        # table on a terminal
  ganscan scan ~/Pictures | jq 'select(.verdict=="fake")'
  ganscan scan photos/ -o report.parquet        # Parquet report (also .csv .json .jsonl)
  ganscan scan photos/ -o report.parquet --resume   # continue an interrupted scan
  ganscan scan upload.jpg --fail-on-fake        # exit code 3 when it looks generated
  torchrun --nproc-per-node 2 -m ganscan scan big/ -o shards.parquet  # one part file per rank
"""


@click.command("scan", epilog=EXAMPLES)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-m", "--model", default=None, metavar="NAME|FILE",
              help="Shipped weights name (see `ganscan models`) or a .safetensors checkpoint. Default: the shipped default.")
@click.option("--recursive/--no-recursive", default=True, show_default=True, help="Descend into sub-folders.")
@click.option("--include", multiple=True, metavar="GLOB", help="Only files matching (repeatable), e.g. '*.jpg'.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files or folders matching (repeatable).")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="stdout format (default: table on a terminal, jsonl when piped; none with -o).")
@click.option("-o", "--output", default=None, metavar="FILE",
              help="Write a report; format from the extension (.parquet .csv .json .jsonl).")
@click.option("--force", is_flag=True, help="Overwrite an existing report.")
@click.option("--resume", is_flag=True, help="Continue an interrupted scan from its report; reported files are skipped.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Score at or above which a file is called fake (default: the model's calibrated threshold).")
@click.option("--fail-on-fake", is_flag=True, help="Exit with code 3 when any file is called fake.")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Decompression-bomb guard: refuse images with more pixels (default 150,000,000).")
@click.option("--no-exif", is_flag=True, help="Do not read EXIF metadata.")
@guard_options
@device_options
@loader_options
@quiet_option
def command(paths, model, recursive, include, exclude, fmt, output, force, resume, threshold, fail_on_fake,
            max_pixels, no_exif, file_timeout, max_decode_mb, device, precision, batch_size, workers):
    """Score images: P(fake) per file, with hashes and EXIF.

    PATHS are files and folders. Image types are recognised by content (JPEG, PNG, WebP, GIF/APNG,
    BMP, TIFF, HEIC/HEIF/AVIF, ICO, TGA). Files that cannot be read become error rows; the scan still
    exits 0. Progress and the summary go to stderr.
    """
    from ganscan.core.device import default_workers
    from ganscan.detectors.load import open_detector
    from ganscan.console import Progress, info
    from ganscan.data.decode import DEFAULT_MAX_PIXELS
    from ganscan.core.device import describe_device, distributed_env
    from ganscan.detectors.inference import SKIPPED, ScanSettings, Throughput, scan_batches
    from ganscan.reports.sink import ReportFile
    from ganscan.reports.writers import WRITERS, stdout_format

    for p in paths:
        if not os.path.lexists(p):
            raise GanscanError(f"path not found: {p}")
    if resume and not output:
        raise GanscanError("--resume needs the report to continue", hint="pass -o REPORT")
    dev, prec, detector = open_detector(model, device, precision)
    rank, world = distributed_env()
    if workers is None:
        workers = default_workers()
    settings = ScanSettings(paths=tuple(paths), recursive=recursive, include=include, exclude=exclude,
                            batch_size=batch_size, workers=workers,
                            max_pixels=max_pixels or DEFAULT_MAX_PIXELS, threshold=threshold,
                            read_exif=not no_exif, rank=rank, world_size=world, file_timeout=file_timeout,
                            max_decode_bytes=max_decode_mb * 2 ** 20)
    run_meta = {
        "command": " ".join(["ganscan", *sys.argv[1:]]) if sys.argv and "ganscan" in sys.argv[0] else
                   "ganscan scan " + " ".join(paths),
        "ganscan_version": detector.meta.get("ganscan_version"),
        "model": detector.run_info(),
        "model_card": {k: v for k, v in detector.meta.items() if k not in ("metrics_table",)},
        "host": {"device": describe_device(dev), "precision": prec.name, "platform": platform.platform(),
                 "python": platform.python_version(), "rank": rank, "world_size": world},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    from ganscan import __version__

    run_meta["ganscan_version"] = __version__

    report = None
    if output:
        out_path = output
        if world > 1:
            Path(output).mkdir(parents=False, exist_ok=True) if Path(output).parent.exists() else None
            out_path = str(Path(output) / f"part-{rank:05d}{Path(output).suffix or '.parquet'}")
        report = ReportFile(out_path, None, force, resume, run_meta)
        settings.skip = report.previous()
    out_fmt = fmt if (fmt or not output) else None
    if out_fmt is None and not output:
        out_fmt = stdout_format(None)
    sink = None
    if out_fmt:
        out_fmt = stdout_format(out_fmt)
        if WRITERS[out_fmt].binary:
            raise GanscanError(f"{out_fmt} cannot be written to stdout", hint=f"use -o report.{out_fmt}")
        title = f"ganscan {__version__} - model {detector.label}" + (" (UNTRAINED PLACEHOLDER)" if detector.placeholder else "")
        sink = WRITERS[out_fmt](sys.stdout, {**run_meta, "table_title": title})

    counts = {"files": 0, "fake": 0, "real": 0, "error": 0, "not_image": 0, "resumed": 0}
    rate = Throughput()
    try:
        with Progress("scanning", total=None, fields=("img/s",)) as bar:
            on_failure = (lambda row: report.append([row])) if report is not None else None
            for rows in scan_batches(settings, detector, prec, on_failure):
                kept = []
                for r in rows:
                    if r["verdict"] == SKIPPED:
                        counts["resumed" if r.get("note") == "already in report" else "not_image"] += 1
                        continue
                    counts[r["verdict"]] += 1
                    counts["files"] += 1
                    kept.append(r)
                rate.add(sum(1 for r in kept if r["verdict"] != "error"))
                if report is not None and kept:
                    report.append(kept)
                if sink is not None and kept:
                    sink.write(kept)
                bar.update(advance=len(rows), **{"img/s": rate.rate})
        if sink is not None:
            sink.close()
    except BrokenPipeError:
        _silence_broken_pipe()
    total_rows = report.finalize() if report is not None else None
    summary = (f"{counts['files']} files: {counts['fake']} fake, {counts['real']} real, {counts['error']} errors"
               + (f", {counts['not_image']} non-image file(s) skipped" if counts["not_image"] else "")
               + (f", {counts['resumed']} already reported" if counts["resumed"] else "")
               + f" | {rate.rate:.1f} images/s on {describe_device(dev)} ({prec.name})"
               + f" | model {detector.label}" + (" [PLACEHOLDER]" if detector.placeholder else ""))
    info(summary)
    if report is not None:
        info(f"report: {report.path} ({total_rows} rows)")
    if os.environ.get("GANSCAN_SUMMARY_JSON"):
        Path(os.environ["GANSCAN_SUMMARY_JSON"]).write_text(json.dumps({**counts, "images_per_s": rate.rate}))
    if fail_on_fake and counts["fake"]:
        sys.exit(EXIT_FAKE_FOUND)


def _silence_broken_pipe() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
