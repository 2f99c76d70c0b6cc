"""The generalization document (docs/RESULTS.md): statistics against hand-computed cases, the
document from synthetic regimes whose numbers are known exactly, and one build from real runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from PIL import Image

from punmri.config import load_config
from punmri.errors import InputError
from punmri.evaluate.statistics import split_seed
from punmri.evaluate.tables import SliceRecord, aggregate, write_slice_csv
from punmri.pipeline import run
from punmri.report.regime_tables import (
    batchnorm_tables,
    control_table,
    density_table,
    hard_shift_table,
    mask_table,
    overfitting_lines,
    quality_table,
    regime_map,
    regime_settings,
    seed_table,
    suite_table,
    verdict_table,
)
from punmri.report.regimes import (
    NO_BATCHNORM,
    RegimeRun,
    final_drop,
    harder_suites,
    max_val_drop,
    overfitting,
    paired_summary,
    psnr_by_network,
    pun_contrasts,
    significance,
    without_batchnorm,
)
from punmri.report.results_doc import results_document, write_results_doc

from .conftest import TINY


def _rec(method: str, suite: str, slice_name: str, psnr: float) -> SliceRecord:
    return SliceRecord(method, suite, slice_name, psnr, 0.8, 0.01)


# -- statistics against hand-computed cases -------------------------------------------------------

#: pun - dense per (suite, slice): one value per seed (seed 0, seed 1).
HAND = {
    ("id", "a"): (1.0, 3.0),
    ("id", "b"): (2.0, 2.0),
    ("acc8", "a"): (0.0, 2.0),
    ("acc8", "b"): (4.0, 4.0),
    ("acc2", "a"): (-1.0, -1.0),
    ("acc2", "b"): (-1.0, -1.0),
    ("acc2", "c"): (1.0, 1.0),
    ("acc2", "d"): (1.0, 1.0),
}


def _hand_records() -> list[SliceRecord]:
    records = []
    for (suite, name), diffs in HAND.items():
        for seed, diff in enumerate(diffs):
            base = 20.0 + len(name) + seed
            records.append(_rec(f"dense#s{seed}", suite, name, base))
            records.append(_rec(f"pun#s{seed}", suite, name, base + diff))
    return records


def test_paired_summary_matches_hand_computed_means():
    line = paired_summary(_hand_records(), "pun", "dense", seed=0)
    assert line["id_delta_psnr"]["mean"] == pytest.approx(2.0)  # (1 + 3 + 2 + 2) / 4
    # OOD: each shift weighs the same: (acc8 2.5 + acc2 0.0) / 2, not the pooled 10 / 12
    assert line["ood_delta_psnr"]["mean"] == pytest.approx(1.25)
    assert sorted(line["ood_suites"]) == ["acc2", "acc8"]
    assert line["id_delta_ssim"]["mean"] == 0.0
    only = paired_summary(_hand_records(), "pun", "dense", seed=0, suites={"acc8"})
    assert only["ood_suites"] == ["acc8"] and only["ood_delta_psnr"]["mean"] == pytest.approx(2.5)
    back = paired_summary(_hand_records(), "dense", "pun", seed=0)
    assert back["ood_delta_psnr"]["mean"] == pytest.approx(-1.25)
    assert back["id_delta_psnr"]["ci_low"] == pytest.approx(-line["id_delta_psnr"]["ci_high"])
    assert paired_summary(_hand_records(), "pun", "snip", seed=0) is None


def test_paired_summary_of_a_constant_difference_has_a_zero_width_interval():
    records = [r for r in _hand_records() if r.method.startswith("dense")]
    records += [
        dataclasses.replace(r, method=r.method.replace("dense", "pun"), psnr=r.psnr + 1.5)
        for r in records
    ]
    line = paired_summary(records, "pun", "dense", seed=3)
    for key in ("id_delta_psnr", "ood_delta_psnr"):
        assert line[key] == {"mean": 1.5, "ci_low": 1.5, "ci_high": 1.5}


def test_psnr_by_network_splits_id_and_shifted_slices_per_seed():
    records = [
        _rec("dense#s0", "id", "a", 30.0),
        _rec("dense#s0", "acc8", "a", 26.0),
        _rec("dense#s0", "acc2", "a", 27.0),
        _rec("dense#s1", "id", "a", 31.0),
        _rec("zero-filled", "id", "a", 20.0),
    ]
    assert psnr_by_network(records) == {
        ("dense", 0): {"id": [30.0], "ood": [26.0, 27.0]},
        ("dense", 1): {"id": [31.0], "ood": []},
        ("zero-filled", None): {"id": [20.0], "ood": []},
    }


def test_harder_suites_are_those_below_id_zero_filled():
    metrics = {
        "suites": {
            "id": {"zero-filled_psnr": 20.0},
            "acc8": {"zero-filled_psnr": 18.0},
            "acc2": {"zero-filled_psnr": 24.0},
            "snr20": {"dense_psnr": 10.0},  # no zero-filled PSNR: not known to be harder
        }
    }
    assert harder_suites(metrics) == {"acc8"}
    assert harder_suites({"suites": {"id": {"dense_psnr": 30.0}}}) == set()


def test_max_val_drop():
    vals = [20.0, 22.0, 18.5, 21.0, 20.0]
    history = [{"step": 10, "loss": 1.0}] + [{"step": i, "val_psnr": v} for i, v in enumerate(vals)]
    assert max_val_drop(history) == pytest.approx(3.5)
    assert max_val_drop([{"step": 1, "val_psnr": 20.0}, {"step": 2, "val_psnr": 21.0}]) == 0
    assert max_val_drop([]) == 0


def test_significance_reads_the_interval_not_the_mean():
    assert significance({"mean": 0.1, "ci_low": 0.05, "ci_high": 0.2}) == 1
    assert significance({"mean": -0.1, "ci_low": -0.2, "ci_high": -0.01}) == -1
    assert significance({"mean": 2.0, "ci_low": -0.1, "ci_high": 4.0}) == 0
    assert significance({"mean": float("nan"), "ci_low": float("nan"), "ci_high": 1.0}) == 0
    assert significance(None) == 0


def test_without_batchnorm_renames_the_ablation_networks_and_keeps_seeds():
    records = [_rec("dense#s1", "id", "a", 1.0), _rec("zero-filled", "id", "a", 2.0)]
    records += [_rec("pun", "id", "a", 3.0), _rec("snip#s0", "id", "a", 4.0)]
    assert [r.method for r in without_batchnorm(records)] == ["dense-nobn#s1", "pun-nobn"]


# -- the document from synthetic regimes ----------------------------------------------------------

#: suite -> (description, dense PSNR of its first slice, zero-filled PSNR)
SUITES = {
    "id": ("in distribution", 30.0, 25.0),
    "acc8": ("8x", 26.0, 20.0),
    "acc2": ("2x", 32.0, 28.0),
}
SEEDS = (0, 1)
CONFIG = {
    "data": {
        "source": "phantom",
        "resolution_mm": 2.0,
        "view": "axial",
        "image_size": [24, 20],
        "max_train_slices": 4,
    },
    "physics": {
        "coils": 2,
        "mask_kind": "random",
        "acceleration": 4.0,
        "snr_db": 40.0,
        "fresh": False,
    },
    "model": {
        "denoiser": "resnet",
        "channels": 4,
        "depth": 3,
        "unrolls": 2,
        "cg_iterations": 3,
        "norm": "none",
    },
    "train": {
        "lr": 0.001,
        "batch_size": 2,
        "val_every": 3,
        "patience": 0,
        "steps": 6,
        "augment": False,
    },
    "seeds": [0, 1],
    "methods": ["dense", "dense-narrow", "pun", "pun-shuffled", "random"],
    "method_seeds": {},
    "prune": {"density": 0.3, "densities": [0.5]},
    "evaluate": {"test_seed": 0, "checkpoints": ["best", "final"]},
}
#: The fresh-small regime's config: fresh physics, all training slices, patience 2, best only.
FRESH = {
    **CONFIG,
    "data": {**CONFIG["data"], "max_train_slices": 0},
    "physics": {**CONFIG["physics"], "fresh": True},
    "train": {**CONFIG["train"], "patience": 2, "augment": True},
    "methods": ["dense", "pun", "pun-shuffled", "random"],
    "evaluate": {"test_seed": 0, "checkpoints": ["best"]},
}


def _dense(suite: str, i: int, seed: int) -> float:
    """Dense PSNR of slice ``i`` of ``suite`` for ``seed`` (exact binary fractions)."""
    return SUITES[suite][1] + i + 0.5 * seed


def _records(offsets: dict) -> list[SliceRecord]:
    """Four slices per suite: zero-filled (one network), and per seed dense plus each method of
    ``offsets`` (name -> f(suite, i) = its PSNR minus dense's)."""
    records = []
    for suite, (_, _, zf) in SUITES.items():
        for i in range(4):
            records.append(_rec("zero-filled", suite, f"s{i}", zf))
            for seed in SEEDS:
                dense = _dense(suite, i, seed)
                records.append(_rec(f"dense#s{seed}", suite, f"s{i}", dense))
                for name, offset in offsets.items():
                    psnr = dense + offset(suite, i)
                    records.append(_rec(f"{name}#s{seed}", suite, f"s{i}", psnr))
    return records


def _metrics(
    records: list[SliceRecord], densities: dict[str, float], config: dict = CONFIG
) -> dict:
    """The metrics.json entries the document reads, from ``records``."""
    folded = [dataclasses.replace(r, method=split_seed(r.method)[0]) for r in records]
    metrics = aggregate(folded)
    methods = metrics["methods"]
    metrics["summary"] = {}
    for name in methods:
        if name == "dense":
            continue
        line = paired_summary(records, name, "dense", seed=0)
        metrics["summary"][name] = line
        for suite in SUITES:
            per_suite = paired_summary(records, name, "dense", seed=0, suites={suite})
            key = "id_delta_psnr" if suite == "id" else "ood_delta_psnr"
            methods[name]["suites"][suite]["delta_psnr"] = per_suite[key]
    for name, density in densities.items():
        methods[name]["density"] = density
    dense = methods["dense"]["suites"]
    metrics["suites"] = {
        s: {"description": d, "zero-filled_psnr": zf, "dense_psnr": dense[s]["psnr"]}
        for s, (d, _, zf) in SUITES.items()
    }
    metrics["config"] = config
    return metrics


def _alternating(suite: str, i: int) -> float:
    return 0.5 if i % 2 == 0 else -0.5


def _write_history(run_dir: Path, method: str, seed: int, vals: list[float]) -> None:
    done = run_dir / "models" / method / f"seed{seed}" / "train" / "done.json"
    done.parent.mkdir(parents=True)
    history = [{"step": 3 * (k + 1), "val_psnr": v} for k, v in enumerate(vals)]
    done.write_text(json.dumps({"history": history}))


@pytest.fixture
def synthetic(tmp_path):
    """Two regimes and a run without BatchNorm with exactly known differences:

    fixed-small: pun = dense + 1.5 everywhere; dense-narrow = dense - 1 (id), - 0.5 (shifts);
    pun-shuffled = dense + 1 (id), + 2 (shifts); random = dense + 1.5 +- 0.5 (alternating
    slices); pun@0.5 = dense + 1; final steps: dense~final = dense - 1, pun~final = pun.
    fresh-small: pun = dense +- 0.5 (alternating); pun-shuffled, random as above.
    fixed-small-nobn: dense - 1, pun and random dense + 0.5.
    Validation histories: fixed-small dense seed 0 ends 1 dB below its best (22 -> 21), seed 1
    at its best; fresh-small dense ends at its best.
    """
    shuffled = {"pun-shuffled": lambda s, i: 1.0 if s == "id" else 2.0}
    random = {"random": lambda s, i: 1.5 + _alternating(s, i)}
    narrow = {"dense-narrow": lambda s, i: -1.0 if s == "id" else -0.5}
    finals = {"pun~final": lambda s, i: 1.5, "dense~final": lambda s, i: -1.0}
    fixed = _records(
        {"pun": lambda s, i: 1.5, **narrow, **shuffled, **random, "pun@0.5": lambda s, i: 1.0}
    )
    fixed += [r for r in _records(finals) if "~final" in r.method]
    fresh = _records({"pun": _alternating, **shuffled, **random})
    nobn = _records({"pun": lambda s, i: 0.5, "random": lambda s, i: 0.5})
    nobn = [
        dataclasses.replace(r, psnr=r.psnr - 1.0) if r.method.startswith("dense") else r
        for r in nobn
    ]
    densities = {"pun": 0.3, "pun@0.5": 0.5}
    regimes = {
        "fixed-small": RegimeRun(tmp_path / "runs/fixed-small", _metrics(fixed, densities), fixed),
        "fresh-small": RegimeRun(tmp_path / "runs/fresh-small", _metrics(fresh, {}, FRESH), fresh),
    }
    ablation = {"fixed-small": RegimeRun(tmp_path / "runs/nobn", _metrics(nobn, {}), nobn)}
    main, off = regimes["fixed-small"].run_dir, ablation["fixed-small"].run_dir
    for seed in SEEDS:
        _write_history(main, "dense", seed, [20.0, 22.0, 18.5, 21.0] if seed == 0 else [20.0])
        _write_history(main, "pun", seed, [20.0, 21.0])
        _write_history(regimes["fresh-small"].run_dir, "dense", seed, [20.0, 20.5])
        for method in ("dense", "pun", "random"):
            _write_history(off, method, seed, [20.0, 19.0] if method == "random" else [20.0])
    (main / "figures").mkdir()
    Image.new("RGB", (8, 8)).save(main / "figures" / "training.png")
    return regimes, ablation


EXACT = "+1.50 [+1.50, +1.50]"


def _x(value: str, word: str = "") -> str:
    """A cell of an exact difference ``value`` at every slice and seed: mean, interval, then
    ``word`` (a verdict) and the seed range."""
    return (
        f"{value} [{value}, {value}]" + (f" {word}" if word else "") + f" (seeds {value}..{value})"
    )


def _row(lines: list[str], start: str) -> str:
    (row,) = [line for line in lines if line.startswith(start)]
    return row


def test_tables_show_the_known_differences(synthetic):
    regimes, ablation = synthetic
    seeds = seed_table(regimes)
    assert seeds[0] == "| regime | seed | dense | pun | dense-narrow | pun-shuffled | random |"
    assert _row(seeds, "| fixed-small | 0 |") == (
        "| fixed-small | 0 | 31.50 / 30.50 | 33.00 / 32.00 | 30.50 / 30.00 | 32.50 / 32.50 | "
        "33.00 / 32.00 |"
    )
    assert _row(seeds, "| fixed-small | 1 |").startswith(
        "| fixed-small | 1 | 32.00 / 31.00 | 33.50 / 32.50 |"
    )
    assert _row(seeds, "| fresh-small | 0 |").startswith(  # a method one regime lacks
        "| fresh-small | 0 | 31.50 / 30.50 | 31.50 / 30.50 | - |"
    )
    hard = _row(hard_shift_table(regimes), "| fixed-small |")
    assert hard.startswith(
        f"| fixed-small | acc8 | {EXACT} | -0.50 [-0.50, -0.50] | +2.00 [+2.00, +2.00] | +1.50 ["
    )
    control = _row(control_table(pun_contrasts(regimes)), "| fixed-small |")
    assert control.startswith(
        f"| fixed-small | {_x('+2.50')} / {_x('+2.00')} | {_x('+0.50')} / {_x('-0.50')} | +0.00"
    )
    assert _row(control_table(pun_contrasts(regimes)), "| fresh-small |").startswith(
        "| fresh-small | - | "
    )
    quality = _row(quality_table(regimes), "| fixed-small |")
    assert quality == "| fixed-small | 25.00 | - | 31.75 | 24.00 | - | 30.75 |"
    density = density_table(regimes)
    assert density[2:] == [
        f"| fixed-small | 0.3 | 33.25 | {EXACT} | {EXACT} |",
        "| fixed-small | 0.5 | 32.75 | +1.00 [+1.00, +1.00] | +1.00 [+1.00, +1.00] |",
    ]
    assert density_table({"fresh-small": regimes["fresh-small"]}) == []
    methods = [row.split(" | ")[0].strip("| ") for row in regime_map(regimes)[2:]]
    assert methods == [
        "dense-narrow",
        "pun",
        "pun-shuffled",
        "pun@0.5",
        "random",
        "dense~final",  # the final-step checkpoints after the best-validation ones
        "pun~final",
        "zero-filled",
    ]
    assert _row(regime_map(regimes), "| dense~final |") == (
        f"| dense~final | {_x('-1.00')} / {_x('-1.00')} | - |"
    )
    suites = suite_table(regimes["fixed-small"])
    assert suites[0] == (
        "| suite | shift | zero-filled | dense | pun | dense-narrow | pun-shuffled | random | "
        "pun@0.5 |"
    )  # no final-step checkpoints
    assert _row(suites, "| acc8 |").startswith(
        f"| acc8 | 8x | 20.00 | 27.75 | {EXACT} | -0.50 [-0.50, -0.50] | +2.00 [+2.00, +2.00] |"
    )


def test_verdict_table_states_pun_against_the_three_references(synthetic):
    regimes, _ = synthetic
    table = verdict_table(regimes)
    assert table[0] == (
        "| regime | pun - dense: ID | pun - dense: OOD | pun - dense-narrow: ID | "
        "pun - dense-narrow: OOD | pun - pun-shuffled: ID | pun - pun-shuffled: OOD | "
        "PUN beats all three, ID and OOD? |"
    )
    assert _row(table, "| fixed-small |") == (
        f"| fixed-small | {_x('+1.50', 'better†')} | {_x('+1.50', 'better†')} | "
        f"{_x('+2.50', 'better†')} | {_x('+2.00', 'better†')} | {_x('+0.50', 'better†')} | "
        f"{_x('-0.50', 'worse†')} | no: better in 5 of 6, worse in 1 |"
    )
    fresh = _row(table, "| fresh-small |")
    assert fresh.startswith("| fresh-small | +0.00 [-0.50, +0.50] level (seeds +0.00..+0.00) | ")
    assert fresh.endswith(" | - | - | -1.00 [-1.50, -0.50] worse† (seeds -1.00..-1.00) | "
                          "-2.00 [-2.50, -1.50] worse† (seeds -2.00..-2.00) "
                          "| no: better in 0 of 4, worse in 2 (no dense-narrow) |")  # fmt: skip
    assert table[-1].startswith(
        "† also at the Bonferroni level: the interval at 99.50% (95% shared "
    )
    assert "table's 10 comparisons" in table[-1]  # 6 + 4: fresh-small has no dense-narrow
    everywhere = {"fixed-small": regimes["fixed-small"]}
    records = [r for r in everywhere["fixed-small"].records if "shuffled" not in r.method]
    only = {"x": dataclasses.replace(everywhere["fixed-small"], records=records)}
    assert _row(verdict_table(only), "| x |").endswith(
        "| yes, where tested: better in 4 of 4, worse in 0 (no pun-shuffled) |"
    )


def test_verdict_marks_only_the_calls_that_survive_bonferroni(tmp_path):
    # ID: pun - dense per slice (-0.5, 1, 2, 2): its 95% interval excludes 0, the 97.5% one
    # (Bonferroni over the 2 comparisons, ID and OOD against dense) does not; OOD: exactly +1
    records = _records({"pun": lambda s, i: (-0.5, 1.0, 2.0, 2.0)[i] if s == "id" else 1.0})
    config = {**CONFIG, "methods": ["dense", "pun"], "prune": {"density": 0.3}}
    run = RegimeRun(tmp_path / "x", _metrics(records, {"pun": 0.3}, config), records)
    table = verdict_table({"x": run})
    assert _row(table, "| x |").startswith(
        f"| x | +1.12 [+0.12, +2.00] better (seeds +1.12..+1.12) | {_x('+1.00', 'better†')} | "
        "- | - | - | - |"
    )
    assert "interval at 97.50% (95% shared by the table's 2 comparisons" in table[-1]
    assert "about 0.1 could exclude 0 by chance" in table[-1]


def _write_mask_json(run_dir: Path, method: str, seed: int, kept: list[float], check=None):
    layers = [{"name": f"l{i}.weight", "density": d} for i, d in enumerate(kept)]
    path = run_dir / "models" / method / f"seed{seed}" / "mask.json"
    path.parent.mkdir(parents=True, exist_ok=True)  # the fixture wrote histories there
    meta = {"check": check} if check else {}
    path.write_text(json.dumps({"layers": layers, "metadata": meta}))


def test_mask_table_reads_each_seeds_mask_and_its_untrained_loss_check(synthetic):
    regimes, _ = synthetic
    assert mask_table(regimes) == []  # no run saved a mask
    run = regimes["fixed-small"].run_dir
    for seed, (first, loss) in enumerate([(0.1, 0.5), (0.3, 0.7)]):
        check = {"loss_dense": 1.0, "loss_mask": loss, "loss_shuffled_mean": loss + 0.25}
        _write_mask_json(run, "pun", seed, [first, 0.02, 0.05], check)
    _write_mask_json(run, "snip", 0, [0.01 * i for i in range(1, 11)])  # deep: its extremes
    table = mask_table(regimes)
    assert table[2] == "| fixed-small | `pun` | 2 | 20.0 / 2.0 / 5.0 | 1.0000 / 0.6000 / 0.8500 |"
    assert table[3] == (
        "| fixed-small | `snip` | 1 | 10 layers: 1.0 (`l0.weight`) to 10.0 (`l9.weight`) | - |"
    )
    assert len(table) == 4
    text = results_document(regimes, "cmd")
    assert "## What the masks keep" in text and table[2] in text.splitlines()


def test_overfitting_lines_read_the_histories_and_the_final_checkpoints(synthetic):
    regimes, _ = synthetic
    fixed, fresh = overfitting_lines(regimes)
    assert fixed == (
        "- **fixed-small**: dense over-fits: its validation PSNR at the final step is 0.50 dB "
        "below its best (mean over 2 seeds; 1 of 2 more than 0.2 dB below; largest fall between "
        "consecutive checks 3.50 dB). On the test slices `dense~final` - `dense` is "
        "-1.00 [-1.00, -1.00] dB ID and -1.00 [-1.00, -1.00] dB OOD. At the final-step "
        "checkpoints `pun~final` - `dense~final` is +2.50 [+2.50, +2.50] dB ID (better) and "
        "+2.50 [+2.50, +2.50] dB OOD (better)."
    )
    assert fresh == (
        "- **fresh-small**: dense does not over-fit: its validation PSNR at the final step is "
        "0.00 dB below its best (mean over 2 seeds; 0 of 2 more than 0.2 dB below; largest fall "
        "between consecutive checks 0.00 dB). Final-step checkpoints were not tested "
        "(`evaluate.checkpoints`)."
    )
    fit = overfitting(regimes["fixed-small"])
    assert fit.drops == (1.0, 0.0) and fit.falls == (3.5, 0.0) and fit.overfits
    assert overfitting(regimes["fixed-small"], "snip") is None
    assert final_drop([{"val_psnr": 20.0}, {"val_psnr": 19.25}, {"loss": 1.0}]) == 0.75


def test_regime_settings_show_what_each_regime_sets(synthetic):
    regimes, _ = synthetic
    table = regime_settings(regimes)
    assert _row(table, "| fixed-small |") == (
        "| fixed-small | fixed | 40 | 4 | no | 6 | cosine | none | resnet 4x3, norm none | "
        "best, final | 2 seeds: dense, dense-narrow, pun, pun-shuffled, random |"
    )
    assert _row(table, "| fresh-small |").startswith(
        "| fresh-small | fresh | 40 | all | yes | 6 | cosine | patience 2 |"
    )
    config = {**CONFIG, "method_seeds": {"dense": [0, 1, 2], "pun": [0, 1, 2]}}
    run = dataclasses.replace(regimes["fixed-small"], metrics={"config": config})
    assert _row(regime_settings({"r": run}), "| r |").endswith(
        "| 3 seeds: dense, pun; 2 seeds: dense-narrow, pun-shuffled, random |"
    )
    assert run.seeds("pun") == (0, 1, 2) and run.seeds("random") == (0, 1)


def test_batchnorm_tables_pair_the_two_runs(synthetic):
    regimes, ablation = synthetic
    per_seed, differences = batchnorm_tables(regimes, ablation)
    assert per_seed[0] == (
        "| regime | seed | dense | dense, no BN | pun | pun, no BN | random, no BN |"
    )
    assert _row(per_seed, "| fixed-small | 0 |") == (
        "| fixed-small | 0 | 31.50 / 30.50 (3.5) | 30.50 / 29.50 (0.0) | 33.00 / 32.00 (0.0) | "
        "32.00 / 31.00 (0.0) | 32.00 / 31.00 (1.0) |"
    )
    assert _row(differences, "| fixed-small |") == (
        f"| fixed-small | {_x('-1.00')} / {_x('-1.00')} | {_x('+1.50')} / {_x('+1.50')} | "
        f"{_x('+1.50')} / {_x('+1.50')} | {_x('+0.00')} / {_x('+0.00')} |"
    )


def test_document_states_the_answer_and_orders_its_sections(synthetic, tmp_path):
    regimes, ablation = synthetic
    text = results_document(
        regimes, "python benchmarks/results.py --x", "## Discussion\n\nBy hand.\n\n", ablation,
        root=tmp_path,
    )  # fmt: skip
    lines = text.splitlines()
    assert lines[2] == (
        "Generated by `python benchmarks/results.py --x` from the run directories "
        "`runs/fixed-small`, `runs/fresh-small`."
    )
    assert "pruning at density 0.3 (PUN also at [0.5] in fixed-small)." in text
    # fresh-small tests only its best checkpoints: the setting names the regime that has both
    assert "checkpoint (`NAME`), and in fixed-small also at its final step (`NAME~final`)" in text
    assert "SNR per regime below" in text
    assert lines[lines.index("## Verdict") + 4] == verdict_table(regimes)[0]
    assert overfitting_lines(regimes)[0] in lines
    assert regime_settings(regimes)[2] in lines
    assert "Per-network costs are in each regime's cost table below." in lines
    zero = "+0.00 [+0.00, +0.00]"
    assert (
        f"- **fixed-small without BatchNorm**: PUN is better than dense in distribution ({EXACT} "
        f"dB) and better than dense out of distribution ({EXACT} dB); against `random` it is "
        f"{zero} dB ID and {zero} dB OOD."
    ) in lines
    order = [
        "## Verdict",
        "## Discussion",
        "## Setting",
        "## Regime map: difference to dense",
        "## Only the shifts harder than `id`",
        "## Seed by seed",
        "## PUN against its controls",
        "## How good the reference is",
        "## PUN at other densities",
        "## Dense training without batch normalisation",
        "## Regime `fixed-small`",
        "## Regime `fresh-small`",
    ]
    assert [line for line in lines if line.startswith("## ")] == order
    assert "run directories `runs/nobn`" in text
    assert "![fixed-small training.png](figures/results/fixed-small_training.png)" in lines
    assert "delta_psnr.png" not in text  # no run has it
    assert text.endswith("\n")


def test_document_names_the_suites_left_out_of_the_ood_means(synthetic):
    regimes, _ = synthetic
    assert "are no shift" not in results_document(regimes, "cmd")
    regimes["fresh-small"].metrics["suites"]["acc2"]["in_distribution"] = True
    text = results_document(regimes, "cmd")
    assert (
        "Suites that repeat a regime's training distribution (`acc2` in fresh-small) are no "
        "shift: they are listed in the regime's per-suite table but left out of every OOD mean."
    ) in text


def test_document_without_ablation_or_discussion(synthetic):
    regimes, _ = synthetic
    text = results_document({"fresh-small": regimes["fresh-small"]}, "cmd")
    assert "## Discussion" not in text and "without BatchNorm" not in text
    assert "## PUN at other densities" not in text and "pruning at density 0.3." in text
    assert f"`{regimes['fresh-small'].run_dir}`" in text  # absolute without a root
    with pytest.raises(ValueError, match="at least one"):
        results_document({}, "cmd")


def test_write_results_doc_writes_figures_next_to_the_document(synthetic, tmp_path):
    regimes, ablation = synthetic
    doc = write_results_doc(regimes, tmp_path / "docs" / "RESULTS.md", "cmd", ablation=ablation)
    figures = doc.parent / "figures" / "results"
    assert sorted(p.name for p in figures.iterdir()) == ["fixed-small_training.png", "regimes.png"]
    assert doc.read_text() == results_document(regimes, "cmd", ablation=ablation)


def test_regime_run_load_reads_metrics_and_slices(tmp_path):
    records = [_rec("dense#s0", "id", "a", 30.0), _rec("pun#s0", "id", "a", 31.5)]
    write_slice_csv(records, tmp_path / "eval" / "slices.csv")
    (tmp_path / "metrics.json").write_text(json.dumps({"config": CONFIG, "methods": {}}))
    loaded = RegimeRun.load(tmp_path)
    assert loaded.records == records and loaded.test_seed == 0 and loaded.summary == {}
    assert RegimeRun.load(tmp_path, {"summary": {"pun": 1}}).summary == {"pun": 1}
    with pytest.raises(InputError, match="did not finish"):
        loaded.history("dense", 0)


# -- one document from real runs ------------------------------------------------------------------


def test_document_from_real_runs(tmp_path):
    suites = "evaluate.suites=[{name: id}, {name: acc8, physics: {acceleration: 8}}]"
    common = [*TINY, "prune.density=0.3", "prune.pun.steps=4", "seeds=[0,1]", suites]
    main = ["methods=[dense,dense-narrow,pun,pun-shuffled]", "prune.check_batches=1"]
    main += ["prune.check_shuffles=1", "evaluate.baselines=[zero-filled]"]
    main += ["method_seeds={dense: [0,1,2], pun: [0,1,2]}", "evaluate.checkpoints=[best,final]"]
    runs = {"fresh-small": tmp_path / "fresh-small", "nobn": tmp_path / "fresh-small-nobn"}
    metrics = run(load_config(None, [*common, *main]), runs["fresh-small"], progress=False)
    run(load_config(None, [*common, *NO_BATCHNORM]), runs["nobn"], progress=False)
    regimes = {"fresh-small": RegimeRun.load(runs["fresh-small"], metrics)}
    ablation = {"fresh-small": RegimeRun.load(runs["nobn"])}
    cost = {"wall_s": 5.4 * 3600, "jobs": 2, "machine": "a test machine"}
    doc = write_results_doc(regimes, tmp_path / "RESULTS.md", "cmd", ablation=ablation, cost=cost)
    text = doc.read_text()
    pun = metrics["summary"]["pun"]["ood_delta_psnr"]
    assert f"{pun['mean']:+.2f} [{pun['ci_low']:+.2f}, {pun['ci_high']:+.2f}]" in text
    assert metrics["summary"]["pun"]["id_delta_psnr_seeds"]["seeds"] == [0, 1, 2]
    records = regimes["fresh-small"].records
    shuffled = paired_summary(records, "pun", "pun-shuffled", seed=1234)
    assert shuffled["id_delta_psnr_seeds"]["seeds"] == [0, 1]  # the seeds both trained
    row = _row(verdict_table(regimes), "| fresh-small |")
    assert row in text and row.count(" [") == 6  # every reference at both seeds' networks
    assert "At the final-step checkpoints `pun~final` - `dense~final` is " in text
    assert "Cost: the whole results run took 5.4 h of wall time with 2 training processes" in text
    assert "| fresh-small | 2 |" in text  # a row per seed
    assert "- **fresh-small without BatchNorm**: PUN is" in text
    assert "![fresh-small training.png](figures/results/fresh-small_training.png)" in text
    assert (tmp_path / "figures" / "results" / "fresh-small_training.png").is_file()


def test_rewriting_the_document_keeps_sections_of_other_scripts(synthetic, tmp_path):
    regimes, ablation = synthetic
    path = tmp_path / "RESULTS.md"
    block = "<!-- BEGIN structured -->\n## Structured PUN\n| a |\n<!-- END structured -->"
    path.write_text(f"# an older study\n\nold table\n\n{block}\n")
    text = write_results_doc(regimes, path, "cmd", ablation=ablation).read_text()
    assert "old table" not in text
    assert text.count(block) == 1
    again = write_results_doc(regimes, path, "cmd", ablation=ablation).read_text()
    assert again == text
