#!/usr/bin/env python3
"""Which enlarged-then-compressed real photos a detector flags: enlarged native detail or enlargement itself?

    python examples/enlarge_diag.py --work runs/twins --models ganscan-fusion-v10 ganscan-twins-v10

From each held-out real crop of ``WORK/heldout/report/unchanged`` (128 px, never trained on) it writes three
kinds under ``WORK/heldout/diag-enlarge/`` and prints the share of each that every model calls fake:

- ``downup-jpeg75``: the crop down-scaled 0.5, enlarged 2x, saved as JPEG 75 (how a training pair's real twin
  is made: the down-scaling filter removes the photo's own detail at its Nyquist frequency first);
- ``downup``: the same, saved lossless;
- ``native-jpeg75``: the crop itself enlarged 2x, its centre 128 px saved as JPEG 75 (as
  ``report/upscaled2x-jpeg75`` is made, at the pair's size).

Filters are drawn from a hash of the name (enlarging: bicubic or Lanczos; down-scaling: bicubic, Lanczos,
bilinear or box). A diagnostic on held-out reals: it selects nothing (``docs/selection-rule-v15.txt``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

KINDS = ("downup-jpeg75", "downup", "native-jpeg75")


def filters(name: str):
    from PIL import Image

    h = int(hashlib.sha1(name.encode()).hexdigest()[:2], 16)
    up = [Image.BICUBIC, Image.LANCZOS][h % 2]
    down = [Image.BICUBIC, Image.LANCZOS, Image.BILINEAR, Image.BOX][(h // 2) % 4]
    return up, down


def write_kinds(src: Path, out: Path) -> int:
    """Write the three kinds of every image of ``src`` under ``out/<kind>/0_real``; returns how many sources
    were read (an unreadable one is reported and skipped). A kind whose file exists is left alone."""
    from PIL import Image

    from ganscan.data.datasets import list_images
    from ganscan.data.decode import DecodeError, load_image

    for k in KINDS:
        (out / k / "0_real").mkdir(parents=True, exist_ok=True)
    n = 0
    for p in list_images(str(src)):
        stem = Path(p).stem
        dst = {k: out / k / "0_real" / (stem + (".png" if k == "downup" else ".jpg")) for k in KINDS}
        if all(d.exists() for d in dst.values()):
            n += 1
            continue
        try:
            crop = load_image(p)[0].convert("RGB")
        except (DecodeError, OSError, ValueError) as e:
            print(f"skipped {p}: {e}", file=sys.stderr)
            continue
        up, down = filters(Path(p).name)
        w, h = crop.size
        downup = crop.resize((w // 2, h // 2), down).resize((w, h), up)
        downup.save(dst["downup-jpeg75"], "JPEG", quality=75)
        downup.save(dst["downup"])
        big = crop.resize((2 * w, 2 * h), up)
        big.crop((w // 2, h // 2, w // 2 + w, h // 2 + h)).save(dst["native-jpeg75"], "JPEG", quality=75)
        n += 1
    return n


def flagged(jsonl: Path) -> dict[str, float]:
    """Share of the rows of a ``ganscan scan`` JSON Lines report each model calls fake, by the model's name
    (a row that could not be read counts, as not flagged)."""
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    keys = [k for k in rows[0] if k.startswith("verdict_")] if rows else []
    if not keys and rows:   # one model: the report names it in "model"
        return {rows[0]["model"]: sum(r.get("verdict") == "fake" for r in rows) / len(rows)}
    return {k.removeprefix("verdict_"): sum(r.get(k) == "fake" for r in rows) / len(rows) for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/twins")
    ap.add_argument("--models", nargs="+", default=["ganscan-fusion-v10"])
    args = ap.parse_args()
    work = Path(args.work)
    src = work / "heldout" / "report" / "unchanged"
    if not src.is_dir():
        sys.exit(f"error: {src} not found (run examples/train_twins.py's heldout stage first)")
    out = work / "heldout" / "diag-enlarge"
    n = write_kinds(src, out)
    exe = shutil.which("ganscan") or str(Path(sys.executable).with_name("ganscan"))
    for i, k in enumerate(KINDS):
        report = out / f"{k}.jsonl"
        cmd = [exe, "scan", str(out / k), *[a for m in args.models for a in ("-m", m)], "-o", str(report)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        share = flagged(report)
        if i == 0:
            print(f"| flagged ({n} held-out crops) | " + " | ".join(share) + " |")
            print("|---|" + "---|" * len(share))
        print(f"| {k} | " + " | ".join(f"{v * 100:.1f} %" for v in share.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
