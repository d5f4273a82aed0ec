"""A uniform average of detector checkpoints, tensor by tensor (a "model soup", Wortsman et al. 2022).

Meant for networks fine-tuned from the same starting tensors (e.g. several training seeds of one recipe), whose
weights lie close enough for their average to be a network of its own; it costs nothing at scan time.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganscan.core.checkpoint import load_checkpoint, sha256_file
from ganscan.errors import CheckpointError, GanscanError


def average_states(states: list[dict]) -> dict:
    """The mean of each floating-point tensor over ``states`` (computed in float64, stored in the first state's
    dtype); integer tensors (BatchNorm's batch counters) are taken from the first. Every state must have the
    same names and shapes."""
    if len(states) < 2:
        raise GanscanError("an average needs at least two checkpoints")
    first = states[0]
    for i, s in enumerate(states[1:], start=2):
        if s.keys() != first.keys():
            diff = sorted(set(s) ^ set(first))
            raise CheckpointError(f"checkpoint {i} has other tensors than the first ({', '.join(diff[:3])}...)")
        for k, v in s.items():
            if v.shape != first[k].shape:
                raise CheckpointError(f"checkpoint {i}: {k} is {tuple(v.shape)}, the first's {tuple(first[k].shape)}")
    out = {}
    for k, v in first.items():
        if v.is_floating_point():
            out[k] = torch.stack([s[k].to(torch.float64) for s in states]).mean(0).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


def average_checkpoints(paths: list[str | Path], name: str) -> tuple[dict, dict]:
    """(state, metadata) of the average of detector checkpoints of one architecture. The metadata keeps the
    first's architecture and preprocessing, names every source (file, name, sha256, the metrics it was saved
    with) and sets the threshold to the mean of theirs: an average is not recalibrated (fuse it, or pass
    ``--threshold`` to scan)."""
    from ganscan.detectors.load import resolve_detector
    from ganscan.detectors.registry import get_config

    states, metas, files = [], [], []
    for spec in paths:
        p = resolve_detector(str(spec))   # a shipped name or a file
        state, meta = load_checkpoint(p)
        if meta.get("kind", "detector") != "detector":
            raise CheckpointError(f"{p}: a {meta.get('kind')} checkpoint, not a detector")
        if not meta.get("arch"):
            raise CheckpointError(f"{p}: the checkpoint names no architecture")
        if get_config(meta["arch"]).family == "fusion":
            raise CheckpointError(f"{spec}: a fused detector ({meta['arch']}); average its members and fuse the "
                                  "average (ganscan models fuse --npr AVERAGE)")
        states.append(state)
        metas.append(meta)
        files.append(p)
    archs = {m["arch"] for m in metas}
    if len(archs) > 1:
        raise CheckpointError(f"the checkpoints have different architectures ({', '.join(sorted(archs))}); "
                              "only networks of one architecture can be averaged")
    pres = {repr(m.get("preprocessing")) for m in metas}
    if len(pres) > 1:
        raise CheckpointError("the checkpoints read images differently (their preprocessing differs); "
                              "only networks that see the same views can be averaged")
    state = average_states(states)
    sources = [{"file": str(p), "name": m.get("name"), "sha256": sha256_file(p),
                **({"metrics": m["metrics"]} if "metrics" in m else {})} for p, m in zip(files, metas)]
    thresholds = [float(m.get("threshold", 0.5)) for m in metas]
    meta = {"kind": "detector", "arch": metas[0]["arch"], "name": name,
            "threshold": sum(thresholds) / len(thresholds),
            "threshold_rule": "mean of the averaged checkpoints' thresholds (not recalibrated)",
            "averaged_from": sources}
    if "preprocessing" in metas[0]:
        meta["preprocessing"] = metas[0]["preprocessing"]
    return state, meta
