"""Shipping a trained generator: ``weights/NAME.safetensors`` plus its model card ``weights/NAME.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ganscan.core.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint, sha256_file
from ganscan.core.runs import read_csv
from ganscan.errors import CheckpointError, GanscanError


def export_generator(run_dir: str | os.PathLike, out: str | os.PathLike, name: str | None = None,
                     card_extra: dict | None = None, force: bool = False, raw: bool = False) -> dict:
    """Copy RUN/generator.safetensors to ``out`` (metadata name set) and write the card next to it.

    The card holds name, kind, model, resolution, latent size, data, recipe (run.json settings), the
    training commands when recorded, wall time, final losses (mean of the last 100 steps and the last
    step), sha256 and size; ``card_extra`` (e.g. {"metrics": ...}) is merged in.
    """
    run = Path(run_dir)
    src = run / "generator.safetensors"
    if not src.exists():
        raise GanscanError(f"{src} not found", hint="train first: ganscan gan train ... -o RUN")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise GanscanError(f"{out}: the output must end in .safetensors")
    card_file = out.with_suffix(".json")
    if not force and (out.exists() or card_file.exists()):
        raise GanscanError(f"{out} or its card already exists", hint="pass --force to replace them")
    tensors, meta = load_checkpoint(src, verify=False)
    if meta.get("kind") != "gan":
        raise CheckpointError(f"{src}: not a GAN generator checkpoint")
    if raw:
        ptr = json.loads((run / "checkpoint.json").read_text())
        full, full_meta = load_checkpoint(run / ptr["weights"], verify=False)
        if full_meta.get("step") != meta.get("step"):
            raise CheckpointError(f"{run}: generator.safetensors and the newest checkpoint are from different steps")
        tensors = {k[2:]: v for k, v in full.items() if k.startswith("G.")}
        meta = {**meta, "averaged": False}
    name = name or out.stem
    meta = {**meta, "name": name}
    meta.pop("ganscan_version", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, tensors, meta)
    record = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    rows = read_csv(run / "losses.csv")
    last = rows[-100:]
    losses = {}
    if last:
        for key in ("loss_d", "loss_g", "extra"):
            losses[f"{key}_last100_mean"] = round(sum(float(r[key]) for r in last) / len(last), 4)
            losses[key] = float(last[-1][key])
    seconds = float(rows[-1]["seconds"]) if rows else None
    card = {
        "name": name, "kind": "gan", "model": meta["model"], "arch": meta["model"],
        "resolution": meta["resolution"], "latent_size": meta["latent_size"],
        "trained_resolution": meta.get("trained_resolution"),
        "data": meta.get("data"), "training_images": record.get("images"), "held_out_images": record.get("held_out"),
        "recipe": {**record.get("settings", {}), "steps_done": meta.get("step"), "images_shown": meta.get("images")},
        "command": record.get("commands") or None,
        "resumes": [h.get("resumed_at_step") for h in record.get("history", [])],
        "time": {"seconds": seconds, "human": f"{seconds / 60:.1f} min" if seconds else None},
        "final_losses": losses,
        **(card_extra or {}),
        "sha256": sha256_file(out), "file_bytes": out.stat().st_size,
    }
    atomic_write_bytes(card_file, (json.dumps(card, indent=2) + "\n").encode())
    return card


def swd_metrics(result: dict) -> dict:
    """`gan evaluate --json` output -> card metrics: flat averages first (shown by `ganscan models`)."""
    flat = {}
    keys = ["swd_x1e3", "swd_untrained_x1e3", "swd_floor_x1e3"]
    for key, row in zip(keys if len(result["rows"]) == 3 else keys[:1], result["rows"]):
        flat[key] = round(row["avg"], 3)
    flat["swd"] = {"reals": result["real"], "split": result["split"], "holdout": result["holdout"],
                   "images_per_set": result["images"], "seed": result["seed"],
                   "rows": [{"name": r["name"], "avg": round(r["avg"], 3),
                             "levels": {k: round(v, 3) for k, v in r["levels"].items()}} for r in result["rows"]]}
    return flat


def card_extra_from_json(paths) -> dict:
    """Fields merged into a card from JSON files, in order: each an object of fields, or `gan evaluate --json`
    output (which becomes ``metrics``)."""
    extra = {}
    for path in paths:
        try:
            obj = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GanscanError(f"{path}: not readable JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise GanscanError(f"{path}: expected a JSON object")
        if "rows" in obj and obj["rows"] and "levels" in obj["rows"][0]:
            obj = {"metrics": {**extra.get("metrics", {}), **swd_metrics(obj)}}
        extra.update(obj)
    return extra
