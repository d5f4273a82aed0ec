"""The shipped-weights catalogue: model cards in weights/, found by name and kind (detectors and GANs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ganscan.errors import CheckpointError, UnknownNameError, suggest


def weights_dir() -> Path:
    """Where the shipped weights are: weights/ of the repository (a clone or an editable install), else the
    ``ganscan/weights`` folder a wheel or sdist install carries."""
    package = Path(__file__).resolve().parent.parent
    repo = package.parent / "weights"
    if repo.is_dir() and (package.parent / "pyproject.toml").is_file():
        return repo
    return package / "weights"


def shipped_weights(kind: str | None = None) -> list[dict]:
    """Model cards of the shipped weights (all, or those of ``kind``: ``detector`` or ``gan``), each with
    ``file``."""
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
        if f.exists() and kind in (None, card.get("kind")):
            card["file"] = str(f)
            card.setdefault("name", cp.stem)
            cards.append(card)
    return cards


def resolve_weights(spec: str | os.PathLike, kind: str, label: str | None = None,
                    missing: str = "checkpoint") -> Path:
    """A path to a ``.safetensors`` checkpoint, or the file of the shipped ``kind`` weights named ``spec``."""
    p = Path(spec)
    if p.suffix == ".safetensors" or os.sep in str(spec) or p.exists():
        if not p.exists():
            raise CheckpointError(f"{missing} not found: {p}")
        return p
    cards = {c["name"]: c for c in shipped_weights(kind)}
    if str(spec) not in cards:
        close = suggest(str(spec), cards)
        raise UnknownNameError(f"no shipped {label or kind} weights named {str(spec)!r}",
                               hint=f"did you mean {close!r}?" if close else "see `ganscan models` for shipped weights")
    return Path(cards[str(spec)]["file"])
