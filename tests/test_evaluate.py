"""ganscan evaluate: per-set rows, mean row, formats, plots, perturbations, and scores equal to scan's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from train_helpers import make_folder, train_tiny


@pytest.fixture(scope="module")
def model_and_sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("evaluate")
    data = make_folder(base / "train", 32, 24, seed=3, size=32)
    result = train_tiny(data, base / "run", epochs=4)
    sets = base / "sets"
    make_folder(sets / "alpha", 6, 5, seed=31, size=40)
    make_folder(sets / "beta", 4, 4, seed=32, size=48, real_name="real", fake_name="fake")
    make_folder(sets / "phones", 5, None, seed=33, size=40)  # real-only
    return result.best_path, sets


def _cli():
    from ganscan.cli import cli

    return cli


def _json(res) -> dict:
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout[res.stdout.index("{"):])


def test_rows_mean_and_real_only_set(model_and_sets):
    from ganscan.detectors import metrics as M

    model, sets = model_and_sets
    res = CliRunner().invoke(_cli(), ["evaluate", str(model), str(sets), "--format", "json", "--workers", "0"])
    out = _json(res)
    rows = {r["set"]: r for r in out["sets"]}
    assert list(rows) == ["alpha", "beta", "phones"]
    assert (rows["alpha"]["n_real"], rows["alpha"]["n_fake"]) == (6, 5)
    assert (rows["beta"]["n_real"], rows["beta"]["n_fake"]) == (4, 4)
    ph = rows["phones"]
    assert (ph["n_real"], ph["n_fake"], ph["ap"], ph["auc"], ph["fake_acc"]) == (5, 0, None, None, None)
    assert ph["accuracy"] == ph["real_acc"]
    # the mean row: each metric over the sets that define it
    assert out["mean"]["accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in rows.values()]))
    assert out["mean"]["ap"] == pytest.approx(np.mean([rows["alpha"]["ap"], rows["beta"]["ap"]]))
    assert out["mean"]["n_real"] == 15
    # metrics recomputed from scan's per-file scores
    scan = CliRunner().invoke(_cli(), ["scan", str(sets / "alpha"), "--model", str(model), "-f", "jsonl",
                                       "--workers", "0"])
    srows = [json.loads(line) for line in scan.stdout.splitlines() if line.startswith("{")]
    labels = [1 if "1_fake" in r["path"] else 0 for r in srows]
    scores = [r["score"] for r in srows]
    expect = M.summarize(labels, scores, out["threshold"])
    for k in ("accuracy", "real_acc", "fake_acc", "ap", "auc"):
        assert rows["alpha"][k] == pytest.approx(expect[k])
    assert "note: test set 'phones' has only real images" in res.stderr


def test_evaluate_scores_equal_scan_scores(model_and_sets, tmp_path):
    from ganscan.detectors.load import load_detector
    from ganscan.core.device import choose_precision
    from ganscan.detectors.evaluate import EvalSettings, score_files

    model, sets = model_and_sets
    files = sorted(str(p) for p in (sets / "alpha" / "1_fake").iterdir())[:3] + \
        sorted(str(p) for p in (sets / "alpha" / "0_real").iterdir())[:2]
    det = load_detector(str(model))
    got = score_files(det, files, choose_precision(__import__("torch").device("cpu"), "fp32"),
                      EvalSettings(batch_size=1, workers=0))
    res = CliRunner().invoke(_cli(), ["scan", *files, "--model", str(model), "-f", "jsonl", "--workers", "0",
                                      "--batch-size", "1", "--precision", "fp32"])
    scan = {r["path"]: r["score"] for r in map(json.loads, [x for x in res.stdout.splitlines() if x.startswith("{")])}
    assert len(scan) == 5
    for f in files:
        assert got[f][0] == scan[f]  # exactly equal, not approximately
    # and through the command, on a set holding exactly those files
    one = tmp_path / "one"
    for f in files:
        d = one / Path(f).parent.name
        d.mkdir(parents=True, exist_ok=True)
        (d / Path(f).name).write_bytes(Path(f).read_bytes())
    out = _json(CliRunner().invoke(_cli(), ["evaluate", str(model), str(one), "-f", "json", "--workers", "0",
                                            "--batch-size", "1", "--precision", "fp32"]))
    from ganscan.detectors import metrics as M

    labels = [1, 1, 1, 0, 0]
    scores = [scan[f] for f in files]
    assert out["sets"][0]["ap"] == pytest.approx(M.average_precision(labels, scores))
    assert out["sets"][0]["accuracy"] == pytest.approx(M.accuracies(labels, scores, out["threshold"])["accuracy"])


def test_files_formats_and_plots(model_and_sets, tmp_path):
    import pyarrow.parquet as pq

    model, sets = model_and_sets
    runner = CliRunner()
    base = ["evaluate", str(model), str(sets / "alpha"), str(sets / "phones"), "--workers", "0",
            "--threshold", "0.99"]
    res = runner.invoke(_cli(), [*base, "-o", str(tmp_path / "r.parquet"), "--plots", str(tmp_path / "plots"),
                                 "--misclassified", "4"])
    assert res.exit_code == 0, res.output
    table = pq.read_table(tmp_path / "r.parquet")
    rows = table.to_pylist()
    assert [r["set"] for r in rows] == ["alpha", "phones", "mean"]
    assert json.loads(table.schema.metadata[b"ganscan"])["threshold"] == 0.99
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert "alpha_roc.png" in names and "alpha_pr.png" in names and "phones_roc.png" not in names
    # at threshold 0.99 fakes are missed: a grid of the most confident mistakes
    assert "alpha_misclassified.png" in names
    res = runner.invoke(_cli(), [*base, "-o", str(tmp_path / "r.csv")])
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("perturbation,set,n_real,n_fake,accuracy,real_acc,fake_acc,ap,auc")
    assert len(lines) == 4
    res = runner.invoke(_cli(), [*base, "-o", str(tmp_path / "r.csv")])
    assert res.exit_code == 1 and "exists" in res.output
    res = runner.invoke(_cli(), [*base, "-f", "parquet"])
    assert res.exit_code == 1 and "cannot be written to stdout" in res.output
    res = runner.invoke(_cli(), [*base, "-f", "table"])
    assert res.exit_code == 0 and "alpha" in res.stdout and "n/a" in res.stdout and "mean" in res.stdout


def test_perturbations_report_drop(model_and_sets):
    model, sets = model_and_sets
    res = CliRunner().invoke(_cli(), ["evaluate", str(model), str(sets / "alpha"), "-f", "json", "--workers", "0",
                                      "--perturb", "jpeg:90,blur:2"])
    out = _json(res)
    assert [p["perturbation"] for p in out["perturbations"]] == ["jpeg:90", "blur:2"]
    clean = out["sets"][0]
    blur = out["perturbations"][1]["rows"][0]
    assert (blur["n_real"], blur["n_fake"]) == (clean["n_real"], clean["n_fake"])
    flat = [r for r in out["rows"] if r["perturbation"] == "blur:2" and r["set"] == "alpha"][0]
    assert flat["drop_accuracy"] == pytest.approx(clean["accuracy"] - blur["accuracy"])
    # a sigma-2 blur erases the checkerboard trace the test model relies on
    assert blur["fake_acc"] < clean["fake_acc"]
    res = CliRunner().invoke(_cli(), ["evaluate", str(model), str(sets), "--perturb", "sharpen:1"])
    assert res.exit_code == 1 and "unknown perturbation" in res.output


def test_bad_inputs(model_and_sets, tmp_path):
    from ganscan.core.checkpoint import save_checkpoint
    import torch

    model, sets = model_and_sets
    runner = CliRunner()
    (tmp_path / "nothing").mkdir()
    res = runner.invoke(_cli(), ["evaluate", str(model), str(tmp_path / "nothing")])
    assert res.exit_code == 1 and "no test sets found" in res.output
    save_checkpoint(tmp_path / "other.safetensors", {"fc.weight": torch.zeros(2, 2)}, {"kind": "detector", "arch": "test-cnn"})
    res = runner.invoke(_cli(), ["evaluate", str(tmp_path / "other.safetensors"), str(sets)])
    assert res.exit_code == 1 and "do not fit architecture test-cnn" in res.output
