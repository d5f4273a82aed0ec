"""ganscan scan: score every image under the given paths."""

from __future__ import annotations

import sys

import click

from ganscan.cli import EXIT_FAKE_FOUND, device_options, guard_options, loader_options, quiet_option
from ganscan.reports.writers import FORMATS

EXAMPLES = """
\b
Examples:
  ganscan scan examples/                        # table on a terminal
  ganscan scan ~/Pictures | jq 'select(.verdict=="fake")'
  ganscan scan photos/ -o report.parquet        # Parquet report (also .csv .json .jsonl)
  ganscan scan photos/ -o report.parquet --resume   # continue an interrupted scan
  ganscan scan upload.jpg --fail-on-fake        # exit code 3 when it looks generated
  ganscan scan photos/ -m ganscan-fusion-v40 -m ganscan-spectrum-v1   # two models side by side, one decode
  torchrun --nproc-per-node 2 -m ganscan scan big/ -o shards.parquet  # one part file per rank
"""


@click.command("scan", epilog=EXAMPLES)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-m", "--model", "models", multiple=True, metavar="NAME|FILE",
              help="Shipped weights name (see `ganscan models`) or a .safetensors checkpoint. Default: the shipped "
                   "default. Repeat it to score every file with several models in one pass (the first gives the "
                   "verdict; each one its score_NAME and verdict_NAME columns).")
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
              help="Score at or above which a file is called fake (default: each model's calibrated threshold).")
@click.option("--low-jpeg-threshold", type=click.FloatRange(0, 1), default=None, metavar="T",
              help="Call a JPEG file of estimated quality --low-jpeg-quality or less fake at T instead (real photos "
                   "enlarged and then re-compressed: the README's advice).")
@click.option("--low-jpeg-quality", type=click.IntRange(1, 100), default=80, show_default=True, metavar="Q",
              help="The highest JPEG quality --low-jpeg-threshold applies to.")
@click.option("--fail-on-fake", is_flag=True, help="Exit with code 3 when any file is called fake.")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Decompression-bomb guard: refuse images with more pixels (default 150,000,000).")
@click.option("--no-exif", is_flag=True, help="Do not read EXIF metadata.")
@guard_options
@device_options
@loader_options
@quiet_option
def command(paths, models, recursive, include, exclude, fmt, output, force, resume, threshold, low_jpeg_threshold,
            low_jpeg_quality, fail_on_fake,
            max_pixels, no_exif, file_timeout, max_decode_mb, device, precision, batch_size, workers):
    """Score images: P(fake) per file, with hashes and EXIF.

    PATHS are files and folders. Image types are recognised by content (JPEG, PNG, WebP, GIF/APNG,
    BMP, TIFF, HEIC/HEIF/AVIF, ICO, TGA). Files that cannot be read become error rows; the scan still
    exits 0. Progress and the summary go to stderr.
    """
    from ganscan.console import Progress, info
    from ganscan.core.device import default_workers, describe_device, distributed_env
    from ganscan.data.decode import DEFAULT_MAX_PIXELS
    from ganscan.detectors.inference import ScanSettings
    from ganscan.detectors.load import open_detectors
    from ganscan.reports.scan import (check_request, models_text, open_report, open_stdout, report_schema,
                                      run_metadata, run_scan)

    check_request(paths, output, resume)
    dev, prec, detectors = open_detectors(models, device, precision)
    rank, world = distributed_env()
    settings = ScanSettings(paths=tuple(paths), recursive=recursive, include=include, exclude=exclude,
                            batch_size=batch_size, workers=default_workers() if workers is None else workers,
                            max_pixels=max_pixels or DEFAULT_MAX_PIXELS, threshold=threshold,
                            low_jpeg=None if low_jpeg_threshold is None else
                            {"threshold": low_jpeg_threshold, "max_quality": low_jpeg_quality},
                            read_exif=not no_exif, rank=rank, world_size=world, file_timeout=file_timeout,
                            max_decode_bytes=max_decode_mb * 2 ** 20)
    run_meta = run_metadata(detectors, describe_device(dev), prec, paths, rank, world)
    schema = report_schema(detectors)
    report = open_report(output, force, resume, run_meta, schema, rank, world)
    if report is not None:
        settings.skip = report.previous()
    title = f"ganscan {run_meta['ganscan_version']} - {models_text(detectors, ' (UNTRAINED PLACEHOLDER)')}"
    stdout = open_stdout(fmt, output, run_meta, schema, title)
    with Progress("scanning", total=None, fields=("img/s",)) as bar:
        counts, rate = run_scan(settings, detectors, prec, report, stdout, progress=bar)
    total_rows = report.finalize() if report is not None else None
    by_model = ", ".join(f"{name} {n}" for name, n in counts.get("fake_by_model", {}).items())
    info(f"{counts['files']} files: {counts['fake']} fake, {counts['real']} real, {counts['error']} errors"
         + (f", {counts['not_image']} non-image file(s) skipped" if counts["not_image"] else "")
         + (f", {counts['resumed']} already reported" if counts["resumed"] else "")
         + (f" (fake per model: {by_model})" if by_model else "")
         + f" | {rate.rate:.1f} images/s on {describe_device(dev)} ({prec.name})"
         + f" | {models_text(detectors, ' [PLACEHOLDER]')}")
    if report is not None:
        info(f"report: {report.path} ({total_rows} rows)")
    if fail_on_fake and counts["fake"]:
        sys.exit(EXIT_FAKE_FOUND)
