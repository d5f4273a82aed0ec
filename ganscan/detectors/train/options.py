"""Training options: the one source of their defaults and choices (``ganscan train`` reads them from here),
the published recipes, and the checks; what a new or a resumed run trains with."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ganscan.core.checkpoint import read_metadata
from ganscan.data.augment import AugmentConfig
from ganscan.data.decode import DEFAULT_MAX_PIXELS
from ganscan.detectors.train.data import DataSpec
from ganscan.errors import GanscanError

#: The options that are augmentations (ganscan.data.augment); their defaults are AugmentConfig's.
AUGMENT_KEYS = ("resize", "flip_prob", "blur_prob", "blur_sigma", "jpeg_prob", "jpeg_quality", "rescale_prob",
                "rescale_range", "crop_align")
_AUGMENT = AugmentConfig()

#: Every option a run records; a recipe sets some, the command line overrides any.
DEFAULTS: dict = {
    "arch": "resnet50",
    "epochs": 100,
    "batch_size": 64,
    "optimizer": "adam",          # adam | sgd
    "lr": 1e-4,                   # base learning rate (backbone and head)
    "backbone_lr": None,          # overrides lr for the backbone (fine-tuning: lower)
    "head_lr": None,              # overrides lr for the classifier head
    "momentum": 0.9,              # SGD momentum
    "betas": [0.9, 0.999],        # Adam betas
    "weight_decay": 0.0,          # L2 on the backbone
    "head_weight_decay": None,    # L2 on the head (default: weight_decay)
    "crop": None,                 # training crop and validation centre crop (default: the arch's input)
    **{k: list(v) if isinstance(v, tuple) else v for k in AUGMENT_KEYS for v in [getattr(_AUGMENT, k)]},
    "schedule": "plateau",        # plateau: LR x lr_factor when `monitor` stalls `patience` epochs, stop below
                                  # min_lr | early_stop: stop when it stalls | none
    "monitor": "val_bacc",        # val_bacc (accuracy balanced over the classes: equal to the accuracy on a
                                  # balanced set such as CNNDetection's) | val_acc | val_loss | val_ap | val_auc
    "patience": 5,
    "lr_factor": 0.1,
    "min_lr": 1e-6,
    "min_delta": 0.001,           # the smallest change of `monitor` that counts as an improvement
    "val_split": 0.1,             # used when no --val set is given
    "val_every": 0,               # also validate every N training steps (0: per epoch only)
    "balance": "weight",          # weight (pos_weight = n_real/n_fake) | sample (class-balanced draws) | none
    "threshold_rule": "eer",      # eer | fpr:X | fixed:T
    "seed": 0,
    "freeze_backbone": False,
    "init": None,                 # a detector checkpoint to start from (fine-tuning)
    "pretrained": None,           # a local ImageNet state dict for the backbone
    "max_pixels": DEFAULT_MAX_PIXELS,
}

RECIPES: dict[str, dict] = {
    # Wang et al. 2020 (CNNDetection, seed 001): ImageNet ResNet-50, Adam 1e-4, batch 64, blur+JPEG at
    # p 0.5 (the paper's other model: p 0.1), 224 crops; early stop on val accuracy with patience 5 ->
    # LR / 10, stop below 1e-6. Accuracy is balanced over the classes (CNNDetection's val set is balanced).
    "wang2020": {"arch": "resnet50", "epochs": 100, "batch_size": 64, "optimizer": "adam", "lr": 1e-4,
                 "crop": 224, "flip_prob": 0.5, "blur_prob": 0.5, "jpeg_prob": 0.5, "schedule": "plateau",
                 "monitor": "val_bacc", "patience": 5, "lr_factor": 0.1, "min_lr": 1e-6, "val_split": 0.1},
    # Khan (seed 000): from scratch, SGD momentum 0.9, body lr 1e-3 / L2 1e-3, last layer lr 5e-5 / L2 1e-5,
    # random horizontal flips, early stopping on validation loss, 30 % validation split.
    "khan": {"arch": "inception_resnet_v2", "epochs": 50, "batch_size": 32, "optimizer": "sgd", "lr": 1e-3,
             "momentum": 0.9, "weight_decay": 1e-3, "head_lr": 5e-5, "head_weight_decay": 1e-5,
             "flip_prob": 0.5, "blur_prob": 0.0, "jpeg_prob": 0.0, "schedule": "early_stop",
             "monitor": "val_loss", "patience": 5, "val_split": 0.3},
    # Sanna & Zagni, Trieste (seed 002): ResNet-18, Adam, batch 64, 20 epochs, LR / 10 when val accuracy
    # stalls (by 0.1 %) for 5 epochs, stop at 1e-6; 224 crop, JPEG p 0.5, flip, blur sigma U[0,3] p 0.5.
    "trieste": {"arch": "resnet18", "epochs": 20, "batch_size": 64, "optimizer": "adam", "lr": 1e-4,
                "crop": 224, "flip_prob": 0.5, "blur_prob": 0.5, "jpeg_prob": 0.5, "schedule": "plateau",
                "monitor": "val_bacc", "patience": 5, "lr_factor": 0.1, "min_lr": 1e-6, "min_delta": 0.001,
                "val_split": 0.1},
}
DEFAULT_RECIPE = "wang2020"
IMAGENET_RECIPES = ("wang2020", "trieste")  # the papers start from ImageNet weights

#: The monitored metrics and the direction that is better.
MONITORS = {"val_bacc": "max", "val_acc": "max", "val_loss": "min", "val_ap": "max", "val_auc": "max"}
CHOICES: dict[str, tuple[str, ...]] = {"optimizer": ("adam", "sgd"), "schedule": ("plateau", "early_stop", "none"),
                                       "monitor": tuple(MONITORS), "balance": ("weight", "sample", "none")}


def shown_default(key: str):
    """The default worth showing in --help: the table's, where no recipe sets the option."""
    return None if any(key in r for r in RECIPES.values()) else DEFAULTS[key]


def resolve_options(recipe: str | None, overrides: dict | None = None) -> dict:
    """DEFAULTS <- RECIPES[recipe] <- overrides (None values ignored); checked."""
    if recipe is not None and recipe not in RECIPES:
        raise GanscanError(f"unknown recipe {recipe!r}", hint="use one of " + ", ".join(RECIPES))
    opts = dict(DEFAULTS)
    if recipe:
        opts.update(RECIPES[recipe])
    unknown = set(overrides or {}) - set(DEFAULTS)
    if unknown:
        raise GanscanError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    for k, v in (overrides or {}).items():
        if v is not None:
            opts[k] = list(v) if isinstance(v, tuple) else v
    _check_options(opts)
    return opts


def _check_options(o: dict) -> None:
    from ganscan.detectors import metrics
    from ganscan.detectors.registry import get_config

    get_config(o["arch"])  # unknown arch -> clear error with suggestion
    for key, allowed in CHOICES.items():
        if o[key] not in allowed:
            raise GanscanError(f"unknown {key} {o[key]!r}", hint=f"use {', '.join(allowed[:-1])} or {allowed[-1]}")
    if int(o["epochs"]) < 1 or int(o["batch_size"]) < 1:
        raise GanscanError("epochs and batch size must be at least 1")
    for k in ("lr", "backbone_lr", "head_lr"):
        if o[k] is not None and not float(o[k]) > 0:
            raise GanscanError(f"{k.replace('_', '-')} must be positive")
    try:
        metrics.parse_rule(o["threshold_rule"])
        augment_config(o, get_config(o["arch"]).input_size)
    except ValueError as exc:
        raise GanscanError(str(exc)) from None


def augment_config(o: dict, input_size: int) -> AugmentConfig:
    """The run's augmentations; the crop defaults to the architecture's input size."""
    # runs recorded before an option existed train with its default
    return AugmentConfig(crop=int(o["crop"] or input_size),
                         **{k: o.get(k, DEFAULTS[k]) for k in AUGMENT_KEYS})


# --- what a run trains with --------------------------------------------------------------------------

def new_run_options(recipe: str | None, given: dict, info: Callable[[str], None],
                    warn: Callable[[str], None]) -> tuple[dict, str]:
    """(options, recipe) of a new run: the recipe (default wang2020) under the options given; --init
    without --arch takes the checkpoint's; a recipe's crop larger than the architecture's input shrinks."""
    from ganscan.detectors.load import resolve_detector
    from ganscan.detectors.registry import get_config

    given = dict(given)
    if given.get("init") and not given.get("arch"):
        given["arch"] = read_metadata(resolve_detector(given["init"])).get("arch")
    recipe = recipe or DEFAULT_RECIPE
    options = resolve_options(recipe, given)
    arch = get_config(options["arch"])
    if given.get("crop") is None and options["crop"] and options["crop"] > arch.input_size:
        # a recipe's 224 px crop would train a 64 px tile detector on views it never scores
        info(f"recipe {recipe} crops {options['crop']} px; {options['arch']} reads {arch.input_size} px inputs: "
             f"training at --crop {arch.input_size} (pass --crop to choose)")
        options = resolve_options(recipe, {**given, "crop": arch.input_size})
    imagenet_arch = arch.timm_name is not None or options["arch"] == "alexnet"
    if not options["pretrained"] and not options["init"] and recipe in IMAGENET_RECIPES and imagenet_arch:
        warn(f"recipe {recipe} starts from ImageNet weights; none given (--pretrained FILE), so the "
             f"backbone trains from scratch")
    return options, recipe


def resumed_run_options(out_dir: str | os.PathLike, spec: DataSpec, recipe: str | None,
                        given: dict) -> tuple[DataSpec, dict, str | None]:
    """(data, options, recipe) to continue the run in ``out_dir``: the ones its resume state records; only
    the epochs may change."""
    named = sorted(k for k, v in given.items() if v is not None and k != "epochs")
    if named or recipe:
        raise GanscanError("--resume continues a run with the options it started with",
                           hint=f"only --epochs may change; drop {', '.join('--' + g.replace('_', '-') for g in named) or '--recipe'}")
    path = Path(out_dir) / "resume.safetensors"
    if not path.exists():
        raise GanscanError(f"nothing to resume in {out_dir}", hint="start the run without --resume")
    t = read_metadata(path).get("training") or {}
    stored_spec = DataSpec(**{k: list((t.get("data") or {}).get(k, [])) for k in ("data", "real", "fake", "val")})
    if any(spec.as_dict().values()) and spec.as_dict() != stored_spec.as_dict():
        raise GanscanError("--resume: the data given differs from the run's", hint="leave DATA out with --resume")
    stored = dict(t.get("options") or {})
    return stored_spec, resolve_options(None, {**stored, "epochs": given.get("epochs") or stored.get("epochs")}), \
        t.get("recipe")
