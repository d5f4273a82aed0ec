#!/usr/bin/env python3
"""Rebuild ganscan's shipped detector from ../shared/data, step by step, with ganscan's own commands.

    python examples/train_default.py --data ../shared/data --work runs/default            # everything
    python examples/train_default.py --data ../shared/data --work runs/default --stage data   # one stage

Stages (each skips what already exists, so a stopped run continues):

1. ``data``: the training reals and a held-out 10 % (chosen by a hash of the file name), with sizes and
   formats matched to the fakes: CelebA tiles are box-downscaled 128 -> 64 (the size ProGAN was trained at and
   generates) and re-saved as JPEG with their own quantisation tables; CIFAR-10 classes (32 px, like DCGAN's
   output) are taken as they are.
2. ``fakes``: ``ganscan generate`` with the shipped ProGAN and DCGAN (JPEG quality 75 4:2:0: the very tables
   of the reals), and ``ganscan generate --model autogan --input`` reconstructions of every real (same name,
   format and quantisation tables as their real twin) with the shipped 1-layer and 4-layer autoencoders.
   Then ``fake-mix1/``, the fakes of the shipped detector (``--fakes gan,ae1``), balanced per format: in
   the folders that share a GAN's output size (``celeba64`` with ProGAN, the CIFAR classes with DCGAN) half
   of the reals (chosen by a hash of the name) get their reconstruction twin and the GAN supplies as many
   fakes as there are untwinned reals; every other real gets its twin. So each format, size and JPEG table
   holds as many fakes as reals, and the format check reads 0.5.
3. ``train``: ``ganscan train`` of the chosen architecture (``--arch``) on reals vs the chosen fake sources
   (``--fakes gan,ae1,ae4``); the run logs the format check (format alone must not separate the classes).
4. ``eval``: ``ganscan evaluate`` on ``val/`` (the unseen generators), the held-out own fakes and camera
   photos, plain and under ``--perturb jpeg:90,resize:0.5``; JSON results next to the run.

Nothing under ``val/`` is used before the ``eval`` stage.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

HOLDOUT = 0.10
CIFAR_PER_CLASS = 1200
FLOWERS = 2000
GAN_FAKES = {"progan": 1450, "dcgan": 1800}   # enough for the mixture (see stage_mix)
HELD_FAKES = {"progan": 160, "dcgan": 200}


def held_out(name: str) -> bool:
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 2 ** 32 < HOLDOUT


def twinned(name: str) -> bool:
    """Half of the reals that share a GAN's output size get a reconstruction twin (independent of held_out)."""
    return int(hashlib.sha1(b"twin:" + name.encode()).hexdigest()[:8], 16) % 2 == 0


# real folders whose size and format are those of a shipped GAN's output: they share their fakes with it
SHARED_WITH = {"celeba64": "progan", "cifar10-dog": "dcgan", "cifar10-cat": "dcgan", "cifar10-horse": "dcgan"}


def ganscan(*args: str) -> None:
    exe = shutil.which("ganscan") or str(Path(sys.executable).with_name("ganscan"))
    cmd = [exe, *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        os.symlink(os.path.abspath(src), dst)


def stage_data(data: Path, work: Path) -> None:
    from PIL import Image, JpegImagePlugin

    real = data / "train" / "real"
    if not real.is_dir():
        sys.exit(f"error: {real} not found (pass --data pointing at the shared data folder)")
    plan = {"cifar10-dog": CIFAR_PER_CLASS, "cifar10-cat": CIFAR_PER_CLASS, "cifar10-horse": CIFAR_PER_CLASS,
            "flowers128": FLOWERS, "cats": None, "photos-lossless": None, "celeba128": None}
    for folder, limit in plan.items():
        files = sorted(p for p in (real / folder).iterdir() if p.is_file())
        if limit:
            files = files[:limit]
        for p in files:
            split = "heldout-real" if held_out(p.name) else "real"
            if folder == "celeba128":
                link(p, work / split / folder / p.name)   # native 128 px, paired with their reconstructions
                dst = work / split / "celeba64" / p.name
                if dst.exists():
                    continue
                dst.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(p) as im:
                    q = [im.quantization[k] for k in sorted(im.quantization)]
                    sub = JpegImagePlugin.get_sampling(im)
                    small = im.convert("RGB").reduce(2)   # box filter, as ProGAN's training data
                tmp = dst.with_suffix(".tmp")
                small.save(tmp, "JPEG", qtables=q, subsampling=sub)
                os.replace(tmp, dst)
            else:
                link(p, work / split / folder / p.name)
    for split in ("real", "heldout-real"):
        n = sum(1 for _ in (work / split).rglob("*") if _.is_file() or _.is_symlink())
        print(f"{split}: {n} images")
    cam = work / "camera" / "0_real"
    if not cam.exists():
        cam.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.abspath(data / "camera-exif"), cam)


def stage_fakes(work: Path) -> None:
    common = ["--format", "jpg", "--quality", "75", "-q"]
    for model, n in GAN_FAKES.items():
        out = work / "fake-gan" / model
        if not out.exists():
            ganscan("generate", "--model", model, "-n", str(n), "--seed", "1", "-o", str(out), *common)
    held = work / "heldout"
    for model, n in HELD_FAKES.items():
        out = held / model / "1_fake"
        if not out.exists():
            ganscan("generate", "--model", model, "-n", str(n), "--seed", "2", "-o", str(out), *common)
    link(work / "heldout-real" / "celeba64", held / "progan" / "0_real")
    for c in ("dog", "cat", "horse"):
        link(work / "heldout-real" / f"cifar10-{c}", held / "dcgan" / "0_real" / f"cifar10-{c}")
    for k in (1, 4):
        # one reconstruction folder per real folder: every real has its twin, same relative name
        for src_root, out_root in ((work / "real", work / f"fake-ae{k}"),
                                   (work / "heldout-real", held / f"autogan{k}" / "1_fake")):
            for sub in sorted(d for d in src_root.iterdir() if d.is_dir()):
                out = out_root / sub.name
                if out.is_dir() and sum(1 for _ in out.iterdir()) >= sum(1 for _ in sub.iterdir()):
                    continue
                ganscan("generate", "--model", "autogan", "--weights", f"autogan-{k}layer", "--input",
                        str(sub), "-o", str(out), "--force", "-q")
        link(work / "heldout-real", held / f"autogan{k}" / "0_real")
    stage_mix(work)


def stage_mix(work: Path) -> None:
    """fake-mix1/: reconstruction twins and GAN fakes in the same proportion per format as the reals."""
    mix = work / "fake-mix1"
    if mix.exists():
        shutil.rmtree(mix)
    need: dict[str, int] = {}
    for sub in sorted(d for d in (work / "real").iterdir() if d.is_dir()):
        gan = SHARED_WITH.get(sub.name)
        for p in sorted(sub.iterdir()):
            twin = work / "fake-ae1" / sub.name / p.name
            if gan and not twinned(p.name):
                need[gan] = need.get(gan, 0) + 1
            elif twin.exists():
                link(twin, mix / "ae1" / sub.name / p.name)
    for gan, n in need.items():
        files = sorted((work / "fake-gan" / gan).iterdir())
        if len(files) < n:
            sys.exit(f"error: {n} {gan} fakes needed for the mixture, {len(files)} in {work / 'fake-gan' / gan}")
        for p in files[:n]:
            link(p, mix / gan / p.name)
    counts = {d.name: sum(1 for _ in d.rglob("*.*")) for d in sorted(mix.iterdir())}
    print(f"fake-mix1: {counts} (GAN fakes standing in for the untwinned reals: {need})")


SOURCES = {"gan": ["fake-gan"], "ae1": ["fake-ae1"], "ae4": ["fake-ae4"], "gan,ae1": ["fake-mix1"]}


def stage_train(work: Path, args) -> Path:
    run = Path(args.run) if args.run else work / f"run-{args.arch}-{args.fakes.replace(',', '+')}"
    if (run / "best.safetensors").exists() and not args.retrain:
        print(f"{run}: trained already (pass --retrain to train again)")
        return run
    fakes = SOURCES.get(args.fakes) or [f for src in args.fakes.split(",") for f in SOURCES[src]]
    reals = ["real"]
    if set(args.fakes.split(",")) <= {"ae1", "ae4"} and args.no_cifar_for_ae:
        keep = ("celeba64", "flowers128", "cats", "photos-lossless")
        reals = [str(Path("real") / d) for d in keep]
        fakes = [str(Path(f) / d) for f in fakes for d in keep]
    cmd = ["train", "-o", str(run), "--recipe", "wang2020", "--arch", args.arch, "--crop", "64",
           "--epochs", str(args.epochs), "--batch-size", "64", "--lr", str(args.lr),
           "--blur-prob", "0.1", "--jpeg-prob", "0.1", "--jpeg-quality", "60,100", "--patience", "2",
           "--seed", str(args.seed), "--threshold-rule", args.threshold_rule, "--force"]
    if args.rescale_prob:
        cmd += ["--rescale-prob", str(args.rescale_prob)]
    for r in reals:
        cmd += ["--real", str(work / r)]
    for f in fakes:
        cmd += ["--fake", str(work / f)]
    if args.pretrained:
        cmd += ["--pretrained", args.pretrained]
    ganscan(*cmd)
    (run / "command.txt").write_text(" ".join(["python", "examples/train_default.py", *sys.argv[1:]]) + "\n"
                                     + " ".join(["ganscan", *cmd]) + "\n")
    return run


def stage_eval(data: Path, work: Path, run: Path, quick: bool = False) -> None:
    """Three evaluations, so that each mean row is over its own sets: the four unseen generators, our own
    held-out fakes, and camera photos (real only: its real accuracy is 1 - the false-positive rate).
    ``quick``: the unseen generators only, unperturbed (for comparisons)."""
    model = str(run / "best.safetensors")
    if quick:
        ganscan("evaluate", model, str(data / "val"), "-o", str(run / "eval-val.json"), "--force", "-q")
        return
    perturb = ["--perturb", "jpeg:90,resize:0.5"]
    ganscan("evaluate", model, str(data / "val"), *perturb, "-o", str(run / "eval-val.json"), "--force", "-q")
    ganscan("evaluate", model, str(work / "heldout"), *perturb, "-o", str(run / "eval-heldout.json"), "--force", "-q")
    ganscan("evaluate", model, str(work / "camera"), "-o", str(run / "eval-camera.json"), "--force", "-q")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data", help="the shared data folder (train/, val/, camera-exif/)")
    ap.add_argument("--work", default="runs/default", help="working folder (prepared data and runs)")
    ap.add_argument("--stage", choices=["all", "data", "fakes", "train", "eval"], default="all")
    ap.add_argument("--arch", default="alexnet64-spectrum", help="detector architecture (ganscan models)")
    ap.add_argument("--fakes", default="gan,ae1", help="fake sources: gan (ProGAN+DCGAN), ae1, ae4 (reconstructions)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threshold-rule", default="eer",
                    help="threshold calibration on the run's own validation split (eer, fpr:X)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rescale-prob", type=float, default=0.0,
                    help="random down-scaling of both classes (0.5-1.0x; off in the shipped v1 recipe)")
    ap.add_argument("--pretrained", default=None, help="e.g. imagenet for efficientnet_lite0")
    ap.add_argument("--no-cifar-for-ae", action="store_true", help="AutoGAN-only runs: leave the 32 px reals out")
    ap.add_argument("--run", default=None, help="run folder (default: WORK/run-ARCH-FAKES)")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--quick-eval", action="store_true", help="eval: val/ only, without perturbations")
    args = ap.parse_args()
    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.stage in ("all", "data"):
        stage_data(data, work)
    if args.stage in ("all", "fakes"):
        stage_fakes(work)
    run = None
    if args.stage in ("all", "train"):
        run = stage_train(work, args)
    if args.stage in ("all", "eval"):
        run = run or stage_train(work, argparse.Namespace(**{**vars(args), "retrain": False}))
        stage_eval(data, work, run, quick=args.quick_eval)


if __name__ == "__main__":
    main()
