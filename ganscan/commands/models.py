"""ganscan models: architectures, shipped weights, and importing foreign checkpoints."""

from __future__ import annotations

import json

import click

from ganscan.errors import GanscanError

EXAMPLES = """
\b
Examples:
  ganscan models                      # architectures and shipped weights
  ganscan models --json | jq .weights
  ganscan models import blur_jpg_prob0.5.pth --from cnndetection -o cnndetection.safetensors
  ganscan models import NPR.pth --from npr -o npr.safetensors
  ganscan models import fc_weights.pth --from ufd --clip ViT-L-14.pt -o ufd.safetensors
  ganscan models show cnndetection.safetensors npr.safetensors   # what was imported, from which files
  ganscan models average seed0/best.safetensors seed1/best.safetensors -o soup.safetensors
  ganscan scan photos/ --model cnndetection.safetensors
"""


@click.group("models", invoke_without_command=True, epilog=EXAMPLES)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def command(ctx, as_json):
    """List detector architectures, shipped weights (with sha256 and their card's metrics) and the published
    detectors whose released weights `ganscan models import --from` reads."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import asdict

    from ganscan.core.weights import shipped_weights
    from ganscan.detectors.importers import SOURCES
    from ganscan.detectors.registry import list_detectors

    archs = [{"name": c.name, "input_size": c.input_size, "policy": c.policy, "family": c.family,
              "description": c.description} for c in list_detectors()]
    weights = [{k: c.get(k) for k in ("name", "kind", "arch", "default", "placeholder", "sha256", "metrics",
                                       "file")} for c in shipped_weights()]
    published = [{"from": k, **asdict(v)} for k, v in SOURCES.items()]
    if as_json:
        click.echo(json.dumps({"architectures": archs, "weights": weights, "published": published}, indent=2))
        return
    print_table("Detector architectures", ("name", "input", "preprocessing", "family", "description"),
                [(a["name"], str(a["input_size"]), a["policy"], a["family"], a["description"]) for a in archs])
    rows = []
    for c in weights:
        name = c["name"] + (" (default)" if c.get("default") else "") + (" PLACEHOLDER" if c.get("placeholder") else "")
        metrics = c.get("metrics") or {}
        mtext = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in metrics.items() if not isinstance(v, (dict, list)))
        rows.append((name, c.get("kind") or "", c.get("arch") or "", (c.get("sha256") or "")[:16] + "...", mtext))
    print_table("Shipped weights (weights/)", ("name", "kind", "arch", "sha256", "metrics"), rows, overflow="fold")
    print_table("Published detectors (ganscan models import FILE --from NAME)",
                ("from", "arch", "paper", "repository", "released files"),
                [(d["from"], d["arch"], d["paper"], d["repository"], d["files"]) for d in published], overflow="fold")


def print_table(title: str, columns, rows, **column) -> None:
    """A rich table on stdout: a column per name in ``columns`` (``add_column`` options ``column``), a row per
    tuple in ``rows``."""
    from rich.table import Table

    from ganscan.console import stdout_console

    t = Table(title=title, header_style="bold")
    for col in columns:
        t.add_column(col, **column)
    for row in rows:
        t.add_row(*row)
    stdout_console().print(t)


@command.command("show", epilog=EXAMPLES)
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(checkpoints, as_json):
    """What detector checkpoints are (e.g. the ones `ganscan models import` wrote): name, architecture,
    threshold (with the precision of the scores that set it, e.g. `0.6346 (bf16)`, where the checkpoint records it),
    preprocessing, origin (source files and their sha256), and the file's sha256."""
    from ganscan.detectors.load import describe_checkpoint

    rows = [describe_checkpoint(c) for c in checkpoints]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    print_table("Detector checkpoints", ("file", "name", "arch", "threshold", "preprocessing", "origin", "sha256"),
                [(r["file"], r["name"], r["arch"], f"{r['threshold']:.4g}"
                  + (f" ({r['threshold_precision']})" if r["threshold_precision"] else "")
                  + (f"; JPEG quality <= {r['threshold_low_jpeg']['max_quality']}: "
                     f"{r['threshold_low_jpeg']['threshold']:.4g}" if r["threshold_low_jpeg"] else ""), r["preprocessing"],
                  r["origin"], r["sha256"][:16] + "...") for r in rows], overflow="fold")


@command.command("import", epilog=EXAMPLES)
@click.argument("source", type=click.Path(dir_okay=False, path_type=str))
@click.option("--from", "published", metavar="NAME", default=None,
              help="The published detector the released file belongs to: cnndetection, npr, ufd or dmid "
                   "(see `ganscan models`).")
@click.option("--arch", default=None, help="Or: the registered architecture of a plain state dict.")
@click.option("--clip", "clip", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="--from ufd: the CLIP ViT-L/14 weights (OpenAI's ViT-L-14.pt or OpenCLIP's state dict).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="The .safetensors checkpoint to write (default: FROM-STEM.safetensors here).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--name", default=None, help="Name stored in the checkpoint (default: the output's stem).")
@click.option("--force", is_flag=True, help="Overwrite the output.")
def import_command(source, published, arch, clip, output, threshold, name, force):
    """Convert released weights (.pth/.pt/.safetensors, read without running pickled code) into a ganscan
    checkpoint: --from a published detector (tensors mapped by name, every one accounted for; the source and
    the files' sha256 go into the checkpoint), or --arch for a plain state dict of a registered arch."""
    from ganscan.detectors.importers import import_checkpoint

    out, sha, meta = import_checkpoint(source, published, output, arch=arch, clip=clip, name=name,
                                       threshold=threshold, force=force)
    pre = meta["preprocessing"]
    files = ", ".join(f"{f['file']} sha256 {f['sha256'][:16]}..." for f in meta["source"]["files"])
    view = "whole image" if pre["policy"] == "full" else f"{pre['policy']} {pre['input_size']}"
    click.echo(f"wrote {out} ({meta['arch']}{f', from {published}' if published else ''}: {files}; "
               f"{view}; sha256 {sha})")


def eval_settings(workers: int | None):
    """Scoring settings of the fitting commands: ``workers`` decoding processes (None: the default)."""
    from ganscan.core.device import default_workers
    from ganscan.detectors.evaluate import EvalSettings

    return EvalSettings(workers=default_workers() if workers is None else workers)


FUSE_EXAMPLES = """
\b
Examples:
  ganscan models fuse --npr runs/twins/run/best.safetensors --fit heldout/fit \\
      --calibrate heldout/negatives -o weights/fused.safetensors
  ganscan scan photos/ --model weights/fused.safetensors
  ganscan models fuse --npr run/best.safetensors --npr-jpeg run-jpeg/best.safetensors --fit heldout/fit \\
      --fit-jpeg heldout/fit-jpeg --calibrate heldout/calib --calibrate-jpeg heldout/calib-u2j -o fused.safetensors
"""


@command.command("fuse", epilog=FUSE_EXAMPLES)
@click.option("--spectrum", "spectrum_model", default="ganscan-spectrum-v1", show_default=True,
              help="The alexnet64-spectrum member (shipped name or checkpoint).")
@click.option("--npr", "npr_models", required=True, multiple=True,
              help="The npr, npr32, npr32-luma, npr32-2oct or npr32-ref member (e.g. RUN/best.safetensors); given more than once (npr32 only), the member "
                   "is their ensemble: the mean of their logits (fusion-spectrum-npr32-ens).")
@click.option("--fsd", "fsd_model", default=None,
              help="An fsd64 member (from `ganscan models fit-fsd`): fuses three members (fusion-spectrum-npr-fsd).")
@click.option("--npr-jpeg", "npr_jpeg_model", default=None,
              help="An npr32 member for JPEG files (trained on JPEG-compressed twins): the fusion gets a branch per "
                   "format (fusion-spectrum-npr32-jpeg). JPEG files are scored by it with their own weights and "
                   "threshold; other files as the plain fusion scores them.")
@click.option("--by-format", is_flag=True,
              help="A threshold per format: the fusion's one set of weights for every file, but JPEG files calibrated "
                   "on the JPEG real photos of the --calibrate (and --calibrate-jpeg) kinds and other files on the "
                   "others (fusion-spectrum-npr32-jpeg whose two branches share the NPR member). Implied by --npr-jpeg.")
@click.option("--fit", "fit_dirs", multiple=True, required=True, metavar="DIR",
              help="Labelled sets (0_real/1_fake, or a folder of them) to fit the weights on (repeatable). With "
                   "--npr-jpeg, their JPEG files fit the JPEG branch and the others the lossless one.")
@click.option("--fit-jpeg", "fit_jpeg_dirs", multiple=True, metavar="DIR",
              help="With --npr-jpeg: more labelled sets whose JPEG files fit the JPEG branch only (repeatable).")
@click.option("--calibrate", "calib_dirs", multiple=True, required=True, metavar="DIR",
              help="Sets whose real images fix the threshold, one per processing kind (repeatable). With "
                   "--npr-jpeg or --by-format, each kind is split by format and each part calibrates its branch.")
@click.option("--calibrate-jpeg", "calib_jpeg_dirs", multiple=True, metavar="DIR",
              help="With --npr-jpeg or --by-format: kinds of real photo that calibrate the JPEG branch only "
                   "(repeatable).")
@click.option("--fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Highest share of each calibration kind's real images flagged fake.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--name", default=None, help="Name stored in the checkpoint (default: the output's stem).")
@click.option("--force", is_flag=True, help="Overwrite the output.")
@click.option("--workers", type=click.IntRange(0, 64), default=None, help="Decoding processes.")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True)
def fuse_command(spectrum_model, npr_models, fsd_model, npr_jpeg_model, by_format, fit_dirs, fit_jpeg_dirs, calib_dirs,
                 calib_jpeg_dirs, fpr, output, name, force, workers, device, precision):
    """Fuse a spectrum and an NPR detector into one (fusion-spectrum-npr; -npr32, -npr32-luma, -npr32-2oct,
    -npr32-ref or -npr32-ens for an npr32, npr32-luma, npr32-2oct or npr32-ref member, or several npr32 members):
    logistic weights fitted on --fit, the threshold set so that no --calibrate kind of real photo is flagged
    more than --fpr. With --by-format or --npr-jpeg, JPEG files get a branch of their own (fusion-spectrum-npr32-jpeg)."""
    from ganscan.console import Progress, info
    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.data.datasets import test_sets
    from ganscan.detectors.importers import check_output
    from ganscan.detectors.load import load_detector, open_detector
    from ganscan.detectors.zoo.fusion import fit_fusion

    if npr_jpeg_model is None and fit_jpeg_dirs:
        raise click.UsageError("--fit-jpeg needs --npr-jpeg (the JPEG branch's member)")
    if npr_jpeg_model is None and calib_jpeg_dirs and not by_format:
        raise click.UsageError("--calibrate-jpeg needs --npr-jpeg or --by-format (a threshold per format)")
    by_format = by_format or npr_jpeg_model is not None
    if by_format and (fsd_model or len(npr_models) > 1):
        raise click.UsageError("--npr-jpeg and --by-format fuse one --npr member and no --fsd")
    out = check_output(output, force)
    _, prec, spectrum = open_detector(spectrum_model, device, precision)
    npr, *more_npr = [load_detector(m) for m in npr_models]
    fsd = load_detector(fsd_model) if fsd_model else None
    fit_sets = [s for d in fit_dirs for s in test_sets(d)]
    calib_sets = [s for d in calib_dirs for s in test_sets(d)]
    settings = eval_settings(workers)
    fit_jpeg_sets = [s for d in fit_jpeg_dirs for s in test_sets(d)]
    calib_jpeg_sets = [s for d in calib_jpeg_dirs for s in test_sets(d)]
    members = 2 + len(more_npr) + bool(fsd)
    total = members * (sum(len(s) for s in fit_sets + fit_jpeg_sets) + sum(s.n_real for s in calib_sets + calib_jpeg_sets))
    with Progress("scoring the members", total=total) as bar:
        if by_format:
            from ganscan.detectors.zoo.byformat import fit_jpeg_fusion

            npr_jpeg = load_detector(npr_jpeg_model) if npr_jpeg_model is not None else None
            state, meta = fit_jpeg_fusion(spectrum, npr, npr_jpeg, fit_sets, fit_jpeg_sets, calib_sets, calib_jpeg_sets,
                                          fpr, prec, settings, name or out.stem, progress=lambda n: bar.update(advance=n))
        else:
            state, meta = fit_fusion(spectrum, npr, fit_sets, calib_sets, fpr, prec, settings, name or out.stem,
                                     progress=lambda n: bar.update(advance=n), fsd=fsd, more_npr=tuple(more_npr))
    sha = save_checkpoint(out, state, meta)
    info(json.dumps({k: meta[k] for k in ("fusion", "threshold", "threshold_calibration")}, default=str))
    jpeg_t = meta["threshold_calibration"].get("threshold_jpeg")
    click.echo(f"wrote {out} ({meta['arch']}, threshold {meta['threshold']:.4f}, "
               + (f"JPEG branch calibrated at {jpeg_t:.4f}, " if jpeg_t is not None else "") + f"sha256 {sha})")


FIT_FSD_EXAMPLES = """
\b
Examples:
  ganscan models fit-fsd ../shared/data/train/real -o fsd.safetensors
  ganscan models fit-fsd photos/ --calibrate heldout/camera --calibrate heldout/web -o fsd.safetensors
"""

FIT_ZED_EXAMPLES = """
\b
Examples:
  ganscan models fit-zed ../shared/data/train/real -o zed.safetensors
  ganscan models fit-zed photos/ --calibrate heldout/camera --calibrate heldout/web --steps 2000 -o zed.safetensors
"""


def real_only_options(fn):
    """The options fit-fsd and fit-zed share."""
    for opt in reversed([
        click.argument("real_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=str)),
        click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str)),
        click.option("--calibrate", "calib_dirs", multiple=True, metavar="DIR",
                     help="Sets (0_real/, or a folder of them) of held-out real photos, one per processing kind: the "
                          "threshold keeps each at or under --fpr (repeatable; without it the threshold is 0.5)."),
        click.option("--fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
                     show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--variants", type=click.IntRange(1, 16), default=2, show_default=True,
                     help="Processed variants drawn per real image (JPEG, down- and up-scaling, unchanged)."),
        click.option("--name", default=None, help="Name stored in the checkpoint (default: the output's stem)."),
        click.option("--force", is_flag=True, help="Overwrite the output."),
        click.option("--workers", type=click.IntRange(0, 64), default=None, help="Decoding processes (calibration)."),
    ]):
        fn = opt(fn)
    return fn


def fit_real_only(arch: str, fit, real_dirs, output, calib_dirs, fpr, workers, force, train_steps: int = 0) -> None:
    """Fit a real-only detector: ``fit(paths, name, progress=..., train_progress=...)`` -> (state, meta); then the
    threshold from the --calibrate kinds, scored through scan's pipeline (fp32)."""
    import torch

    from ganscan.console import Progress, info
    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.core.device import choose_precision, configure_threads
    from ganscan.data.datasets import list_images, test_sets
    from ganscan.detectors.importers import check_output
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.zoo.fusion import calibrate

    configure_threads()
    out = check_output(output, force)
    paths = sorted({p for d in real_dirs for p in list_images(d)})
    if not paths:
        raise GanscanError(f"no images found in {', '.join(real_dirs)}")
    try:
        with Progress(f"fitting {arch}", total=len(paths) + train_steps, fields=("bits",)) as bar:
            def trained(step, steps, bits):   # every 100 steps; a line every 500 for logs (stderr not a terminal)
                bar.update(advance=100, bits=bits)
                if step % 500 == 0:
                    info(f"{arch}: step {step}/{steps}, {bits:.3f} bits per pixel")
            state, meta = fit(paths, out.stem, progress=lambda i, n: bar.update(advance=1),
                              train_progress=trained)
    except ValueError as exc:
        raise GanscanError(str(exc), hint="give more (or larger) real images, or raise --variants") from None
    sha = save_checkpoint(out, state, meta)
    if calib_dirs:   # scored through scan's pipeline, so the checkpoint is loaded back from disk
        meta.update(calibrate(load_detector(str(out)), [st for d in calib_dirs for st in test_sets(d)], fpr,
                              choose_precision(torch.device("cpu"), "fp32"), eval_settings(workers)))
        sha = save_checkpoint(out, state, meta)
    click.echo(f"wrote {out} ({arch}, {meta['training']['tiles']} tiles of {meta['training']['real_images']} "
               f"real images, threshold {meta['threshold']:.4f}, sha256 {sha})")


@command.command("fit-fsd", epilog=FIT_FSD_EXAMPLES)
@real_only_options
def fit_fsd_command(real_dirs, output, calib_dirs, fpr, seed, variants, name, force, workers):
    """Fit fsd64, the real-only detector (forensic self-descriptions), on folders of real photos: no fake
    image is needed. Every image is also seen JPEG-compressed, down-scaled and up-scaled."""
    from ganscan.detectors.zoo.selfdesc import fit_fsd

    def fit(paths, stem, progress, train_progress):
        return fit_fsd(paths, name or stem, seed=seed, variants=variants, progress=progress)

    fit_real_only("fsd64", fit, real_dirs, output, calib_dirs, fpr, workers, force)


@command.command("fit-zed", epilog=FIT_ZED_EXAMPLES)
@real_only_options
@click.option("--steps", type=click.IntRange(100, 10 ** 7), default=4000, show_default=True,
              help="Training steps of the coder (batch 64).")
def fit_zed_command(real_dirs, output, calib_dirs, fpr, seed, variants, name, force, workers, steps):
    """Fit zed64, the real-only coding-surprisal detector (after ZED), on folders of real photos: a small lossless
    coder learns to code real photos (every image also seen JPEG-compressed, down-scaled and up-scaled); a tile coded
    better than the coder expects reads as generated. No fake image is needed. Measured, it reads up-sampled content
    that way whether generated or not, and GAN artifacts the other way (the README's zed64 section)."""
    from ganscan.detectors.zoo.surprisal import fit_zed

    def fit(paths, stem, progress, train_progress):
        return fit_zed(paths, name or stem, seed=seed, variants=variants, steps=steps, progress=progress,
                       train_progress=train_progress)

    fit_real_only("zed64", fit, real_dirs, output, calib_dirs, fpr, workers, force, train_steps=steps)


AVERAGE_EXAMPLES = """
\b
Examples:
  ganscan models average runs/a/best.safetensors runs/b/best.safetensors -o soup.safetensors
  ganscan models fuse --npr soup.safetensors --fit heldout/fit --calibrate heldout/calib -o fused.safetensors
"""


@command.command("average", epilog=AVERAGE_EXAMPLES)
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--name", default=None, help="Name stored in the checkpoint (default: the output's stem).")
@click.option("--force", is_flag=True, help="Overwrite the output.")
def average_command(checkpoints, output, name, force):
    """Average two or more detectors of one architecture (files or shipped names) tensor by tensor (a "model
    soup"): for networks fine-tuned from the same tensors, such as training seeds of one recipe. The result is one
    network of the same size, its threshold the mean of theirs (not recalibrated: fuse it, or calibrate it). A fused
    detector is refused: average its members, then fuse the average."""
    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.detectors.average import average_checkpoints
    from ganscan.detectors.importers import check_output

    if len(checkpoints) < 2:
        raise click.UsageError("give at least two checkpoints to average")
    out = check_output(output, force)
    state, meta = average_checkpoints(list(checkpoints), name or out.stem)
    sha = save_checkpoint(out, state, meta)
    click.echo(f"wrote {out} ({meta['arch']}, the average of {len(checkpoints)} checkpoints; sha256 {sha})")


CALIBRATE_EXAMPLES = """
\b
Examples:
  ganscan models calibrate ganscan-fusion-v49 --calibrate my-photos/ -o mine.safetensors   # my-photos/0_real/...
  ganscan models calibrate ganscan-fusion-v49 --calibrate heldout/camera --calibrate heldout/web \\
      --keep-threshold --low-jpeg-quality 80 -o v49-lowjpeg.safetensors
"""


@command.command("calibrate", epilog=CALIBRATE_EXAMPLES)
@click.argument("model")
@click.option("--calibrate", "calib_dirs", multiple=True, required=True, metavar="DIR",
              help="Real photos, one set per processing kind (a folder with 0_real/, or a folder of such sets): the "
                   "threshold keeps each kind at or under --fpr (repeatable).")
@click.option("--fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True)
@click.option("--keep-threshold", is_flag=True, help="Keep the model's threshold (with --low-jpeg-quality: add only "
                                                      "the low-quality JPEG threshold).")
@click.option("--low-jpeg-quality", type=click.IntRange(1, 100), default=None, metavar="Q",
              help="Also a threshold of their own for JPEG files of estimated quality Q or less, set on those files "
                   "of every kind, never below the main threshold (the scores do not change).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--name", default=None, help="Name stored in the checkpoint (default: the output's stem).")
@click.option("--force", is_flag=True, help="Overwrite the output.")
@click.option("--workers", type=click.IntRange(0, 64), default=None, help="Decoding processes.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="The calibration scores' precision (auto: bf16 where the CPU has it natively; recorded).")
def calibrate_command(model, calib_dirs, fpr, keep_threshold, low_jpeg_quality, output, name, force, workers,
                      precision):
    """Set a detector's threshold again on your own real photos: the same tensors, a new checkpoint whose threshold
    flags at most --fpr of each calibration kind. With --low-jpeg-quality, low-quality JPEG files get a threshold of
    their own (scan, evaluate and report call each file at its own)."""
    import torch

    from ganscan.console import Progress
    from ganscan.core.checkpoint import load_checkpoint, save_checkpoint
    from ganscan.core.device import choose_precision, configure_threads
    from ganscan.data.datasets import test_sets
    from ganscan.detectors.importers import check_output
    from ganscan.detectors.load import load_detector, resolve_detector
    from ganscan.detectors.lowjpeg import calibrate_thresholds

    if keep_threshold and low_jpeg_quality is None:
        raise click.UsageError("--keep-threshold with nothing else to set: give --low-jpeg-quality")
    configure_threads()
    out = check_output(output, force)
    src = resolve_detector(model)
    state, meta = load_checkpoint(src)
    det = load_detector(str(src))
    prec = choose_precision(torch.device("cpu"), precision)
    sets = [s for d in calib_dirs for s in test_sets(d)]
    settings = eval_settings(workers)
    meta = {k: v for k, v in meta.items() if k != "threshold_low_jpeg"}
    meta.update(name=name or out.stem, calibrated_from={"name": det.label, "sha256": det.sha256,
                                                        "threshold": det.threshold})
    n = sum(lab == 0 for s in sets for lab in s.labels)   # one pass scores every real image once
    with Progress(f"scoring calibration reals ({prec.name})", total=n) as bar:
        meta.update(calibrate_thresholds(det, sets, fpr, prec, settings, low_jpeg_quality, keep_threshold,
                                         lambda k: bar.update(advance=k)))
    sha = save_checkpoint(out, state, meta)
    low = meta.get("threshold_low_jpeg")
    click.echo(f"wrote {out} (threshold {meta['threshold']:.4f}"
               + (f", JPEG quality <= {low['max_quality']}: {low['threshold']:.4f}" if low else "")
               + f", {prec.name} scores, sha256 {sha})")
