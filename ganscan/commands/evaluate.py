"""ganscan evaluate: per-test-set accuracy, AP and ROC-AUC of a detector, like the papers' tables."""

from __future__ import annotations

import sys

import click

from ganscan.cli import device_options, loader_options, quiet_option
from ganscan.errors import GanscanError
from ganscan.reports.evaluation import FORMATS

EXAMPLES = """
\b
Examples:
  ganscan evaluate runs/r18/best.safetensors data/val/        # one row per sub-folder, plus the mean
  ganscan evaluate default test/stargan test/cyclegan --threshold 0.5
  ganscan evaluate model.safetensors val/ -o results.csv --plots plots/
  ganscan evaluate model.safetensors val/ --perturb jpeg:90,jpeg:75,blur:1,resize:0.5
  ganscan evaluate model.safetensors val/ --format json | jq '.mean'
  ganscan evaluate -m ganscan-fusion-v40 -m ganscan-spectrum-v1 val/   # two detectors, one table
"""


@click.command("evaluate", epilog=EXAMPLES)
@click.argument("args", nargs=-1, metavar="CHECKPOINT DATA...")
@click.option("-m", "--model", "models", multiple=True, metavar="NAME|FILE",
              help="Evaluate this detector instead of CHECKPOINT (then every argument is DATA); repeat it for "
                   "several detectors in one table, each file decoded once.")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="stdout format (default: table on a terminal, json when piped); with -o, the file's format.")
@click.option("-o", "--output", default=None, metavar="FILE", help="Write results (.json .csv .parquet).")
@click.option("--plots", default=None, metavar="DIR",
              help="Write <set>_roc.png, <set>_pr.png and <set>_misclassified.png per set.")
@click.option("--misclassified", type=click.IntRange(0, 200), default=24, show_default=True,
              help="How many of the most confident mistakes the grid shows.")
@click.option("--perturb", default=None, metavar="SPEC",
              help="Re-run on perturbed copies, e.g. jpeg:90,jpeg:75,blur:1,resize:0.5 (bilinear; nearest:2, "
                   "bicubic:2, lanczos:2 choose the filter); reports the drop.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Decision threshold (default: the checkpoint's calibrated one).")
@click.option("--low-jpeg-threshold", type=click.FloatRange(0, 1), default=None, metavar="T",
              help="Call a JPEG file of estimated quality --low-jpeg-quality or less fake at T instead (real photos "
                   "enlarged and then re-compressed: the README's advice).")
@click.option("--low-jpeg-quality", type=click.IntRange(1, 100), default=80, show_default=True, metavar="Q",
              help="The highest JPEG quality --low-jpeg-threshold applies to.")
@click.option("--max-pixels", type=click.IntRange(1), default=None, help="Decompression-bomb guard.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@device_options
@loader_options
@quiet_option
def command(args, models, fmt, output, plots, misclassified, perturb, threshold, low_jpeg_threshold, low_jpeg_quality,
            max_pixels, force, device, precision, batch_size, workers):
    """Evaluate a detector on labelled test sets: n real, n fake, accuracy (all, real, fake), AP, ROC-AUC.

    CHECKPOINT is a shipped weights name or a .safetensors file (or give -m/--model, repeatable). Each DATA folder is a test set in the
    training layouts (0_real/1_fake or real/fake, optionally per class); a folder of such sets gives
    one row per sub-folder. Scores come from scan's own pipeline, so they equal `ganscan scan`'s.
    A set with one class reports what it can (accuracy on real = 1 - false-positive rate) and n/a for
    AP and AUC.
    """
    from ganscan.console import Progress, info, warn
    from ganscan.core.device import default_workers
    from ganscan.data.augment import parse_perturbations
    from ganscan.data.datasets import test_sets, unique_names
    from ganscan.data.decode import DEFAULT_MAX_PIXELS
    from ganscan.detectors.evaluate import EvalSettings, evaluate_models
    from ganscan.detectors.load import open_detectors
    from ganscan.reports.evaluation import (results_format, results_payload, show_results, write_figures,
                                            write_results)

    data = list(args) if models else list(args[1:])
    if not data:   # the messages click gives for two required arguments
        raise click.UsageError(f"Missing argument '{'DATA...' if args or models else 'CHECKPOINT'}'.")
    try:
        perturbations = parse_perturbations(perturb) if perturb else []
    except ValueError as exc:
        raise GanscanError(f"--perturb: {exc}") from None
    out_fmt = results_format(output, fmt, force)
    sets = [s for d in data for s in test_sets(d)]
    unique_names(sets)
    _, prec, detectors = open_detectors(models or args[:1], device, precision)
    settings = EvalSettings(batch_size=batch_size, workers=default_workers() if workers is None else workers,
                            max_pixels=max_pixels or DEFAULT_MAX_PIXELS, threshold=threshold,
                            low_jpeg=None if low_jpeg_threshold is None else
                            {"threshold": low_jpeg_threshold, "max_quality": low_jpeg_quality})
    for s in sets:
        if s.n_real == 0 or s.n_fake == 0:
            info(f"note: test set {s.name!r} has only {'fake' if s.n_real == 0 else 'real'} images: "
                 f"AP and AUC are not applicable")
    total = sum(len(s) for s in sets) * (1 + len(perturbations))
    with Progress("evaluating", total=total, fields=()) as bar:
        results = evaluate_models(detectors, sets, prec, settings, perturbations,
                                  progress=lambda n: bar.update(advance=n))
    for r in results[0].sets:
        if r.errors:
            warn(f"{r.name}: {len(r.errors)} unreadable images left out (e.g. {next(iter(r.errors))})")
    if plots:
        info(f"plots: {len(write_figures(detectors, results, plots, misclassified))} PNG files in {plots}")
    payload = results_payload(detectors, results)
    if output:
        write_results(output, out_fmt, payload)
        info(f"results: {output}")
        if sys.stdout.isatty() and fmt is None:
            show_results("table", payload, detectors, results)
    else:
        show_results(out_fmt, payload, detectors, results)
