"""A uniform average of detector checkpoints, tensor by tensor (a "model soup", Wortsman et al. 2022).

Meant for networks fine-tuned from the same starting tensors (e.g. several training seeds of one recipe), whose
weights lie close enough for their average to be a network of its own; it costs nothing at scan time.
"""

from __future__ import annotations

from pathlib import Path

import torch

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
    """(state, metadata) of the average of detector checkpoints (shipped names or files) of one architecture. Each
    is loaded as a scan loads it (kind, architecture and tensors checked). The metadata keeps the first's
    architecture, its arguments and preprocessing, names every source (file, name, sha256, the metrics it was saved
    with) and sets the threshold to the mean of theirs: an average is not recalibrated (fuse it, or pass
    ``--threshold`` to scan)."""
    from ganscan.detectors.load import load_detector

    dets = []
    for spec in paths:
        det = load_detector(str(spec))
        if det.config.family == "fusion":
            raise CheckpointError(f"{spec}: a fused detector ({det.config.name}); average its members and fuse the "
                                  "average (ganscan models fuse --npr AVERAGE)")
        dets.append(det)
    if len({(d.config.name, repr(d.meta.get("arch_args"))) for d in dets}) > 1:
        names = ", ".join(sorted({d.config.name for d in dets}))
        raise CheckpointError(f"the checkpoints have different architectures ({names}); "
                              "only networks of one architecture can be averaged")
    if len({repr(d.meta.get("preprocessing")) for d in dets}) > 1:
        raise CheckpointError("the checkpoints read images differently (their preprocessing differs); "
                              "only networks that see the same views can be averaged")
    state = average_states([d.model.state_dict() for d in dets])
    sources = [{"file": str(d.path), "name": d.label, "sha256": d.sha256,
                **({"metrics": d.meta["metrics"]} if "metrics" in d.meta else {})} for d in dets]
    first = dets[0].meta
    meta = {"kind": "detector", "arch": first["arch"], "name": name,
            "threshold": sum(d.threshold for d in dets) / len(dets),
            "threshold_rule": "mean of the averaged checkpoints' thresholds (not recalibrated)",
            "averaged_from": sources}
    for key in ("arch_args", "preprocessing"):
        if key in first:
            meta[key] = first[key]
    return state, meta
