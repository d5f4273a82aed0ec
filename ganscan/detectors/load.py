"""Loading a detector: shipped weights by name (sha256-checked against the card) or a checkpoint file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ganscan.core.checkpoint import load_checkpoint, load_strict, sha256_file
from ganscan.core.weights import resolve_weights, shipped_weights
from ganscan.detectors.registry import DetectorConfig, build_detector, get_config
from ganscan.errors import CheckpointError, GanscanError


def default_detector_name() -> str:
    cards = shipped_weights("detector")
    if cards:   # the one marked default, else the first
        return next((c for c in cards if c.get("default")), cards[0])["name"]
    raise CheckpointError("no shipped detector found in weights/",
                          hint="pass --model PATH.safetensors, or reinstall ganscan from its repository")


def resolve_detector(model: str | None) -> Path:
    """A shipped detector's name (None or ``default``: the default one), or a ``.safetensors`` path."""
    return resolve_weights(default_detector_name() if model in (None, "default") else model, "detector")


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
    def low_jpeg(self) -> dict | None:
        """{"threshold", "max_quality"}: the threshold a JPEG file of estimated quality at most ``max_quality`` is
        called at (``threshold_low_jpeg`` in the checkpoint), or None: one threshold for every file."""
        lj = self.meta.get("threshold_low_jpeg")
        return {"threshold": float(lj["threshold"]), "max_quality": int(lj["max_quality"])} if lj else None

    def threshold_for(self, fmt: str | None, quality: int | None, threshold: float | None = None,
                      low_jpeg: dict | None = None) -> float:
        """The threshold a file of this format and estimated JPEG quality is called at. ``threshold`` (--threshold)
        replaces the model's, and its low-quality JPEG one too unless ``low_jpeg`` (--low-jpeg-threshold:
        {"threshold", "max_quality"}) is given, which replaces that one."""
        lj = low_jpeg or (self.low_jpeg if threshold is None else None)
        if lj and fmt == "JPEG" and quality is not None and quality <= lj["max_quality"]:
            return lj["threshold"]
        return self.threshold if threshold is None else threshold

    @property
    def label(self) -> str:
        return self.meta.get("name") or self.path.stem

    def run_info(self) -> dict:
        return {"model": self.label, "arch": self.config.name, "weights_sha256": self.sha256,
                "preprocessing": self.config.describe_preprocessing(), "threshold": self.threshold,
                "placeholder": self.placeholder, **({"threshold_low_jpeg": self.low_jpeg} if self.low_jpeg else {})}


def load_detector(model: str | None = None) -> LoadedDetector:
    """Load shipped weights by name (sha256-verified against the card) or a checkpoint file."""
    path = resolve_detector(model)
    state, meta = load_checkpoint(path)
    if meta.get("kind", "detector") != "detector":
        raise CheckpointError(f"{path}: a {meta.get('kind')} checkpoint, not a detector",
                              hint="pass a detector checkpoint (see `ganscan models`)")
    arch = meta.get("arch")
    if not arch:
        raise CheckpointError(f"{path}: checkpoint metadata names no architecture",
                              hint="import foreign checkpoints with `ganscan models import`")
    cfg = get_config(arch).with_preprocessing(meta.get("preprocessing"))
    net = build_detector(arch, **meta.get("arch_args", {}))
    load_strict(net, state, str(path), f"weights do not fit architecture {arch}")
    net.eval()
    meta = {**meta, "name": meta.get("name") or path.stem}
    return LoadedDetector(model=net, config=cfg, meta=meta, path=path, sha256=sha256_file(path),
                          threshold=float(meta.get("threshold", 0.5)))


def open_detectors(models, device: str, precision: str, what: str = "scores"):
    """(device, precision, detectors) chosen the same way for scan, evaluate and explain; no model (or
    None) is the shipped default. Warns (on stderr) about an untrained placeholder; the same weights
    given twice are refused."""
    from ganscan.console import warn
    from ganscan.core.device import choose_precision, configure_threads, resolve_device

    dev = resolve_device(device)
    prec = choose_precision(dev, precision)
    configure_threads()
    detectors = []
    for model in models or [None]:
        det = load_detector(model)
        twin = next((d for d in detectors if d.sha256 == det.sha256), None)
        if twin is not None:
            raise GanscanError(f"model {det.label!r} is given twice" + (f" (as {twin.label!r})" if twin.label != det.label
                                                                         else ""), hint="give each --model once")
        if det.placeholder:
            warn(f"model {det.label!r} is an UNTRAINED PLACEHOLDER: its {what} mean nothing yet")
        detectors.append(det)
    return dev, prec, detectors


def open_detector(model: str | None, device: str, precision: str, what: str = "scores"):
    """``open_detectors`` for one model: (device, precision, detector)."""
    dev, prec, detectors = open_detectors([model], device, precision, what)
    return dev, prec, detectors[0]


def column_names(detectors: list[LoadedDetector]) -> list[str]:
    """The names in the per-model columns of a scan with several detectors (``score_<name>``): each label,
    characters other than letters, digits, ``.``, ``-`` and ``_`` replaced by ``_``, made unique (``-2``)."""
    import re

    names: list[str] = []
    for d in detectors:
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", d.label) or "model"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def describe_checkpoint(path) -> dict:
    """What a detector checkpoint (a file or a shipped name) is, from its metadata alone (no tensors read): name,
    architecture, threshold (and the precision of the scores that set it, where recorded), preprocessing, where its
    weights came from (an import's source files and their sha256, the inputs of an average, or the detector a retiled
    one reads otherwise)."""
    from ganscan.core.checkpoint import read_metadata

    path = Path(path)
    if not path.is_file():
        path = resolve_detector(str(path))   # a shipped name; a missing file or unknown name is a one-line error
    meta = read_metadata(path)
    if meta.get("kind", "detector") != "detector" or not meta.get("arch"):
        raise CheckpointError(f"{path}: not a ganscan detector checkpoint",
                              hint="import released weights with `ganscan models import FILE --from NAME`")
    src = meta.get("source") or {}
    averaged = meta.get("averaged_from")
    origin = (f"imported from {src.get('from') or 'a state dict'}: "
              + ", ".join(f"{f['file']} sha256 {f['sha256'][:16]}..." for f in src.get("files", []))
              if src else "the average of " + ", ".join(f"{a['name']} sha256 {a['sha256'][:16]}..." for a in averaged)
              if averaged else f"{meta['retiled_from'].get('name')}'s tensors, read otherwise (examples/retile.py)"
              if meta.get("retiled_from") else f"{meta['calibrated_from'].get('name')}'s tensors, its threshold set again "
              "(ganscan models calibrate)" if meta.get("calibrated_from")
              else "trained with ganscan" if meta.get("training") else "")
    return {"file": str(path), "name": meta.get("name") or path.stem, "arch": meta["arch"],
            "threshold": meta.get("threshold", 0.5), "threshold_precision": meta.get("threshold_precision"),
            "threshold_low_jpeg": meta.get("threshold_low_jpeg"),
            "preprocessing": get_config(meta["arch"]).with_preprocessing(meta.get("preprocessing"))
            .describe_preprocessing(), "origin": origin, "sha256": sha256_file(path), "source": src or None}
