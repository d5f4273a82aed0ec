"""ganscan gan: train GANs on an image folder and measure them (sliced Wasserstein distance)."""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys

import click

from ganscan.cli import TableOption, quiet_option

GROUP_EXAMPLES = """
\b
Examples:
  ganscan gan train --model dcgan data/cifar10-dog -o runs/dog --steps 3000
  ganscan gan train --model dcgan data/cifar10-dog -o runs/dog --resume --steps 6000
  ganscan gan evaluate --model progan --real data/celeba128 --baselines
"""

TRAIN_EXAMPLES = """
\b
Examples:
  ganscan gan train --model dcgan data/cifar10-dog -o runs/dog --epochs 20 --seed 1
  ganscan gan train --model progan data/faces -o runs/faces --phase-kimg 12 --widths 64,64,64,32,16
  ganscan gan train --model progan data/faces -o runs/faces --resume     # after Ctrl-C or a crash
  ganscan generate --model progan --weights runs/faces/generator.safetensors -n 64 --grid faces.png
  ganscan gan train --model autogan data/photos -o runs/ae4 --layers 4 --steps 4000   # AutoGAN
  ganscan generate --model autogan --weights runs/ae4/generator.safetensors --input photos/ -o recon/
"""

EXPORT_EXAMPLES = """
\b
Examples:
  ganscan gan export runs/faces weights/progan-faces.safetensors
  ganscan gan evaluate --model progan --weights runs/faces/generator.safetensors --real data/faces \\
      --holdout 0.2 --baselines --json > swd.json
  ganscan gan export runs/faces weights/progan-faces.safetensors --card-json swd.json --force
"""

EVAL_EXAMPLES = """
\b
Examples:
  ganscan gan evaluate --model dcgan --real data/cifar10-dog -n 2000
  ganscan gan evaluate --model progan --weights runs/faces/generator.safetensors --real data/faces
  ganscan gan evaluate --model progan --real data/celeba128 --holdout 0.2 --baselines   # the README table
  ganscan gan evaluate --fake generated/ --real data/faces --json
  ganscan gan evaluate --model autogan --weights autogan-4layer --real data/photos --holdout 0.1 --baselines
"""


@click.group("gan", epilog=GROUP_EXAMPLES)
def command():
    """Train DCGAN / ProGAN generators and AutoGAN autoencoders; measure GANs with the sliced Wasserstein distance."""


def _invocation() -> str | None:
    """The command line as typed (recorded in run.json for the model card); None when not run as ganscan."""
    if os.path.basename(sys.argv[0]) not in ("ganscan", "__main__.py"):
        return None
    return " ".join(["ganscan", *map(shlex.quote, sys.argv[1:])])


def _number_list(parse, what: str, usage: str, single: bool = False):
    """An option callback: a comma-separated list of positive numbers (``single``: a lone one stays a number)."""
    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            out = [parse(v) for v in str(value).split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(usage) from None
        if not out or any(v <= 0 for v in out):
            raise click.BadParameter(f"{what} must be positive")
        return out[0] if single and len(out) == 1 else out

    return callback


_widths = _number_list(int, "channel counts",
                       "a comma-separated list of channel counts, e.g. 128,128,64,32,16")
_phases = _number_list(float, "phase lengths", "a number or a comma-separated list, e.g. 8 or 8,8,6,4,3",
                       single=True)


def _shown_setting(key: str):
    """A training setting's default for --help: TrainSettings', or one per family."""
    from ganscan.gans.trainer import FAMILY_DEFAULTS, TrainSettings

    if key not in FAMILY_DEFAULTS["dcgan"]:
        return TrainSettings.__dataclass_fields__[key].default

    def text(v) -> str:  # ProGAN's batch: each size from the side it starts at
        return ", ".join(f"{b} from {side}px" for side, b in v.items() if v.get(side // 2) != b) \
            if isinstance(v, dict) else f"{v:g}"

    return "; ".join(f"{family} {text(d[key])}" for family, d in FAMILY_DEFAULTS.items())


#: A training setting: unset unless given (TrainSettings fills it in); its help shows the default.
_setting = functools.partial(click.option, cls=TableOption, default=None, shown=_shown_setting)


@command.command("train", epilog=TRAIN_EXAMPLES)
@click.argument("data", type=click.Path(path_type=str))
@click.option("-m", "--model", required=True, metavar="NAME",
              help="Generator to train: dcgan, progan, autogan (or test-gan).")
@click.option("-o", "--output", "run_dir", required=True, metavar="RUN_DIR",
              help="Run folder: checkpoints, losses.csv, loss.png, samples/, generator.safetensors.")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR exactly where its last checkpoint left off.")
@_setting("--seed", type=int)
@click.option("--resolution", type=int, default=None, help="Image side (dcgan: 32 or 64; progan: 8-128). Default: the model's.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Optimiser steps in all.")
@click.option("--epochs", type=click.FloatRange(0, min_open=True), default=None, help="Passes over the data (instead of --steps).")
@click.option("--kimg", type=click.FloatRange(0, min_open=True), default=None,
              help="Thousands of real images to show in all (instead of --steps).")
@_setting("--batch-size", type=click.IntRange(1, 4096), help="Images per step.")
@_setting("--lr", type=click.FloatRange(0, min_open=True), help="Adam learning rate.")
@_setting("--beta1", type=click.FloatRange(0, 1), help="Adam beta1.")
@click.option("--width", type=click.IntRange(1), default=None, help="dcgan: channels of the first discriminator layer / last generator layer (64).")
@click.option("--widths", callback=_widths, default=None, metavar="C4,C8,...",
              help="progan: channels per resolution, 4x4 first (default 128,128,128,64,32).")
@click.option("--layers", type=click.IntRange(1, 6), default=None,
              help="autogan: stride-2 stages down and transposed-convolution stages up (1 or 4 in the seed; default 1).")
@_setting("--rec-weight", type=click.FloatRange(0),
          help="autogan: weight of the L1 reconstruction loss (the adversarial loss has weight 1).")
@_setting("--phase-kimg", callback=_phases, metavar="K|K4,K8,...",
          help="progan: thousands of images per fade-in and per stabilisation phase; or one value per "
               "resolution, 4x4 first (the last repeats).")
@_setting("--holdout", type=click.FloatRange(0, 0.9),
          help="Fraction of DATA (chosen by file-name hash) kept out of training, for `gan evaluate --holdout`.")
@click.option("--no-mirror", is_flag=True, help="No random horizontal flips.")
@_setting("--sample-every", type=click.IntRange(1), help="Steps between sample grids.")
@_setting("--checkpoint-every", type=click.IntRange(1), help="Steps between checkpoints.")
@click.option("--max-minutes", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop after this much wall time (with a checkpoint; --resume continues).")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: all cores).")
@quiet_option
def train_command(data, model, run_dir, resume, no_mirror, threads, **given):
    """Train a GAN on the images in DATA (a folder; sub-folders included).

    Images of other sizes are centre-cropped and resized, other modes converted (a note says how many);
    unreadable files are skipped. Ctrl-C stops after the current step with a checkpoint; --resume
    continues exactly (same weights as an uninterrupted run on the same machine and thread count).
    """
    from ganscan.console import Progress, info, warn
    from ganscan.core.device import configure_threads
    from ganscan.gans.trainer import TrainSettings, train

    if sum(given[k] is not None for k in ("steps", "epochs", "kimg")) > 1:
        raise click.UsageError("give at most one of --steps, --epochs, --kimg")
    configure_threads(threads)
    settings = TrainSettings(model=model, data=data, run_dir=run_dir, **{k: v for k, v in given.items() if v is not None},
                             **({"mirror": False} if no_mirror else {}))
    with Progress(f"training {model}", total=None, fields=("loss_d", "loss_g")) as bar:
        result = train(settings, resume=resume, progress=bar, on_note=warn, invocation=_invocation())
    state = "finished" if result.finished else ("interrupted" if result.interrupted else "stopped (time limit)")
    losses = "  ".join(f"{k} {v:.4f}" for k, v in result.losses.items())
    info(f"{state} at step {result.step} ({result.images} images, {result.seconds / 60:.1f} min): {losses}")
    info(f"generator: {result.generator}  (ganscan generate --model {model} --weights {result.generator})")


@command.command("evaluate", epilog=EVAL_EXAMPLES)
@click.option("-m", "--model", default=None, metavar="NAME", help="Generator to sample: progan, dcgan.")
@click.option("--weights", default=None, metavar="FILE|NAME", help="Generator checkpoint; default: the shipped weights.")
@click.option("--fake", "fake_dir", default=None, type=click.Path(path_type=str),
              help="A folder of generated images instead of --model.")
@click.option("--real", required=True, type=click.Path(path_type=str), help="Folder of real images.")
@click.option("--resolution", type=int, default=None, help="Side to compare at (default: the generator's; 64 with --fake).")
@click.option("-n", "--count", "n", type=click.IntRange(2), default=None, help="At most this many images per set.")
@click.option("--holdout", type=click.FloatRange(0, 0.9), default=0.0, show_default=True,
              help="The --holdout the generator was trained with: compare with the held-out reals.")
@click.option("--split", type=click.Choice(["heldout", "train", "all"]), default=None,
              help="Which reals (default: heldout when --holdout > 0, else all).")
@click.option("--baselines", is_flag=True,
              help="Also an untrained generator and two disjoint halves of the reals (the floor), on equal-sized sets.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: all cores).")
@quiet_option
def evaluate_command(model, weights, fake_dir, real, resolution, n, holdout, split, baselines, seed, batch_size,
                     as_json, threads):
    """Sliced Wasserstein distance (x 1e3) between generated and real images, per Laplacian-pyramid level.

    The ProGAN paper's metric; it needs no pretrained network. Lower is closer. Levels are the pyramid's
    resolutions (finest first; 16 is the coarse image); avg is their mean.
    """
    from ganscan.console import status, stdout_console, warn
    from ganscan.core.device import configure_threads
    from ganscan.gans.evaluate import evaluate_swd, swd_table

    if model is None and fake_dir is None:
        raise click.UsageError("pass --model (optionally --weights) or --fake DIR")
    configure_threads(threads)
    with status("computing SWD"):
        result = evaluate_swd(real, model=model, weights=weights, fake_dir=fake_dir, resolution=resolution, n=n,
                              holdout=holdout, split=split, baselines=baselines, seed=seed, batch_size=batch_size)
    for note in result["notes"]:
        warn(note)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    stdout_console().print(swd_table(result))


@command.command("export", epilog=EXPORT_EXAMPLES)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.argument("output", type=click.Path(dir_okay=False, path_type=str))
@click.option("--name", default=None, help="Weights name (default: the output's stem).")
@click.option("--card-json", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="JSON merged into the card (repeatable): an object of fields, or `gan evaluate --json` output "
                   "(becomes metrics).")
@click.option("--raw", is_flag=True, help="progan: the trained generator instead of its moving average.")
@click.option("--force", is_flag=True, help="Replace existing weights and card.")
def export_command(run_dir, output, name, card_json, raw, force):
    """Ship a run's generator: OUTPUT.safetensors and a model card OUTPUT.json (data, recipe, time, losses, sha256)."""
    from ganscan.gans.export import card_extra_from_json, export_generator

    card = export_generator(run_dir, output, name=name, card_extra=card_extra_from_json(card_json), force=force,
                            raw=raw)
    click.echo(f"{output}: {card['file_bytes']} bytes, sha256 {card['sha256']}")
