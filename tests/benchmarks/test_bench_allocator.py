"""CPU inference with glibc malloc vs tcmalloc (LD_PRELOAD), measured in one run. `make bench`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ganscan.cli import TCMALLOC_CANDIDATES

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = r"""
import sys, time, torch, timm
torch.manual_seed(0)
m = timm.create_model(sys.argv[1], num_classes=1).eval().to(memory_format=torch.channels_last)
x = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    m(x)
    best = 0.0
    for _ in range(4):
        t = time.perf_counter(); m(x); best = max(best, 32 / (time.perf_counter() - t))
print(best)
"""


@pytest.mark.parametrize("arch", ["efficientnet_b0", "resnet50"])
def test_allocator(arch):
    lib = next((p for p in TCMALLOC_CANDIDATES if os.path.exists(p)), None)
    assert lib, "libtcmalloc-minimal4 is not installed (make allocator)"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    rates = {}
    for name, extra in (("glibc", {}), ("tcmalloc", {"LD_PRELOAD": lib})):
        out = subprocess.run([sys.executable, "-c", SNIPPET, arch], capture_output=True, text=True,
                             env={**env, **extra}, check=True)
        rates[name] = float(out.stdout.strip())
    print(f"\n[allocator benchmark] {arch} 224px batch 32: glibc {rates['glibc']:.1f} img/s, "
          f"tcmalloc {rates['tcmalloc']:.1f} img/s, ratio {rates['tcmalloc'] / rates['glibc']:.2f}x")
