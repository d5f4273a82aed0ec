"""How the ``repeated_lines`` column reads on real photos, unchanged and up-scaled (the flag's margin).

    python examples/repeated_lines.py ../shared/data/train/real/* ../shared/data/camera-exif

Per folder: the largest share of repeated lines of its photos unchanged and after bicubic 1.5x (where the
flag must stay off), and the smallest after nearest-neighbour 1.5x and 2x (where it must come on), with the
share flagged at ``REPEAT_FLAG``. Photos over 1,200 px a side are reduced 4x (Lanczos) before up-scaling.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from ganscan.data.datasets import list_images
from ganscan.data.decode import DecodeError, load_image
from ganscan.data.provenance import REPEAT_FLAG, repeated_lines

# (kind, filter, factor, whether the flag must come on): the table gives the largest value where it must stay off
# and the smallest where it must come on
KINDS = (("unchanged", None, 1.0, False), ("bicubic 1.5x", Image.BICUBIC, 1.5, False),
         ("nearest 1.5x", Image.NEAREST, 1.5, True), ("nearest 2x", Image.NEAREST, 2.0, True))


def folder_line(folder: str) -> str:
    """One folder's line of the table; files that do not decode are left out and counted."""
    vals: dict[str, list[float]] = {k[0]: [] for k in KINDS}
    files, unreadable = list_images(folder), 0
    for path in files:
        try:
            img = load_image(path)[0].convert("RGB")
        except (DecodeError, OSError, ValueError):   # one unreadable file never stops the table; it is counted
            unreadable += 1
            continue
        small = img.resize((img.width // 4, img.height // 4), Image.LANCZOS) if min(img.size) > 1200 else img
        for kind, f, s, _ in KINDS:
            x = img if f is None else small.resize((round(small.width * s), round(small.height * s)), f)
            vals[kind].append(repeated_lines(x) or 0.0)
    cells = [f"{kind} {'min' if on else 'max'} {(min if on else max)(vals[kind]):.3f}, "
             f"flagged {sum(x >= REPEAT_FLAG for x in vals[kind])}" for kind, _, _, on in KINDS if vals[kind]]
    return (f"{folder}: {len(files) - unreadable} photos" + (f" ({unreadable} unreadable, left out)" if unreadable else "")
            + "".join("; " + c for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="folders of real photos (searched recursively)")
    args = ap.parse_args()
    for folder in args.folders:
        if not Path(folder).is_dir():
            sys.exit(f"error: not a folder: {folder}")
        print(folder_line(folder), flush=True)


if __name__ == "__main__":
    main()
