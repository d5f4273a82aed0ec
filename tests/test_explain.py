"""ganscan explain: patch heatmap, spectrum and JSON summary."""

import json

import numpy as np
from PIL import Image

from conftest import EDGE, run_ok
from ganscan.detectors.explain import patch_grid
from ganscan.detectors.spectrum import azimuthal_profile


def test_explain_writes_pngs_and_summary(runner, cli, tmp_path):
    rng = np.random.default_rng(0)
    img = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "out"
    res = run_ok(runner, cli, ["explain", str(img), str(EDGE / "broken.png"), "-o", str(out), "--model", "placeholder"])
    assert "explained 1 of 2" in res.stderr and "broken.png" in res.stderr
    summary = json.loads((out / "photo.json").read_text())
    for kind in ("heatmap", "spectrum", "profile"):
        assert Image.open(summary["files"][kind]).size[0] > 100
    assert summary["patches"] == (300 // 64) * (420 // 64)
    assert 0 <= summary["patch_score_min"] <= summary["patch_score_max"] <= 1
    assert len(summary["spectrum_profile"]) == 64 and summary["placeholder"] is True
    run = json.loads((out / "summary.json").read_text())
    assert [r.get("error") for r in run] == [None, "corrupt or unsupported PNG data: cannot identify image"]


def test_patch_grid_bounds_work_on_big_images():
    coords, stride = patch_grid(3000, 4000, 224, 256)
    assert len(coords) <= 256 and stride >= 224
    assert max(y for y, _ in coords) + 224 <= 3000 and max(x for _, x in coords) + 224 <= 4000
    assert patch_grid(100, 100, 224, 256) == ([(0, 0)], 224)


def test_spectrum_profile_sees_upsampling_peaks():
    rng = np.random.default_rng(1)
    noise = rng.normal(128, 40, (256, 256, 3)).clip(0, 255).astype(np.uint8)
    smooth = Image.fromarray(noise).resize((64, 64), Image.BILINEAR)
    upsampled = Image.fromarray(np.asarray(smooth).repeat(4, 0).repeat(4, 1))  # nearest-neighbour x4
    p_noise = azimuthal_profile(Image.fromarray(noise))
    p_up = azimuthal_profile(upsampled)
    assert p_noise[0] == 1.0 and p_up[0] == 1.0
    assert p_up[-16:].mean() < p_noise[-16:].mean()  # up-sampling removes the top of the spectrum
