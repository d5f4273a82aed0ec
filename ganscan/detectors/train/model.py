"""The detector being trained: its parameter groups and optimiser, train mode with a frozen backbone, and
the start from another detector's checkpoint (fine-tuning)."""

from __future__ import annotations

import torch
from torch import nn

from ganscan.core.checkpoint import load_checkpoint, load_strict
from ganscan.detectors.registry import classifier_prefixes
from ganscan.errors import CheckpointError


def split_params(model: nn.Module, arch: str) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(backbone, head) parameters; the head is the registry's classifier prefixes."""
    prefixes = classifier_prefixes(arch)
    body, head = [], []
    for name, p in model.named_parameters():
        (head if prefixes and name.startswith(prefixes) else body).append(p)
    if not head:  # no declared head: the last parameterised module
        last = [n for n, _ in model.named_parameters()][-2:]
        body = [p for n, p in model.named_parameters() if n not in last]
        head = [p for n, p in model.named_parameters() if n in last]
    return body, head


def make_optimizer(model: nn.Module, o: dict) -> torch.optim.Optimizer:
    """Adam or SGD over a backbone group (none when it is frozen) and a head group, each with its lr and L2."""
    body, head = split_params(model, o["arch"])
    lr, wd = float(o["lr"]), float(o["weight_decay"])
    groups = []
    if o["freeze_backbone"]:
        for p in body:
            p.requires_grad_(False)
    else:
        groups.append({"params": body, "lr": float(o["backbone_lr"] or lr), "weight_decay": wd, "name": "backbone"})
    groups.append({"params": head, "lr": float(o["head_lr"] or lr),
                   "weight_decay": float(o["head_weight_decay"] if o["head_weight_decay"] is not None else wd),
                   "name": "head"})
    if o["optimizer"] == "adam":
        return torch.optim.Adam(groups, betas=tuple(o["betas"]))
    return torch.optim.SGD(groups, momentum=float(o["momentum"]))


def set_train_mode(model: nn.Module, arch: str, frozen_backbone: bool) -> None:
    """train(); with a frozen backbone its BatchNorm layers stay in eval mode (running stats fixed)."""
    model.train()
    if frozen_backbone:
        prefixes = classifier_prefixes(arch)
        heads = {n for n, _ in model.named_modules() if prefixes and (n + ".").startswith(prefixes)}
        for name, m in model.named_modules():
            if name not in heads and isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


#: architectures that differ only in what they feed the same tensors: a checkpoint of one initialises the other
SAME_TENSORS = {frozenset(("npr32", "npr32-luma")), frozenset(("npr32", "npr32-ref"))}
#: (checkpoint's architecture, model's) -> input channels: the checkpoint's stem widened with zero weights
WIDENED_STEM = {("npr32", "npr32-2oct"): 6}


def load_init(model: nn.Module, spec: str, arch: str) -> None:
    """Initialise from a detector checkpoint (shipped name or file) of the same architecture (or one that
    ``SAME_TENSORS`` or ``WIDENED_STEM`` pairs with it)."""
    from ganscan.detectors.load import resolve_detector

    path = resolve_detector(spec)
    state, meta = load_checkpoint(path)
    ck_arch = meta.get("arch")
    if (ck_arch, arch) in WIDENED_STEM:
        from ganscan.detectors.zoo.families import widen_stem

        state = widen_stem(state, WIDENED_STEM[(ck_arch, arch)])
    elif ck_arch and ck_arch != arch and frozenset((ck_arch, arch)) not in SAME_TENSORS:
        raise CheckpointError(f"{path}: a {ck_arch} checkpoint cannot initialise a {arch} model",
                              hint=f"pass --arch {ck_arch}, or leave --arch out when using --init")
    load_strict(model, state, str(path), f"weights do not fit architecture {arch}",
                hint="is it a checkpoint of another architecture?")
