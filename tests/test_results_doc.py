"""The generalization-results document (benchmarks/results.py) composed from tiny runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from punmri.config import load_config
from punmri.pipeline import run

from .conftest import TINY

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _results_module():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("results_bench", BENCH / "results.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


SUITES = "evaluate.suites=[{name: id}, {name: acc8, physics: {acceleration: 8}}]"


@pytest.fixture(scope="module")
def tiny_regimes(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    extra = [
        "methods=[dense,pun,pun-shuffled,random]",
        "prune.density=0.3",
        "prune.pun.steps=4",
        "prune.check_batches=1",
        "prune.check_shuffles=1",
        "seeds=[0,1]",
        "evaluate.baselines=[zero-filled]",
        SUITES,
    ]
    runs, results = {}, {}
    for regime, more in (("fixed-small", ["prune.densities=[0.5]"]), ("fresh-small", [])):
        cfg = load_config(None, [*TINY, *extra, *more, f"name={regime}"])
        runs[regime] = root / regime
        results[regime] = run(cfg, runs[regime], progress=False)
    return runs, results


def test_results_doc_states_answer_controls_and_density(tiny_regimes, tmp_path):
    runs, results = tiny_regimes
    module = _results_module()
    notes = tmp_path / "notes.md"
    notes.write_text("## Discussion\n\nHand-written text.")
    doc = tmp_path / "docs" / "RESULTS.md"
    module.write_doc(results, runs, "python benchmarks/results.py", doc, notes)
    text = doc.read_text()
    pun = results["fixed-small"]["summary"]["pun"]["ood_delta_psnr"]
    assert f"{pun['mean']:+.2f} [{pun['ci_low']:+.2f}, {pun['ci_high']:+.2f}]" in text
    headings = ("## Answer", "## Discussion", "## PUN against its controls", "## PUN at other")
    for heading in (*headings, "## Only the shifts harder than `id`", "## Seed by seed"):
        assert heading in text, heading
    assert "| fixed-small | 0.5 |" in text and "| fresh-small | 0.5 |" not in text
    assert "against `pun-shuffled`" in text
    assert "| fixed-small | 1 |" in text  # one row per seed
    assert (doc.parent / "figures" / "results" / "regimes.png").is_file()


def test_pun_minus_control_is_antisymmetric(tiny_regimes):
    runs, results = tiny_regimes
    module = _results_module()
    seed = results["fixed-small"]["config"]["evaluate"]["test_seed"]
    records = module._slices(runs["fixed-small"])
    ab = module._pairwise(records, "pun", "random", seed)
    ba = module._pairwise(records, "random", "pun", seed)
    assert ab["id_delta_psnr"]["mean"] == pytest.approx(-ba["id_delta_psnr"]["mean"])
    assert module._pairwise(records, "pun", "snip", seed) is None


def test_harder_suites_are_those_below_id_zero_filled():
    module = _results_module()
    metrics = {
        "suites": {
            "id": {"zero-filled_psnr": 20.0},
            "acc8": {"zero-filled_psnr": 18.0},
            "acc2": {"zero-filled_psnr": 24.0},
        }
    }
    assert module.harder_suites(metrics) == {"acc8"}


def test_max_val_drop():
    module = _results_module()
    vals = [20.0, 22.0, 18.5, 21.0, 20.0]
    history = [{"step": 10, "loss": 1.0}] + [{"step": i, "val_psnr": v} for i, v in enumerate(vals)]
    assert module.max_val_drop(history) == pytest.approx(3.5)
    assert module.max_val_drop([{"step": 1, "val_psnr": 20.0}, {"step": 2, "val_psnr": 21.0}]) == 0


def test_batchnorm_section_pairs_the_two_runs(tiny_regimes, tmp_path):
    runs, results = tiny_regimes
    module = _results_module()
    regime = "fresh-small"
    extra = ["prune.density=0.3", "prune.pun.steps=4", "seeds=[0,1]", SUITES]
    cfg = load_config(None, [*TINY, *module.NO_BATCHNORM, *extra])
    nobn = tmp_path / f"{regime}-nobn"
    run(cfg, nobn, progress=False)
    text = "\n".join(module.batchnorm_section(results, runs, {regime: nobn}))
    assert "| fresh-small | 0 |" in text and "| fresh-small | 1 |" in text
    # dense-nobn - dense on id: the mean over slices and seeds of the per-slice differences
    bn = {(r.method, r.slice_name): r.psnr for r in module._slices(runs[regime]) if r.suite == "id"}
    diffs = [
        r.psnr - bn[(r.method, r.slice_name)]
        for r in module._slices(nobn)
        if r.suite == "id" and r.method.startswith("dense#")
    ]
    row = [line for line in text.splitlines() if line.startswith(f"| {regime} |")][-1]
    doc = tmp_path / "RESULTS.md"
    module.write_doc(results, runs, "python benchmarks/results.py", doc, ablation={regime: nobn})
    assert "- **fresh-small without BatchNorm**: PUN is" in doc.read_text()
    assert row.split("|")[2].strip().startswith(f"{sum(diffs) / len(diffs):+.2f} [")
