"""Runs on measured k-space: ``punmri data synth`` -> ``prepare`` -> ``punmri run`` with
``data.source: fastmri`` at native resolution, per-volume metrics, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from punmri.cli.main import main
from punmri.config import load_config
from punmri.errors import InputError
from punmri.pipeline import load_run_data

SYNTH = ["--volumes", "3", "--slices", "3", "--coils", "4", "--size", "32", "--width", "36"]
TINY_MEASURED = [
    "data.source=fastmri",
    "model.channels=4",
    "model.depth=3",
    "model.unrolls=2",
    "model.cg_iterations=3",
    "train.steps=4",
    "train.batch_size=2",
    "train.val_every=2",
    "train.warmup_steps=1",
    "evaluate.cs_iterations=5",
    "evaluate.cs_lamda=0.01",
    "evaluate.figure_slices=1",
    "evaluate.suites=[{name: id}, {name: acc8, physics: {acceleration: 8.0}}]",
]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("measured") / "synth"
    args = ["data", "synth", "--out", str(root), *SYNTH, "--source", "phantom", "--no-progress"]
    assert main(args) == 0
    assert main(["data", "prepare", str(root), "--no-progress"]) == 0
    return root


@pytest.fixture(scope="module")
def measured_run(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("measured") / "run"
    args = ["run", "--out", str(out), "--no-progress", *TINY_MEASURED, f"data.root={synth_root}"]
    assert main(args) == 0
    return out


def test_data_verbs_and_describe_default(synth_root, capsys):
    assert main(["data", "prepare", str(synth_root), "--no-progress"]) == 0  # resumes: all done
    assert "prepared 3 files (9 slices)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "synth"])  # --out is required
    assert main(["data", str(synth_root)]) == 0  # describe is the default verb
    out = capsys.readouterr().out
    assert out.count("3 slices, 4 coils, k-space 64x36, recon 32x32") == 3
    assert "prepared: 3 files, 9 slices" in out


def test_measured_run_scores_native_resolution_per_volume(measured_run):
    metrics = json.loads((measured_run / "metrics.json").read_text())
    for method in ("dense", "zero-filled", "cs-l1"):
        per_volume = metrics["volumes"][method]["suites"]
        assert set(per_volume) == {"id", "acc8"} and per_volume["id"]["n"] == 1
        assert metrics["methods"][method]["suites"]["id"]["n"] == 3  # slices of the test volume
    zero = metrics["methods"]["zero-filled"]["suites"]
    assert zero["acc8"]["psnr"] < zero["id"]["psnr"]  # 8x is harder than 4x
    suites = metrics["suites"]  # the run's own test split is the training distribution
    assert suites["id"]["description"] == "in distribution" and suites["id"]["in_distribution"]
    assert suites["acc8"]["description"] == "acceleration 4 -> 8"
    assert not suites["acc8"]["in_distribution"]
    rows = (measured_run / "eval" / "volumes.csv").read_text().splitlines()
    assert rows[0].startswith("method,suite,slice") and len(rows) == 1 + 3 * 2
    report = (measured_run / "report.md").read_text()
    assert "measured multi-coil k-space" in report and "Per volume" in report


def test_measured_rerun_is_a_no_op(measured_run, synth_root, monkeypatch):
    import punmri.pipeline

    before = {p: p.stat().st_mtime_ns for p in measured_run.rglob("*") if p.is_file()}
    monkeypatch.setattr(punmri.pipeline, "load_run_data", None)  # must not be needed
    args = ["run", "--out", str(measured_run), "--no-progress", *TINY_MEASURED]
    assert main([*args, f"data.root={synth_root}"]) == 0
    assert before == {p: p.stat().st_mtime_ns for p in measured_run.rglob("*") if p.is_file()}


def test_test_masks_are_fixed_per_volume_and_native(synth_root):
    cfg = load_config(None, [*TINY_MEASURED, f"data.root={synth_root}"])
    first, second = load_run_data(cfg), load_run_data(cfg)
    a, b = list(first.suites[0].samples), list(second.suites[0].samples)
    assert a[0].kspace.shape == (4, 32, 36)  # native: coils, recon height, k-space width
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.mask, y.mask) and np.array_equal(x.kspace, y.kspace)
    assert all(np.array_equal(s.mask, a[0].mask) for s in a)  # one mask for the whole volume
    train = first.train_source(0)
    assert not np.array_equal(train.sample(0, 0).mask, train.sample(0, 1).mask)


def test_measured_config_errors_name_the_field(synth_root, tmp_path):
    with pytest.raises(InputError, match="data.root"):
        load_config(None, ["data.source=fastmri"])
    cfg = load_config(None, [*TINY_MEASURED, f"data.root={tmp_path}"])
    with pytest.raises(InputError, match="missing train, val, test"):
        load_run_data(cfg)
    radial = load_config(
        None, [*TINY_MEASURED, f"data.root={synth_root}", "physics.mask_kind=radial"]
    )
    with pytest.raises(InputError, match="mask_kind"):
        load_run_data(radial)
    snr = [*TINY_MEASURED[:-1], "evaluate.suites=[{name: id}, {name: n, physics: {snr_db: 10}}]"]
    with pytest.raises(InputError, match="no effect on measured k-space"):
        load_run_data(load_config(None, [*snr, f"data.root={synth_root}"]))
