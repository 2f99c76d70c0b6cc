"""End-to-end runs of the shipped configs on Colin27 (``slow``: ``make test-all``) and on a CUDA
device (``gpu``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from punmri.cli.main import main
from punmri.data.volumes import COLIN27_PATH
from punmri.pruning import Masks

from .conftest import TINY

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
needs_colin27 = pytest.mark.skipif(
    not Path(COLIN27_PATH).exists(), reason="mricron-data not installed"
)
#: The demo settings, shortened: few steps, three suites, fewer slices.
SHORT = [
    "train.steps=20",
    "train.val_every=10",
    "data.max_train_slices=12",
    "data.max_val_slices=4",
    "data.max_test_slices=4",
    "evaluate.cs_iterations=10",
    "evaluate.cs_lamda=0.001",
    "evaluate.suites=[{name: id}, {name: acc8, physics: {acceleration: 8.0}}, "
    "{name: coronal, source: coronal}]",
]


def _files(directory: Path) -> dict[Path, tuple[bytes, int]]:
    return {
        p.relative_to(directory): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
@needs_colin27
def test_demo_config_runs_and_a_rerun_is_a_no_op(tmp_path):
    out = tmp_path / "demo"
    args = ["run", "--config", str(CONFIGS / "demo.yaml"), "--out", str(out), "--no-progress"]
    assert main([*args, *SHORT]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for method in ("dense", "zero-filled", "cs-l1"):
        assert set(metrics["methods"][method]["suites"]) == {"id", "acc8", "coronal"}
    # trained for a few steps, MoDL must already beat the zero-filled reconstruction
    suites = metrics["methods"]
    assert suites["dense"]["suites"]["id"]["psnr"] > suites["zero-filled"]["suites"]["id"]["psnr"]
    before = _files(out)
    assert main([*args, *SHORT]) == 0
    assert _files(out) == before


@pytest.mark.slow
@needs_colin27
def test_pun_demo_config_keeps_exact_masks(tmp_path):
    out = tmp_path / "demo-pun"
    config = str(CONFIGS / "demo-pun.yaml")
    short = [*SHORT, "prune.pun.steps=20", "prune.check_batches=1", "prune.check_shuffles=1"]
    assert main(["run", "--config", config, "--out", str(out), "--no-progress", *short]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"pun", "pun-shuffled"} <= set(metrics["summary"])
    pun = Masks.load(out / "models/pun/seed0/mask.pt")
    shuffled = Masks.load(out / "models/pun-shuffled/seed0/mask.pt")
    assert pun.kept == shuffled.kept == round(0.05 * pun.total)
    for name in pun:  # the layer-count control keeps PUN's count in every layer
        assert int(pun[name].sum()) == int(shuffled[name].sum()), name
    weights = torch.load(out / "models/pun/seed0/train/best.pt", weights_only=False)["model"]
    for name, mask in pun.items():
        assert (weights[name][~mask] == 0).all(), name


@pytest.mark.gpu
def test_tiny_run_trains_and_evaluates_on_cuda(tmp_path):
    out = tmp_path / "cuda"
    overrides = [*TINY, "methods=[dense,random]", "prune.density=0.2", "train.device=cuda"]
    assert main(["run", "--out", str(out), "--no-progress", *overrides]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["methods"]["random"]["suites"]["id"]["n"] == 2
    masks = Masks.load(out / "models/random/seed0/mask.pt")
    weights = torch.load(out / "models/random/seed0/train/best.pt", weights_only=False)["model"]
    for name, mask in masks.items():
        assert (weights[name][~mask] == 0).all(), name
