"""ganscan evaluate: per-test-set accuracy, AP and ROC-AUC of a detector, like the papers' tables."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ganscan.cli import device_options, loader_options, quiet_option
from ganscan.errors import GanscanError

EXAMPLES = """
\b
Examples:
  ganscan evaluate runs/r18/best.safetensors data/val/        # one row per sub-folder, plus the mean
  ganscan evaluate default test/stargan test/cyclegan --threshold 0.5
  ganscan evaluate model.safetensors val/ -o results.csv --plots plots/
  ganscan evaluate model.safetensors val/ --perturb jpeg:90,jpeg:75,blur:1,resize:0.5
  ganscan evaluate model.safetensors val/ --format json | jq '.mean'
"""

FORMATS = ("table", "json", "csv", "parquet")


def _fmt(v, pct=False):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{100 * v:.1f}" if pct else f"{v:.4f}"
    return str(v)


@click.command("evaluate", epilog=EXAMPLES)
@click.argument("checkpoint", metavar="CHECKPOINT")
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="stdout format (default: table on a terminal, json when piped); with -o, the file's format.")
@click.option("-o", "--output", default=None, metavar="FILE", help="Write results (.json .csv .parquet).")
@click.option("--plots", default=None, metavar="DIR",
              help="Write <set>_roc.png, <set>_pr.png and <set>_misclassified.png per set.")
@click.option("--misclassified", type=click.IntRange(0, 200), default=24, show_default=True,
              help="How many of the most confident mistakes the grid shows.")
@click.option("--perturb", default=None, metavar="SPEC",
              help="Re-run on perturbed copies, e.g. jpeg:90,jpeg:75,blur:1,resize:0.5; reports the drop.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Decision threshold (default: the checkpoint's calibrated one).")
@click.option("--max-pixels", type=click.IntRange(1), default=None, help="Decompression-bomb guard.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@device_options
@loader_options
@quiet_option
def command(checkpoint, data, fmt, output, plots, misclassified, perturb, threshold, max_pixels, force, device,
            precision, batch_size, workers):
    """Evaluate a detector on labelled test sets: n real, n fake, accuracy (all, real, fake), AP, ROC-AUC.

    CHECKPOINT is a shipped weights name or a .safetensors file. Each DATA folder is a test set in the
    training layouts (0_real/1_fake or real/fake, optionally per class); a folder of such sets gives
    one row per sub-folder. Scores come from scan's own pipeline, so they equal `ganscan scan`'s.
    A set with one class reports what it can (accuracy on real = 1 - false-positive rate) and n/a for
    AP and AUC.
    """
    from ganscan.console import Progress, info, stdout_console, warn
    from ganscan.data.augment import parse_perturbations
    from ganscan.data.datasets import test_sets, unique_names
    from ganscan.data.decode import DEFAULT_MAX_PIXELS
    from ganscan.core.device import default_workers
    from ganscan.detectors.load import open_detector
    from ganscan.detectors.evaluate import EvalSettings, evaluate

    try:
        perturbations = parse_perturbations(perturb) if perturb else []
    except ValueError as exc:
        raise GanscanError(f"--perturb: {exc}") from None
    out_fmt = fmt
    if output:
        ext = Path(output).suffix.lower().lstrip(".")
        if fmt is None:
            if ext not in ("json", "csv", "parquet"):
                raise GanscanError(f"cannot tell the format of {output}", hint="use .json, .csv or .parquet, or --format")
            out_fmt = ext
        if out_fmt == "table":
            raise GanscanError("a table cannot be written to a file", hint="use .json, .csv or .parquet")
        if os.path.exists(output) and not force:
            raise GanscanError(f"{output} exists", hint="pass --force to overwrite it")
    elif fmt is None:
        out_fmt = "table" if sys.stdout.isatty() else "json"
    if out_fmt == "parquet" and not output:
        raise GanscanError("parquet cannot be written to stdout", hint="use -o results.parquet")

    sets = []
    for d in data:
        sets.extend(test_sets(d))
    unique_names(sets)
    _, prec, detector = open_detector(checkpoint, device, precision)
    if workers is None:
        workers = default_workers()
    settings = EvalSettings(batch_size=batch_size, workers=workers, max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
                            threshold=threshold)
    for s in sets:
        if s.n_real == 0 or s.n_fake == 0:
            info(f"note: test set {s.name!r} has only {'fake' if s.n_real == 0 else 'real'} images: "
                 f"AP and AUC are not applicable")
    total = sum(len(s) for s in sets) * (1 + len(perturbations))
    with Progress("evaluating", total=total, fields=()) as bar:
        result = evaluate(detector, sets, prec, settings, perturbations, progress=lambda n: bar.update(advance=n))
    for r in result.sets:
        if r.errors:
            warn(f"{r.name}: {len(r.errors)} unreadable images left out (e.g. {next(iter(r.errors))})")

    if plots:
        from ganscan.reports.figures import misclassified_grid, roc_pr_curves

        Path(plots).mkdir(parents=True, exist_ok=True)
        written = []
        for r in result.sets:
            y, sc, _ = r.scored()
            written += roc_pr_curves(r.name, y, sc, result.threshold, plots)
            if misclassified:
                g = misclassified_grid(r.name, r.misclassified(result.threshold, misclassified), plots)
                if g:
                    written.append(g)
        info(f"plots: {len(written)} PNG files in {plots}")

    payload = {"model": detector.run_info(), **result.as_dict()}
    if output:
        _write(output, out_fmt, payload)
        info(f"results: {output}")
    if output:
        if sys.stdout.isatty() and fmt is None:
            _print_tables(stdout_console(), detector, result)
    elif out_fmt == "table":
        _print_tables(stdout_console(), detector, result)
    elif out_fmt == "json":
        click.echo(json.dumps(payload, indent=2, default=str))
    elif out_fmt == "csv":
        _csv(sys.stdout, payload["rows"])


def _csv(fh, rows):
    import csv

    w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def _write(path: str, fmt: str, payload: dict) -> None:
    from ganscan.core.checkpoint import atomic_write_bytes

    if fmt == "json":
        atomic_write_bytes(path, json.dumps(payload, indent=2, default=str).encode())
    elif fmt == "csv":
        import io

        buf = io.StringIO()
        _csv(buf, payload["rows"])
        atomic_write_bytes(path, buf.getvalue().encode())
    elif fmt == "parquet":
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(payload["rows"])
        meta = {b"ganscan": json.dumps({"model": payload["model"], "threshold": payload["threshold"],
                                        "threshold_source": payload["threshold_source"]}, default=str).encode()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        atomic_write_bytes(path, buf.getvalue())
    else:
        raise GanscanError(f"cannot write format {fmt!r} to a file")


def _print_tables(con, detector, result) -> None:
    from rich.markup import escape
    from rich.table import Table

    cols = ("set", "n real", "n fake", "acc", "real acc", "fake acc", "AP", "ROC-AUC")
    t = Table(title=escape(f"{detector.label} ({detector.config.name}, {detector.config.describe_preprocessing()}), "
                           f"threshold {result.threshold:.4g} [{result.threshold_source}], percentages"),
              header_style="bold")
    for c in cols:
        t.add_column(c, justify="left" if c == "set" else "right")

    def add(row, name, style=None):
        t.add_row(escape(name), str(row["n_real"]), str(row["n_fake"]), *(_fmt(row[k], True) for k in
                                                                 ("accuracy", "real_acc", "fake_acc", "ap", "auc")),
                  style=style)

    for r in result.sets:
        add(r.row, r.name)
    t.add_section()
    add(result.mean, "mean", style="bold")
    con.print(t)
    if not result.perturbations:
        return
    p = Table(title="Under perturbation (drop = clean - perturbed, percentage points)", header_style="bold")
    for c in ("perturbation", "set", "acc", "drop acc", "AP", "drop AP", "ROC-AUC", "drop AUC"):
        p.add_column(c, justify="left" if c in ("perturbation", "set") else "right")
    clean = {r.name: r.row for r in result.sets}
    clean["mean"] = result.mean
    for pert in result.perturbations:
        for row in [*pert["rows"], {**pert["mean"], "set": "mean"}]:
            base = clean.get(row["set"], {})
            cells = []
            for k in ("accuracy", "ap", "auc"):
                cells.append(_fmt(row.get(k), True))
                b, v = base.get(k), row.get(k)
                cells.append("n/a" if b is None or v is None else f"{100 * (b - v):+.1f}")
            p.add_row(pert["perturbation"], escape(row["set"]), *cells, style="bold" if row["set"] == "mean" else None)
        p.add_section()
    con.print(p)
