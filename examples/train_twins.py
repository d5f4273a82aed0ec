#!/usr/bin/env python3
"""Build the band-aligned-twin artifact detector from ../shared/data, stage by stage.

    python examples/train_twins.py --recipe v2 --data ../shared/data --work runs/twins   # ganscan-fusion-v2
    python examples/train_twins.py --recipe v4 --data ../shared/data --work runs/twins   # ganscan-fusion-v4
    python examples/train_twins.py --recipe v1 --data ../shared/data --work runs/twins   # ganscan-fusion-v1
    python examples/train_twins.py --data ../shared/data --work runs/twins --stage pairs  # one stage

``--recipe`` is a build (``RECIPES``: its pair folders with their seeds and 4x-chain shares, the small pairs,
epochs, architecture, train-time JPEG, name and run folder); without it the flags say what to build. ``v1``,
``v2`` and ``v4`` are shipped; ``v3`` is v2's pairs with JPEG-heavier training and the fusion also fitted on JPEG
copies of its fit sets (``heldout/fit-jpeg``); ``v5`` fine-tunes v4's member with that JPEG on v4's data plus
the ``long`` stage's twins; ``v7`` and ``v7s`` train the *spectrum* member on v4's twins (fine-tuned from
``ganscan-spectrum-v1``, or from scratch) and fuse it with ``ganscan-twins-v4`` (measured, not adopted:
``docs/selection-rule-v7.txt``).

Stages (each skips what already exists, so a stopped run continues):

1. ``pairs``: band-aligned twins (``ganscan.detectors.train.twins``, the library behind ``ganscan twins``) of
   every real under ``train/real`` except CIFAR-10 (32 px: too small for a 2x tail and a 64 px crop) and
   a 10 % hold-out chosen by a hash of the file name. Training pairs use tails of every kind but
   ``shuffle`` (pixel shuffle), which is left out: the run is chosen on a tail family it never saw.
   ``--pairs A B`` trains on several pair folders (the pairs stage writes the first; ``--seed`` draws
   other crops and another bank).
2. ``heldout``: from the held-out reals only: ``twins-shuffle`` (the left-out tail family, the
   trainer's ``--val``), ``twins-seen`` (the trained kinds with new weights: the fusion is fitted on
   it), the hard negatives (real only: crops unchanged, up-scaled 2x by bicubic or Lanczos, down-scaled
   0.5x, JPEG 75; split by a hash into ``calib/`` for the fusion's threshold and ``report/``), whole
   lossless and web-processed photos, and two other generator families: AutoGAN reconstructions and
   ProGAN samples (``examples/twins_sets.py``).
   ``translate`` (``--translate``, after ``heldout``): our own image-translation generators
   (``examples/translation_family.py``), trained minutes each, their training twins and three held-out
   families, halved. ``long`` (``--long``): two more banks of fewer, bigger nets trained 1,500 steps with
   the adversarial loss (``long-train``; held out: ``long-seen`` and the U-Net's ``long-unet``).
3. ``train``: ``ganscan train --arch npr --crop 64`` on the pairs, validated on
   ``heldout/twins-shuffle`` (monitor: AUC); the format check is logged in the run folder. A recipe with
   ``average_seeds`` (``v34``) trains one run per seed (``RUN/seed0``, ``RUN/seed1``) and writes their average,
   tensor by tensor (``ganscan models average``), as ``RUN/best.safetensors``.
4. ``fsd`` (only with ``--fsd``): ``ganscan models fit-fsd`` (the real-only member, ``fsd64``) on the
   training-side reals (the same 90 % the pairs come from, each also JPEG-compressed, down- and up-scaled),
   its threshold at 5 % FPR on every ``heldout/calib`` kind.
5. ``fuse``: ``ganscan models fuse`` of ``ganscan-spectrum-v1`` and the trained NPR network
   (ganscan-fusion-v1); with ``--fsd``, of the fsd64 member too (``fusion-spectrum-npr-fsd``, RUN/fused3). A recipe
   with ``half_read`` (``v40``; ``v43``; ``v48``; ``v49``, the default) then reads the fusion at two scales
   (``examples/retile.py --half-*``; v43 also reads small JPEG files in overlapping tiles, ``--tile-stride 16
   --stride-jpeg-only``; v48 also pools a JPEG file's tiles by their probabilities, ``--tile-pool prob
   --pool-jpeg-only``; v49 also reads JPEG files of 256 px and more at half size, ``--half-jpeg-side 256
   --half-jpeg-margin 3``, its threshold set from bf16 scores, ``--precision bf16``): ``RUN/fused-v40.safetensors``
   ... ``RUN/fused-v49.safetensors``.
6. ``table``: ``examples/twins_table.py`` for every member and the fusion on the held-out sets and, as
   the final check only, on ``val/``.

Nothing under ``val/`` is read before the ``table`` stage, and nothing there chooses anything.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

HOLDOUT = 0.10
SOURCES = ("camera-full", "dreambooth", "cats", "photos-lossless", "flowers128", "celeba128")
TRAIN_KINDS = ("tconv", "nearest", "bilinear", "zeroins")
HELD_KIND = "shuffle"
# --recipe: the named builds (v1, v2 shipped). Pair folders: (folder, seed, share of 4x chains, most crops per photo,
# and optionally a dict of PairConfig fields that folder sets, e.g. the share of standard-up-scaled real twins);
# jpeg: train-time JPEG re-compression (probability, lowest quality, highest quality); fit_jpeg: the fusion is
# fitted on heldout/fit-jpeg too.
PAIRS_V2 = [("pairs", 0, 0.0, 32), ("pairs2", 1, 0.0, 32), ("pairs3", 2, 0.5, 16)]
RECIPES = {
    "v1": {"pairs": [("pairs", 0, 0.0, 32)], "small": None, "epochs": 12, "arch": "npr",
           "name": "ganscan-twins-v1", "run": "run", "jpeg": (0.1, 30, 100)},
    "v2": {"pairs": PAIRS_V2, "small": "pairs-small", "epochs": 8, "arch": "npr32", "name": "ganscan-twins-v2",
           "run": "run-v2-32", "jpeg": (0.1, 30, 100)},
    "v3": {"pairs": PAIRS_V2, "small": "pairs-small", "epochs": 8, "arch": "npr32", "name": "ganscan-twins-v3",
           "run": "run-v3", "jpeg": (0.4, 65, 100), "fit_jpeg": True},
    # v4: ganscan-twins-v2 fine-tuned on twins made by our own translation generators (the translate stage)
    # plus v2's first pair folder, validated on twins-shuffle and the seen-architecture translation half
    "v4": {"pairs": [("pairs", 0, 0.0, 32)], "small": None, "epochs": 4, "arch": "npr32", "name": "ganscan-twins-v4",
           "run": "run-v4", "jpeg": (0.1, 30, 100), "translate": True, "init": "ganscan-twins-v2", "lr": 1e-4},
    # v5 (a candidate): ganscan-twins-v4 fine-tuned with v3's train-time JPEG on v4's data plus twins of longer-trained
    # translation generators (the long stage), validated on val-mix plus the seen-architecture long half
    "v5": {"pairs": [("pairs", 0, 0.0, 32)], "small": None, "epochs": 3, "arch": "npr32", "name": "ganscan-twins-v5",
           "run": "run-v5", "jpeg": (0.4, 65, 100), "translate": True, "long": True, "init": "ganscan-twins-v4",
           "lr": 1e-4},
    # v6 (a candidate): ganscan-twins-v4 fine-tuned on v4's data with JPEG at high qualities more often (p 0.3,
    # quality 85-100): one JPEG pass at quality 95 cost v4's fakes most of their logit (examples/jpeg_shift.py)
    "v6": {"pairs": [("pairs", 0, 0.0, 32)], "small": None, "epochs": 3, "arch": "npr32", "name": "ganscan-twins-v6",
           "run": "run-v6", "jpeg": (0.3, 85, 100), "translate": True, "init": "ganscan-twins-v4", "lr": 1e-4},
    # v7 (candidates): the fusion's *spectrum* member trained on v4's band-aligned twins instead of ProGAN/DCGAN
    # samples against unpaired reals, fused with ganscan-twins-v4 ("member": which member the run trains,
    # "partner": the other one). v7 fine-tunes ganscan-spectrum-v1; v7s trains from scratch.
    "v7": {"pairs": [("pairs", 0, 0.0, 32)], "small": None, "epochs": 4, "arch": "alexnet64-spectrum",
           "name": "ganscan-spectrum-v7", "run": "run-v7", "jpeg": (0.1, 60, 100), "translate": True,
           "init": "ganscan-spectrum-v1", "lr": 1e-4, "member": "spectrum", "partner": "ganscan-twins-v4"},
    "v7s": {"pairs": [("pairs", 0, 0.0, 32)], "small": None, "epochs": 8, "arch": "alexnet64-spectrum",
            "name": "ganscan-spectrum-v7s", "run": "run-v7s", "jpeg": (0.1, 60, 100), "translate": True,
            "lr": 2e-4, "member": "spectrum", "partner": "ganscan-twins-v4"},
    # v10 (a candidate): ganscan-twins-v4 fine-tuned on v4's translation twins plus pairs-rs, whose pairs are enlarged
    # both members alike by 1.2-1.8x 30 % of the time ("rescale"), so that a photo enlarged by a non-integer factor
    # belongs to the real class; threshold also on calib-frac (docs/selection-rule-v9.txt)
    "v10": {"pairs": [("pairs-rs", 0, 0.0, 32)], "small": None, "epochs": 3, "arch": "npr32",
            "name": "ganscan-twins-v10", "run": "run-v10", "jpeg": (0.1, 30, 100), "translate": True,
            "init": "ganscan-twins-v4", "lr": 1e-4, "rescale": 0.3, "calib_frac": True},
    # v12 (a candidate, docs/selection-rule-v10.txt): the twin member in one build from scratch on the union of what
    # the v2 -> v4 -> v10 chain of fine-tunes learnt from: v2's three pair folders made with v10's shared enlargement,
    # v2's small pairs and v4's translation twins
    "v12": {"pairs": [("pairs-rs", 0, 0.0, 32), ("pairs2-rs", 1, 0.0, 32), ("pairs3-rs", 2, 0.5, 16)],
            "small": "pairs-small", "epochs": 8, "arch": "npr32", "name": "ganscan-twins-v12", "run": "run-v12",
            "jpeg": (0.1, 30, 100), "translate": True, "lr": 2e-4, "rescale": 0.3, "calib_frac": True},
    # v14 (a candidate, docs/selection-rule-v14.txt): ganscan-twins-v10 fine-tuned on v10's data plus pairs-u2j, in which
    # every real twin is standard-up-scaled and every pair is JPEG-compressed (quality 60-95, both members alike), so
    # that a photo enlarged and then compressed belongs to the real class; threshold also on calib-u2j
    "v14": {"pairs": [("pairs-rs", 0, 0.0, 32),
                      ("pairs-u2j", 4, 0.0, 16, {"interp_real_prob": 1.0, "jpeg_prob": 1.0, "jpeg_quality": (60, 95)})],
            "small": None, "epochs": 3, "arch": "npr32", "name": "ganscan-twins-v14", "run": "run-v14",
            "jpeg": (0.1, 30, 100), "translate": True, "init": "ganscan-twins-v10", "lr": 1e-4, "rescale": 0.3,
            "calib_frac": True, "calib_u2j": True},
    # v15 (a candidate, docs/selection-rule-v15.txt): as v14, but the new folder's pairs come from native crops: each
    # pair's low-resolution source is the centre of the crop, not the crop down-scaled, so that a photo's own detail
    # enlarged (and then compressed, half of them) belongs to the real class
    "v15": {"pairs": [("pairs-rs", 0, 0.0, 32),
                      ("pairs-nat", 5, 0.0, 16, {"native_prob": 1.0, "jpeg_prob": 0.5, "jpeg_quality": (60, 95)})],
            "small": None, "epochs": 3, "arch": "npr32", "name": "ganscan-twins-v15", "run": "run-v15",
            "jpeg": (0.1, 30, 100), "translate": True, "init": "ganscan-twins-v10", "lr": 1e-4, "rescale": 0.3,
            "calib_frac": True, "calib_u2j": True},
    # v16 (a candidate, docs/selection-rule-v16.txt): ganscan-twins-v10 fine-tuned on v10's data with every training
    # crop at a multiple of 8 pixels from the pair image's origin, and its tiles on the same grid ("crop_align"), so
    # that it reads a generator's up-sampling cells and JPEG's blocks at the one phase scan reads them
    "v16": {"pairs": [("pairs-rs", 0, 0.0, 32)], "small": None, "epochs": 3, "arch": "npr32",
            "name": "ganscan-twins-v16", "run": "run-v16", "jpeg": (0.1, 30, 100), "translate": True,
            "init": "ganscan-twins-v10", "lr": 1e-4, "rescale": 0.3, "calib_frac": True, "crop_align": 8},
    # v18 (a candidate, docs/selection-rule-v18.txt): ganscan-twins-v10's tensors fine-tuned on v10's data as npr32-luma,
    # the same network fed the tile's luminance only: JPEG's 4:2:0 chroma keeps no trace, so the member must not rely on it
    "v18": {"pairs": [("pairs-rs", 0, 0.0, 32)], "small": None, "epochs": 3, "arch": "npr32-luma",
            "name": "ganscan-twins-v18", "run": "run-v18", "jpeg": (0.1, 30, 100), "translate": True,
            "init": "ganscan-twins-v10", "lr": 1e-4, "rescale": 0.3, "calib_frac": True},
    # v19 (a candidate, docs/selection-rule-v19.txt): ganscan-twins-v10 fine-tuned on v10's data plus the twins of a
    # second bank of translation generators with bilinear and StyleGAN-like decoders (the translate2 stage)
    "v19": {"pairs": [("pairs-rs", 0, 0.0, 32)], "small": None, "epochs": 3, "arch": "npr32",
            "name": "ganscan-twins-v19", "run": "run-v19", "jpeg": (0.1, 30, 100), "translate": True, "translate2": True,
            "init": "ganscan-twins-v10", "lr": 1e-4, "rescale": 0.3, "calib_frac": True},
    # v21 (a candidate, docs/selection-rule-v21.txt): the JPEG member of a fusion with a branch per format:
    # ganscan-twins-v10 fine-tuned on v10's data with every training view JPEG-compressed (quality 65-100, both
    # members of a pair alike); its fuse stage builds fusion-spectrum-npr32-jpeg with ganscan-twins-v10 for lossless files
    "v21": {"pairs": [("pairs-rs", 0, 0.0, 32)], "small": None, "epochs": 3, "arch": "npr32",
            "name": "ganscan-twins-v21j", "run": "run-v21", "jpeg": (1.0, 65, 100), "translate": True,
            "init": "ganscan-twins-v10", "lr": 1e-4, "rescale": 0.3, "calib_frac": True,
            "jpeg_branch": "ganscan-twins-v10", "fusion_name": "ganscan-fusion-v21"},
    # v24 (a candidate, docs/selection-rule-v24.txt): a JPEG member trained longer and on high qualities only (8 epochs
    # at lr 2e-4, every view JPEG 80-100); measured averaged with ganscan-twins-v10 (models fuse --npr twice)
    "v24": {"pairs": [("pairs-rs", 0, 0.0, 32)], "small": None, "epochs": 8, "arch": "npr32",
            "name": "ganscan-twins-v24j", "run": "run-v24", "jpeg": (1.0, 80, 100), "translate": True,
            "init": "ganscan-twins-v10", "lr": 2e-4, "rescale": 0.3, "calib_frac": True},
    # v25 (a candidate, docs/selection-rule-v25.txt): ganscan-twins-v10 widened to npr32-2oct (the second octave's
    # NPR residual as three more input channels, their stem weights zero at the start) and fine-tuned on v10's data:
    # a trace one octave lower than the top octave a JPEG pass quantises first
    "v25": {"pairs": [("pairs-rs", 0, 0.0, 32)], "small": None, "epochs": 3, "arch": "npr32-2oct",
            "name": "ganscan-twins-v25", "run": "run-v25", "jpeg": (0.1, 30, 100), "translate": True,
            "init": "ganscan-twins-v10", "lr": 1e-4, "rescale": 0.3, "calib_frac": True},
    # v32 (a candidate, docs/selection-rule-v32.txt): ganscan-twins-v10's tensors fine-tuned as npr32-ref, whose logit
    # is g(x) - g(T(x)) with T(x) the tile down-scaled 2x and enlarged back (bicubic): an image that is already a
    # standard enlargement matches its own T(x)
    "v32": {"pairs": [("pairs-rs", 0, 0.0, 32)], "small": None, "epochs": 3, "arch": "npr32-ref",
            "name": "ganscan-twins-v32", "run": "run-v32", "jpeg": (0.1, 30, 100), "translate": True,
            "init": "ganscan-twins-v10", "lr": 1e-4, "rescale": 0.3, "calib_frac": True},
    # v34 (C40, docs/selection-rule-v34.txt; C42, -v36.txt): v32 trained with seeds 0 and 1 (RUN/seed0, RUN/seed1),
    # and the member is their average, tensor by tensor (ganscan models average)
    "v34": {"pairs": [("pairs-rs", 0, 0.0, 32)], "small": None, "epochs": 3, "arch": "npr32-ref",
            "name": "ganscan-twins-v34", "run": "run-v34", "jpeg": (0.1, 30, 100), "translate": True,
            "init": "ganscan-twins-v10", "lr": 1e-4, "rescale": 0.3, "calib_frac": True, "average_seeds": (0, 1)},
}
# v40 (C46, docs/selection-rule-v40.txt; the default ganscan-fusion-v40): v10's build, then its fusion also read at half
# size (examples/retile.py): lossless images of at least 128 px reduced 2x (Lanczos), that read deciding when its mean
# logit exceeds the native one by more than the margin; threshold recalibrated by v10's rule
RECIPES["v40"] = {**RECIPES["v10"], "half_read": {"tiles": 4, "margin": 1.0, "filter": "lanczos", "lossless": True,
                                                  "name": "ganscan-fusion-v40"}}
# v43 (C49, docs/selection-rule-v43.txt): v40, and a JPEG file under the tile cap (a square one under 256 px) read in
# overlapping tiles at stride 16
RECIPES["v43"] = {**RECIPES["v40"], "half_read": {**RECIPES["v40"]["half_read"], "stride": 16, "stride_jpeg_only": True,
                                                  "name": "ganscan-fusion-v43"}}
# v48 (C54, docs/selection-rule-v48.txt): v43, and a JPEG file's reads pool their tiles' probabilities (the logit of
# the mean sigmoid) instead of averaging their logits; every other file as v43
RECIPES["v48"] = {**RECIPES["v43"], "half_read": {**RECIPES["v43"]["half_read"], "pool": "prob", "pool_jpeg_only": True,
                                                  "name": "ganscan-fusion-v48"}}
# v49 (C56, docs/selection-rule-v50.txt): v48, and a JPEG file of at least 256 px a side also read at half size, its
# logit max(native, half - 3) (C55's read, rule v49); its threshold set from bf16 scores as v48's was (emulated, and
# slower, on a CPU without native bf16), so that a rebuild anywhere sets the shipped one
RECIPES["v49"] = {**RECIPES["v48"], "half_read": {**RECIPES["v48"]["half_read"], "jpeg_side": 256, "jpeg_margin": 3.0,
                                                  "precision": "bf16", "name": "ganscan-fusion-v49"}}
# the translate stage (examples/translation_family.py): banks (seed, reals' side, architectures, nets per
# architecture, steps, adversarial weight, photos the crops come from, and an architecture whose nets move to
# a bank of their own) and the pair folders made with them (bank, folder, side, seed, most crops per photo).
# bank-s9's U-Nets move to bank-s9u: an architecture no training pair comes from.
TRANSLATE_BANKS = [(0, "train", "resnet3,resnet4,resnet-up", 3, 150, 0.0, 400, None, ()),
                   (9, "held", "resnet3,resnet4,resnet-up,unet", 2, 150, 0.0, 300, ("unet", "bank-s9u"), ()),
                   (19, "held", "unet,resnet4", 1, 300, 0.05, 300, None, ())]
TRANSLATE_PAIRS = [("bank-s0", "translate", "train", 0, 8), ("bank-s9", "heldout/translate-seen", "held", 9, 4),
                   ("bank-s9u", "heldout/translate-unet", "held", 10, 4), ("bank-s19", "heldout/translate-gan", "held", 19, 4)]
# large/ (docs/selection-rule-v8.txt): 512 px twins of the held-out photos by the three held-out banks, reported whole
# (images of more than 16 tiles); (bank, folder, side, seed, most crops per photo, side of the pair's images)
LARGE_PAIRS = [("bank-s9", "heldout/large-seen", "held", 109, 4, 512), ("bank-s9u", "heldout/large-unet", "held", 110, 4, 512),
               ("bank-s19", "heldout/large-gan", "held", 119, 4, 512)]
# the long stage: fewer, bigger nets (width 32, 6 residual blocks) trained 1,500 steps with the adversarial loss
# and CycleGAN's LR decay; bank-s39's U-Net moves to bank-s39u (left out of training, as in bank-s9u)
LONG_NET = ("--width", "32", "--blocks", "6", "--decay", "0.5")
LONG_BANKS = [(30, "train", "resnet4,resnet3", 1, 1500, 0.05, 800, None, LONG_NET),
              (39, "held", "resnet4,unet", 1, 1500, 0.05, 800, ("unet", "bank-s39u"), LONG_NET)]
LONG_PAIRS = [("bank-s30", "long-train", "train", 30, 8), ("bank-s39", "heldout/long-seen", "held", 39, 4),
              ("bank-s39u", "heldout/long-unet", "held", 40, 4)]
# translate2 (docs/selection-rule-v19.txt): a second training-side bank with decoders no other bank has (bilinear
# up-sampling + conv; StyleGAN's zero insertion + blur + conv + noise); no held-out family of its own
TRANSLATE2_BANKS = [(2, "train", "resnet-bilinear,resnet-style", 4, 150, 0.0, 400, None, ())]
TRANSLATE2_PAIRS = [("bank-s2", "translate2", "train", 2, 8)]
# per stage: banks, pair folders, the held-out folders to halve (with the folder their fusion-fit half goes to;
# None: that half is unused) and the validation mix (name, parts under heldout/)
FAMILY_STAGES = {
    "translate": (TRANSLATE_BANKS, TRANSLATE_PAIRS + LARGE_PAIRS, {"translate-seen": "fit-translate", "translate-unet": None,
                                                     "translate-gan": None},
                  ("val-mix", {"ts": "twins-shuffle", "tr": "fit-translate/translate-seen"})),
    "long": (LONG_BANKS, LONG_PAIRS, {"long-seen": "fit-long", "long-unet": None},
             ("val-mix-long", {"ts": "twins-shuffle", "tr": "fit-translate/translate-seen", "lg": "fit-long/long-seen"})),
    "translate2": (TRANSLATE2_BANKS, TRANSLATE2_PAIRS, {},
                   ("val-mix", {"ts": "twins-shuffle", "tr": "fit-translate/translate-seen"})),
}


def held_out(name: str) -> bool:
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 2 ** 32 < HOLDOUT


def ganscan(*args: str) -> None:
    exe = shutil.which("ganscan") or str(Path(sys.executable).with_name("ganscan"))
    cmd = [exe, *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def sources(data: Path, held: bool) -> list[str]:
    from ganscan.data.datasets import list_images

    real = data / "train" / "real"
    if not real.is_dir():
        sys.exit(f"error: {real} not found (pass --data pointing at the shared data folder)")
    out = []
    for folder in SOURCES:
        for p in list_images(str(real / folder)):
            if held_out(Path(p).name) == held:
                out.append(p)
    return out


def fit_crops(paths: list[str]):
    from ganscan.data.decode import load_image
    from ganscan.detectors.train.twins import fit_crop_pool

    return fit_crop_pool(paths, load=lambda p: load_image(p)[0])


def progress(label: str):
    t0 = time.time()

    def report(i, n):
        if i % 200 == 0 or i == n:
            print(f"{label}: {i}/{n} sources, {time.time() - t0:.0f} s", flush=True)
    return report


def pair_jobs(args) -> list[tuple[str, int, float, int, dict]]:
    """(folder, seed, chain share, most crops per photo, PairConfig fields) of every pair folder the pairs stage
    writes."""
    if args.recipe:
        return [(*j[:4], j[4] if len(j) > 4 else {}) for j in RECIPES[args.recipe]["pairs"]]
    return [(args.pairs[0], args.seed, args.chain_prob, args.max_crops, {})]


def stage_pairs(data: Path, work: Path, args) -> None:
    """Write the pair folders (each with its own seed, bank and share of 4x chains) and, with ``--small``, a
    folder of small pairs (32-56 px crops of every sixth source: images smaller than the detector's 64 px
    tile, which it reads mirror-padded), made with the last folder's bank."""
    import torch

    from ganscan.detectors.train import twins as T

    torch.set_num_threads(1)
    jobs = [(work / f, seed, [T.PairConfig(chain_prob=chain, rescale_prob=args.rescale, **fields)], crops, 1)
            for f, seed, chain, crops, fields in pair_jobs(args)]
    if args.small:
        jobs.append((work / args.small, jobs[-1][1], [T.PairConfig(size=s) for s in (32, 40, 48, 56)], 1, 6))
    train, banks = sources(data, held=False), {}
    for out, seed, cfgs, max_crops, every in jobs:
        if (out / "pairs.csv").exists() or (out / f"size{cfgs[0].size}" / "pairs.csv").exists():
            print(f"{out}: exists")
            continue
        if seed not in banks:
            banks[seed] = T.build_bank(seed, TRAIN_KINDS, args.tails_per_kind, fit_crops(train),
                                       progress=lambda n: print("tail", n, flush=True))
        for cfg in cfgs:
            dst, s = (out, seed) if len(cfgs) == 1 else (out / f"size{cfg.size}", seed + cfg.size)
            counts = T.write_twins(train[::every], dst, banks[seed], cfg, seed=s, max_crops=max_crops,
                                   progress=progress(str(dst)))
            print(dst, counts, flush=True)


def stage_heldout(data: Path, work: Path, args) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from ganscan.data.datasets import list_images
    from ganscan.data.decode import load_image
    from ganscan.detectors.train import twins as T

    torch.set_num_threads(1)
    held = sources(data, held=True)
    crops = fit_crops(held)
    cfg = T.PairConfig()
    for name, kinds, seed in (("twins-shuffle", (HELD_KIND,), 1000 + args.seed),
                              ("twins-seen", TRAIN_KINDS, 2000 + args.seed)):
        out = work / "heldout" / name
        if (out / "pairs.csv").exists():
            continue
        bank = T.build_bank(seed, kinds, max(2, args.tails_per_kind // 2), crops)
        print(out, T.write_twins(held, out, bank, cfg, seed=seed, max_crops=4, progress=progress(name)), flush=True)
    small = work / "heldout" / "twins-small"
    if not (small / "pairs.csv").exists():   # images under the 64 px tile (read mirror-padded), held-out tails
        bank = T.build_bank(3000 + args.seed, (HELD_KIND,), max(2, args.tails_per_kind // 2), crops)
        for size in (32, 40, 48, 56):
            print(small, size, T.write_twins(held[::2], small / f"size{size}", bank, T.PairConfig(size=size),
                                             seed=3000 + size, max_crops=1), flush=True)
        for c in ("0_real", "1_fake"):
            (small / c).mkdir(exist_ok=True)
            for f in sorted(small.glob(f"size*/{c}/*")):
                (small / c / f"{f.parent.parent.name}_{f.name}").symlink_to(f.resolve())
        (small / "pairs.csv").write_text("see size*/pairs.csv\n")
    tiny = work / "heldout" / "small-real" / "0_real"
    if not tiny.exists():   # held-out 32 px photos (CIFAR-10), real only: half to calib/small32, half reported
        tiny.mkdir(parents=True)
        (work / "heldout" / "calib" / "small32" / "0_real").mkdir(parents=True, exist_ok=True)
        for folder in ("cifar10-cat", "cifar10-dog", "cifar10-horse"):
            for p in list_images(str(data / "train" / "real" / folder)):
                if held_out(Path(p).name):
                    name = f"{folder}_{Path(p).name}"
                    to_calib = int(hashlib.sha1(name.encode()).hexdigest()[-1], 16) % 2 == 0
                    dst = work / "heldout" / "calib" / "small32" / "0_real" if to_calib else tiny
                    (dst / name).symlink_to(Path(p).resolve())
    neg = work / "heldout" / "negatives"
    if neg.exists():
        return
    for k in ("unchanged", "upscaled2x", "downscaled0.5", "jpeg75"):
        (neg / k / "0_real").mkdir(parents=True, exist_ok=True)
    for p in held:
        rng = np.random.default_rng(int(hashlib.sha1(p.encode()).hexdigest()[:8], 16))
        img = load_image(p)[0]
        stem = hashlib.sha1(p.encode()).hexdigest()[:12]
        for j, c in enumerate(T.random_crops(img, 128, 2, rng)):
            c.save(neg / "unchanged" / "0_real" / f"{stem}_{j}.png")
            f = [Image.BICUBIC, Image.LANCZOS][j % 2]
            c.resize((256, 256), f).save(neg / "upscaled2x" / "0_real" / f"{stem}_{j}.png")
            c.save(neg / "jpeg75" / "0_real" / f"{stem}_{j}.jpg", "JPEG", quality=75)
        if min(img.size) >= 256:
            for j, c in enumerate(T.random_crops(img, 256, 1, rng)):
                c.resize((128, 128), Image.LANCZOS).save(neg / "downscaled0.5" / "0_real" / f"{stem}_{j}.png")
    print(neg, "written", flush=True)


def stage_families(data: Path, work: Path) -> None:
    """Held-out families of other generators: AutoGAN 1-layer reconstructions and ProGAN samples."""
    from PIL import Image

    held = work / "heldout"
    ae = held / "autogan1"
    if not (ae / "1_fake").exists():
        ae.mkdir(parents=True, exist_ok=True)
        if not (ae / "0_real").exists():
            (ae / "0_real").symlink_to((held / "negatives" / "unchanged" / "0_real").resolve())
        ganscan("generate", "--model", "autogan", "--weights", "autogan-1layer", "--input",
                str(held / "negatives" / "unchanged" / "0_real"), "-o", str(ae / "1_fake"), "-q")
    pg = held / "progan"
    if not (pg / "1_fake").exists():
        ganscan("generate", "--model", "progan", "-n", "300", "--seed", "11", "-o", str(pg / "1_fake"), "-q")
    if not (pg / "0_real").exists():
        (pg / "0_real").mkdir(parents=True)
        for p in sources(data, held=True):
            if "celeba128" in p:   # ProGAN's size: CelebA box-downscaled to 64 px
                Image.open(p).convert("RGB").resize((64, 64), Image.BOX).save(pg / "0_real" / (Path(p).stem + ".png"))
    subprocess.run([sys.executable, str(Path(__file__).with_name("twins_sets.py")), "--data", str(data),
                    "--work", str(work)], check=True)


def stage_translate(data: Path, work: Path, stage: str = "translate") -> None:
    """Our own image-translation generators, their training twins and held-out families, each halved: the
    fusion is fitted on one half of the seen-architecture family, the table reports the other halves.
    ``translate``: three held-out families (new weights of the trained architectures, the U-Net left out of
    training, adversarially trained nets); ``long``: the seen architectures and the U-Net, trained longer."""
    import translation_family as TF

    bank_specs, pair_specs, halves, (mix, parts) = FAMILY_STAGES[stage]
    script = str(Path(__file__).with_name("translation_family.py"))
    banks = work / "translate-banks"
    for seed, side, archs, per, steps, adv, pool, split, net in bank_specs:
        if split and (banks / split[1]).is_dir():   # built and split already (the bank would retrain the moved nets)
            continue
        subprocess.run([sys.executable, script, "bank", "--data", str(data), "--work", str(work), "--seed", str(seed),
                        "--side", side, "--archs", archs, "--per-arch", str(per), "--steps", str(steps),
                        "--pool", str(pool), "--adv", str(adv), *net], check=True)
        if split:
            (banks / split[1]).mkdir()
            for f in sorted((banks / f"bank-s{seed}").glob(f"{split[0]}-*")):
                f.rename(banks / split[1] / f.name)
    for bank, out, side, seed, crops, *size in pair_specs:
        subprocess.run([sys.executable, script, "pairs", "--data", str(data), "--work", str(work), "--bank", bank,
                        "--out", out, "--side", side, "--seed", str(seed), "--max-crops", str(crops),
                        *(("--size", str(size[0])) if size else ())], check=True)
    held = work / "heldout"
    for name, fit in halves.items():
        if not (held / "report" / name).is_dir():
            print(name, TF.split_halves(held / name, held / (fit or "unused") / name, held / "report" / name), flush=True)
    if not (held / mix).is_dir():
        TF.merge_sets(held / mix, {k: held / v for k, v in parts.items()})


def family_stages(args) -> list[str]:
    """The family stages this build runs (``--translate``, ``--long``, ``--translate2``), in FAMILY_STAGES order."""
    return [s for s in FAMILY_STAGES if getattr(args, s, False)]


def val_set(args) -> str:
    """The trainer's validation set: the mix of the last family stage, else the left-out tail family."""
    stages = family_stages(args)
    return FAMILY_STAGES[stages[-1]][3][0] if stages else "twins-shuffle"


def stage_train(work: Path, args) -> Path:
    run = Path(args.run) if args.run else work / "run"
    if (run / "best.safetensors").exists() and not args.resume:
        print(f"{run}: trained")
        return run
    seeds = getattr(args, "average_seeds", None)
    if seeds:   # one run per seed, then the member is their average
        for seed in seeds:
            one = run / f"seed{seed}"   # --resume continues the seeds that started, and starts the others
            stage_train(work, argparse.Namespace(**{**vars(args), "average_seeds": None, "seed": seed, "run": str(one),
                                                    "resume": args.resume and (one / "resume.safetensors").exists()}))
        ganscan("models", "average", *[str(run / f"seed{seed}" / "best.safetensors") for seed in seeds],
                "-o", str(run / "best.safetensors"), "--name", args.name, "--force")
        return run
    pairs = [work / j[0] for j in pair_jobs(args)] if args.recipe else [work / p for p in args.pairs]
    if args.small:
        pairs += sorted((work / args.small).glob("size*"))
    for stage in family_stages(args):   # each family's training twins go first, the latest family first
        pairs = [work / out for _, out, side, *_ in FAMILY_STAGES[stage][1] if side == "train"] + pairs
    init = ["--init", args.init] if args.init else []
    cmd = ["train", *[a for p in pairs for a in ("--real", str(p / "0_real"), "--fake", str(p / "1_fake"))], *init,
           "--val", str(work / "heldout" / val_set(args)), "--arch", args.arch, "--crop", "64", "--epochs", str(args.epochs),
           "--batch-size", "64", "--lr", str(args.lr), "--jpeg-prob", str(args.jpeg[0]),
           "--jpeg-quality", f"{int(args.jpeg[1])},{int(args.jpeg[2])}", "--blur-prob", "0.0",
           "--monitor", "val_auc", "--threshold-rule", args.threshold_rule, "--seed", str(args.seed),
           *(["--crop-align", str(args.crop_align)] if getattr(args, "crop_align", 1) != 1 else []),
           "--name", args.name, "--precision", args.precision, "--workers", "1", "--checkpoint-every", "100",
           "-o", str(run)]
    if args.resume:
        cmd = ["train", "--resume", "-o", str(run)]
    ganscan(*cmd)
    return run


def real_only_folder(data: Path, work: Path) -> Path:
    """WORK/fsd-real: links to the training-side reals, the real-only members' fitting photos."""
    real = work / "fsd-real"
    for p in sources(data, held=False):
        dst = real / Path(p).parent.name / Path(p).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.symlink_to(Path(p).resolve())
    return real


def stage_real_only(data: Path, work: Path, kind: str) -> Path:
    """A real-only member fitted on the training-side reals, its threshold at 5 % FPR on every heldout/calib kind:
    ``fsd`` (WORK/fsd.safetensors, ganscan-fsd-v1) or ``zed`` (WORK/zed.safetensors, rule
    docs/selection-rule-v53.txt)."""
    out = work / f"{kind}.safetensors"
    if out.exists():
        print(f"{out}: fitted")
        return out
    ganscan("models", f"fit-{kind}", str(real_only_folder(data, work)), "--calibrate", str(work / "heldout" / "calib"),
            "--fpr", "0.05", *(["--steps", "4000"] if kind == "zed" else []), "--name", f"ganscan-{kind}-v1",
            "-o", str(out))
    return out


def two_scale_file(half: dict) -> str:
    """The two-scale model's file name in the run folder: ``fused-v43.safetensors`` for ganscan-fusion-v43."""
    return f"fused-{half['name'].rsplit('-', 1)[-1]}.safetensors"


def stage_fuse(work: Path, run: Path, args) -> Path:
    """The fusion with ganscan-spectrum-v1: weights fitted on held-out twins of the trained tail kinds and
    on half of the AutoGAN and ProGAN families, threshold at 5 % FPR on every calibration kind of
    held-out real photo."""
    jpeg_branch = getattr(args, "jpeg_branch", None)   # the lossless member of a fusion with a JPEG branch
    out = run / ("fused3.safetensors" if args.fsd else "fused-u2j.safetensors" if jpeg_branch and args.calib_u2j
                 else "fused.safetensors")
    held = work / "heldout"
    extra = ["--fsd", str(work / "fsd.safetensors")] if args.fsd else []
    if args.fit_jpeg:
        extra += ["--fit", str(held / "fit-jpeg")]
    for stage in family_stages(args):   # the fusion-fit half of each family stage
        extra += [a for fit in FAMILY_STAGES[stage][2].values() if fit for a in ("--fit", str(held / fit))]
    name = args.name.replace("twins", "fusion").replace("spectrum", "fusion") + ("-fsd" if args.fsd else "")
    if args.member == "spectrum":   # the run trained the spectrum member; the NPR member is the partner
        members = ["--spectrum", str(run / "best.safetensors"), "--npr", args.partner]
    elif jpeg_branch:   # the run trained the JPEG branch's member; lossless files keep jpeg_branch's scores
        members = ["--npr", jpeg_branch, "--npr-jpeg", str(run / "best.safetensors"), "--fit-jpeg", str(held / "fit-jpeg")]
        name = args.fusion_name or name
    else:
        members = ["--npr", str(run / "best.safetensors")]
    if args.calib_frac:   # the kind of reals enlarged by a non-integer factor (examples/twins_sets.py)
        extra += ["--calibrate", str(held / "calib-frac")]
    if args.calib_u2j:   # reals enlarged 2x and then saved as JPEG 75 (examples/twins_sets.py); JPEG files only
        extra += ["--calibrate-jpeg" if jpeg_branch else "--calibrate", str(held / "calib-u2j")]
    ganscan("models", "fuse", *members, *extra, "--fit", str(held / "twins-seen"),
            "--fit", str(held / "fit"), "--calibrate", str(held / "calib"), "--fpr", "0.05", "--name", name,
            "-o", str(out), "--force")
    half = getattr(args, "half_read", None)
    if half:   # the two-scale read (recipe v40): the fused model's tensors, a half-size read, a new threshold
        two = run / two_scale_file(half)
        subprocess.run([sys.executable, str(Path(__file__).with_name("retile.py")), str(out), "--half-tiles",
                        str(half["tiles"]), "--half-margin", str(half["margin"]), "--half-filter", half["filter"],
                        *(["--half-lossless"] if half["lossless"] else []),
                        *(["--tile-stride", str(half["stride"])] if half.get("stride") else []),
                        *(["--stride-jpeg-only"] if half.get("stride_jpeg_only") else []),
                        *(["--tile-pool", half["pool"]] if half.get("pool") else []),
                        *(["--pool-jpeg-only"] if half.get("pool_jpeg_only") else []),
                        *(["--half-jpeg-side", str(half["jpeg_side"]), "--half-jpeg-margin", str(half["jpeg_margin"])]
                          if half.get("jpeg_side") else []),
                        *(["--precision", half["precision"]] if half.get("precision") else []),
                        "--calibrate", str(held / "calib"),
                        *([str(held / "calib-frac")] if args.calib_frac else []), "--fpr", "0.05",
                        "--name", half["name"], "-o", str(two)], check=True)
        return two
    return out


def stage_table(data: Path, work: Path, run: Path, args) -> None:
    models = ["ganscan-spectrum-v1", str(run / "best.safetensors")]
    if args.member == "spectrum":
        models.insert(1, args.partner)
    half = getattr(args, "half_read", None)
    fused = two_scale_file(half) if half else "fused.safetensors"
    models += [str(work / "fsd.safetensors"), str(run / "fused3.safetensors")] if args.fsd else [str(run / fused)]
    subprocess.run([sys.executable, str(Path(__file__).with_name("twins_table.py")), "--models", *models,
                    "--work", str(work), "--data", str(data), "-o", str(run / "table.json")], check=True)


def apply_recipe(args) -> None:
    """Set what ``--recipe`` names; ``--init`` and ``--run`` given on the command line win over the recipe's (so
    ``--recipe v4 --init runs/twins/run-v2-32/best.safetensors`` fine-tunes a rebuilt v2 instead of the shipped one),
    and ``--calib-frac`` / ``--calib-u2j`` add their calibration kind to the recipe's."""
    if not args.recipe:
        return
    r = RECIPES[args.recipe]
    args.small, args.epochs, args.arch, args.name = r["small"], r["epochs"], r["arch"], r["name"]
    args.jpeg, args.fit_jpeg = r["jpeg"], r.get("fit_jpeg", False)
    args.translate, args.init, args.lr = r.get("translate", False), args.init or r.get("init"), r.get("lr", args.lr)
    args.long, args.translate2 = r.get("long", False), r.get("translate2", False)
    args.rescale = r.get("rescale", args.rescale)
    args.jpeg_branch, args.fusion_name = r.get("jpeg_branch"), r.get("fusion_name")
    args.average_seeds = r.get("average_seeds")
    args.half_read = r.get("half_read")
    # a calibration kind named on the command line is added to the recipe's
    args.calib_frac = r.get("calib_frac", False) or getattr(args, "calib_frac", False)
    args.calib_u2j = r.get("calib_u2j", False) or getattr(args, "calib_u2j", False)
    args.run = args.run or str(Path(args.work) / r["run"])
    # --crop-align on the command line wins over the recipe's (v16's control: --recipe v16 --crop-align 1)
    given = getattr(args, "crop_align", None)
    args.crop_align = given if given is not None else r.get("crop_align", 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--work", default="runs/twins")
    ap.add_argument("--run", default=None, help="training run folder (default WORK/run)")
    ap.add_argument("--stage", choices=["pairs", "heldout", "translate", "long", "translate2", "train", "fsd", "zed",
                                        "fuse", "table"],
                    default=None)
    ap.add_argument("--fsd", action="store_true", help="fit the real-only fsd64 member and fuse three members")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                    help="a named build: its pair folders, small pairs, epochs, architecture, train-time JPEG, "
                         "name and run folder")
    ap.add_argument("--arch", default="npr")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tails-per-kind", type=int, default=24)
    ap.add_argument("--max-crops", type=int, default=32)
    ap.add_argument("--threshold-rule", default="fpr:0.05")
    ap.add_argument("--jpeg", type=float, nargs=3, default=(0.1, 30, 100), metavar=("P", "QLO", "QHI"),
                    help="train-time JPEG re-compression: probability and quality range")
    ap.add_argument("--fit-jpeg", action="store_true", help="fit the fusion on heldout/fit-jpeg too")
    ap.add_argument("--translate", action="store_true",
                    help="the translate stage: our own translation generators' twins, trained on and held out")
    ap.add_argument("--translate2", action="store_true",
                    help="the translate2 stage: a second bank, with bilinear and StyleGAN-like decoders (needs --translate)")
    ap.add_argument("--long", action="store_true",
                    help="the long stage: twins of longer-trained translation generators (needs --translate)")
    ap.add_argument("--init", default=None,
                    help="fine-tune this detector (a shipped name or a file); with --recipe, instead of the recipe's own")
    ap.add_argument("--name", default="ganscan-twins-v1")
    ap.add_argument("--chain-prob", type=float, default=0.0,
                    help="share of the first pair folder's fakes made at 4x by two tails in a row")
    ap.add_argument("--small", default=None, help="also write and train on small pairs (32-56 px) in WORK/SMALL")
    ap.add_argument("--pairs", nargs="+", default=["pairs"], help="pair folders under WORK to train on")
    ap.add_argument("--precision", default=None,
                    help="training precision (default: bf16 on CPUs that compute it natively, ~3x faster here; else auto)")
    ap.add_argument("--resume", action="store_true", help="continue the training run")
    ap.add_argument("--rescale", type=float, default=0.0,
                    help="share of pairs enlarged (both members alike) by a non-integer factor of 1.2-1.8")
    ap.add_argument("--calib-frac", action="store_true",
                    help="the fusion's threshold also on heldout/calib-frac (reals enlarged 1.2-1.8x)")
    ap.add_argument("--calib-u2j", action="store_true",
                    help="the fusion's threshold also on heldout/calib-u2j (reals enlarged 2x, then JPEG 75)")
    ap.add_argument("--crop-align", type=int, default=None,
                    help="training crops at multiples of N pixels from the image's origin, tiles on that grid "
                         "(default: the recipe's, else 1: any offset)")
    args = ap.parse_args()
    if args.crop_align is None and not args.recipe:
        args.crop_align = 1
    if args.precision is None:
        from ganscan.core.device import cpu_has_fast_bf16

        args.precision = "bf16" if cpu_has_fast_bf16() else "auto"
    apply_recipe(args)
    recipe = RECIPES[args.recipe] if args.recipe else {}
    args.member, args.partner = recipe.get("member", "npr"), recipe.get("partner")   # which member the run trains
    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    stages = [args.stage] if args.stage else ["pairs", "heldout", *family_stages(args), "train"] + \
        (["fsd"] if args.fsd else []) + ["fuse", "table"]
    run = Path(args.run) if args.run else work / "run"
    for s in stages:
        t = time.time()
        if s == "pairs":
            stage_pairs(data, work, args)
        elif s == "heldout":
            stage_heldout(data, work, args)
            stage_families(data, work)
        elif s in FAMILY_STAGES:
            stage_translate(data, work, s)
        elif s == "train":
            run = stage_train(work, args)
        elif s in ("fsd", "zed"):
            stage_real_only(data, work, s)
        elif s == "fuse":
            stage_fuse(work, run, args)
        else:
            stage_table(data, work, run, args)
        print(f"stage {s}: {time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
