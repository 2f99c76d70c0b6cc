"""The results grid's machinery: per-method seeds (networks, names, pairing over shared seeds,
costs), final-step checkpoints tested beside the best ones (names, metrics, report, a stage that
is not redone), and the results script's seed jobs and cost record."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from punmri.config import load_config
from punmri.errors import InputError
from punmri.evaluate.checkpoints import checkpoint_name, split_checkpoint
from punmri.evaluate.statistics import paired_differences, split_seed
from punmri.evaluate.tables import SliceRecord, read_slice_csv
from punmri.pipeline import (
    evaluation_fingerprint,
    load_trained,
    model_specs,
    run,
    seed_method_name,
)
from punmri.report.regimes import GRID, REGIMES, paired_summary, shared_seeds

from .conftest import TINY

ROOT = Path(__file__).resolve().parent.parent


def _rec(method: str, suite: str, slice_name: str, psnr: float) -> SliceRecord:
    return SliceRecord(method, suite, slice_name, psnr, 0.8, 0.01)


# -- names ----------------------------------------------------------------------------------------


def test_final_checkpoint_names_survive_the_seed_and_density_conventions():
    name = seed_method_name(checkpoint_name("pun@0.1", "final"), 2, (0, 1, 2))
    assert name == "pun@0.1~final#s2"
    base, seed = split_seed(name)
    assert (base, seed) == ("pun@0.1~final", 2)
    assert split_checkpoint(base) == ("pun@0.1", "final")
    assert split_checkpoint("dense-narrow") == ("dense-narrow", "best")
    assert checkpoint_name("dense") == "dense"
    with pytest.raises(ValueError, match="checkpoint 'last'"):
        checkpoint_name("dense", "last")


def test_model_specs_train_each_method_at_its_seeds():
    cfg = load_config(None, ["methods=[dense,random]", "seeds=[0]", "method_seeds={dense: [0,1]}"])
    specs = [(s.name, s.seed) for s in model_specs(cfg)]
    assert specs == [("dense", 0), ("dense", 1), ("random", 0)]
    assert seed_method_name("random", 0, cfg.all_seeds) == "random#s0"  # the run has 2 seeds


# -- pairing over unequal seed sets ---------------------------------------------------------------


def _seeded(offsets: dict[str, tuple[float, tuple[int, ...]]]) -> list[SliceRecord]:
    """Two slices of suites id and acc8; per method (offset, seeds): PSNR 30 + slice + seed +
    offset."""
    out = []
    for suite in ("id", "acc8"):
        for i in range(2):
            for name, (offset, seeds) in offsets.items():
                for s in seeds:
                    out.append(_rec(f"{name}#s{s}", suite, f"s{i}", 30.0 + i + s + offset))
    return out


def test_statistics_pair_by_seed_when_the_reference_has_more_seeds():
    records = _seeded({"dense": (0.0, (0, 1, 2, 3, 4)), "snip": (0.5, (0, 1, 2))})
    diffs = paired_differences(records, "snip", "dense")
    np.testing.assert_allclose(diffs["id"], np.full((2, 3), 0.5))  # seeds 0-2, seed by seed
    # the other way round the reference lacks seeds 3 and 4: the statistics refuse ...
    with pytest.raises(InputError, match="seed 3"):
        paired_differences(records, "dense", "snip")
    # ... and the report pairs only the seeds both have
    line = paired_summary(records, "dense", "snip", seed=0)
    assert line["id_delta_psnr"] == {"mean": -0.5, "ci_low": -0.5, "ci_high": -0.5}
    assert line["id_delta_psnr_seeds"]["seeds"] == [0, 1, 2]


def test_paired_summary_uses_the_shared_seeds_only():
    # pun at seeds 0-4 is 1 dB above pun-shuffled at 0-2, and 3 dB above it at seeds 3-4 (were
    # they compared with anything): the difference must be 1 exactly
    records = _seeded({"pun": (1.0, (0, 1, 2)), "pun-shuffled": (0.0, (0, 1, 2))})
    records += _seeded({"pun": (3.0, (3, 4))})
    records += [_rec("zero-filled", "id", "s0", 20.0)]
    kept = shared_seeds(records, "pun", "pun-shuffled")
    assert {split_seed(r.method)[1] for r in kept if r.method.startswith("pun#")} == {0, 1, 2}
    assert any(r.method == "zero-filled" for r in kept)
    line = paired_summary(records, "pun", "pun-shuffled", seed=0)
    assert line["id_delta_psnr"]["mean"] == 1.0 and line["ood_delta_psnr"]["mean"] == 1.0
    none = _seeded({"pun": (0.0, (3,)), "random": (0.0, (0,))})
    assert shared_seeds(none, "pun", "random") is None
    assert paired_summary(none, "pun", "random", seed=0) is None


# -- final-step checkpoints on a tiny run ---------------------------------------------------------

SUITES = "evaluate.suites=[{name: id}, {name: acc8, physics: {acceleration: 8}}]"
FINAL = [
    *TINY,
    "methods=[dense,random]",
    "seeds=[0]",
    "method_seeds={dense: [0,1]}",
    "prune.density=0.3",
    "evaluate.baselines=[zero-filled]",
    "evaluate.checkpoints=[best,final]",
    SUITES,
]


@pytest.fixture(scope="module")
def final_run(tmp_path_factory):
    cfg = load_config(None, FINAL)
    out = tmp_path_factory.mktemp("final") / "run"
    return cfg, out, run(cfg, out, progress=False)


def test_final_checkpoints_are_tested_and_reported(final_run):
    cfg, out, metrics = final_run
    records = read_slice_csv(out / "eval" / "slices.csv")
    networks = ["dense#s0", "dense#s1", "random#s0"]
    finals = [n.replace("#", "~final#") for n in networks]
    assert {r.method for r in records} == {*networks, *finals, "zero-filled"}
    for name in networks:  # the final checkpoint is the best one exactly when training ended best
        method, seed = split_seed(name)
        done = out / "models" / method / f"seed{seed}" / "train" / "done.json"
        done = json.loads(done.read_text())
        best = [r.psnr for r in records if r.method == name]
        final = [r.psnr for r in records if r.method == name.replace("#", "~final#")]
        assert (best == final) == (done["best_step"] == done["steps"]), name
    assert {"dense~final", "random~final"} <= set(metrics["methods"])
    assert {"dense~final", "random~final", "random"} <= set(metrics["summary"])
    assert "dense~final" in (out / "report.md").read_text()
    assert metrics["methods"]["dense"]["seeds"] == [0, 1]
    assert metrics["methods"]["random"]["seeds"] == [0]


def test_final_checkpoint_loads_the_last_weights(final_run):
    cfg, out, _ = final_run
    spec = model_specs(cfg)[0]
    model = load_trained(cfg, spec, out, "final").model
    last = torch.load(spec.directory(out) / "train" / "last.pt", weights_only=False)["model"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, last[name]), name


def test_costs_are_means_over_each_methods_own_seeds(final_run):
    _, out, metrics = final_run
    for method, seeds in (("dense", (0, 1)), ("random", (0,))):
        per_seed = [
            json.loads((out / "models" / method / f"seed{s}" / "costs.json").read_text())
            for s in seeds
        ]
        mean = sum(c["train_backward"] for c in per_seed) / len(seeds)
        assert metrics["methods"][method]["costs"]["train_backward"] == pytest.approx(mean)


def test_a_complete_run_is_not_evaluated_again(final_run):
    cfg, out, metrics = final_run
    outputs = [out / "eval" / "done.json", out / "eval" / "slices.csv", out / "metrics.json"]
    stamps = [p.stat().st_mtime_ns for p in outputs]
    assert run(cfg, out, progress=False) == json.loads((out / "metrics.json").read_text())
    assert [p.stat().st_mtime_ns for p in outputs] == stamps


def test_the_checkpoint_switch_is_part_of_the_evaluation_fingerprint(final_run, tmp_path):
    cfg, out, _ = final_run
    best_only = load_config(None, [*FINAL, "evaluate.checkpoints=[best]"])
    specs = model_specs(cfg)
    assert evaluation_fingerprint(cfg, out, specs) != evaluation_fingerprint(best_only, out, specs)
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    metrics = run(best_only, copy, progress=False)  # evaluated again, without the finals
    assert "dense~final" not in metrics["methods"] and "random" in metrics["summary"]


# -- the results script ---------------------------------------------------------------------------


@pytest.fixture
def script(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.delitem(sys.modules, "results", raising=False)
    import results

    return results


def test_results_jobs_split_each_regime_by_seed(script, tmp_path):
    config = ROOT / "configs" / "results.yaml"
    regimes = ("fixed-tiny-noisy", "fresh-full", "fresh-full-didn")  # the first design's three
    assert set(GRID) <= set(regimes)
    runs = {r: tmp_path / r for r in regimes}
    overrides = {r: [*REGIMES[r], "prune.densities=[]"] for r in regimes}
    finished = tmp_path / "fresh-full" / "models" / "dense-narrow" / "seed1" / "costs.json"
    finished.parent.mkdir(parents=True)
    finished.write_text("{}")
    jobs = script.training_jobs(config, runs, overrides)
    assert len(jobs) == 5 + 5 + 3  # seeds 0-4 of the ResNet regimes, 0-2 of DIDN
    first = jobs[0]
    # 8 trainings, PUN's 300 search steps (the grid's), pun-uniform's 300, IMP's second round
    assert (first.run, first.weight) == ("fixed-tiny-noisy", 8 * 500 + 300 + 300 + 500)
    assert [j.weight for j in jobs] == sorted((j.weight for j in jobs), reverse=True)
    for job in jobs:
        names = [n.rpartition(":")[0] for n in job.networks]
        assert all(n.endswith(f":{job.seed}") for n in job.networks)
        if "pun-shuffled" in names or "imp" in names:  # with what they are derived from
            assert "pun" in names and "dense" in names
    fresh = {j.seed: j for j in jobs if j.run == "fresh-full"}
    assert "dense-narrow:1" not in fresh[1].networks and "dense-narrow:0" in fresh[0].networks
    assert "snip:0" not in fresh[0].networks  # only the verdict's networks outside the over-fit
    assert [n for n in fresh[4].networks] == ["dense:4", "pun:4"]
    didn = {j.seed: j for j in jobs if j.run == "fresh-full-didn"}
    assert didn[0].networks == ("dense:0", "pun:0", "pun-shuffled:0")


def test_results_plan_lists_what_is_left_and_trains_nothing(script, tmp_path, monkeypatch, capsys):
    finished = tmp_path / "fresh-full-didn" / "models" / "dense" / "seed2" / "costs.json"
    finished.parent.mkdir(parents=True)
    finished.write_text("{}")
    script.CostLog(tmp_path / "cost.json", jobs=2).write()
    args = ["results.py", "--plan", "--out", str(tmp_path), "--regimes", "fresh-full-didn"]
    monkeypatch.setattr(sys, "argv", args)
    script.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("3 jobs, ") and "0.0 h spent so far" in lines[-1]
    assert lines[-2].split()[:3] == ["fresh-full-didn", "seed", "2"]  # the smallest, dense done
    assert lines[-2].endswith("pun:2 pun-shuffled:2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cost.json", "fresh-full-didn"]


def test_results_cost_log_adds_up_sessions(script, tmp_path):
    path = tmp_path / "cost.json"
    first = script.CostLog(path, jobs=2).write()
    assert first["jobs"] == 2 and len(first["sessions"]) == 1
    second = script.CostLog(path, jobs=2, every=0.01)
    stop = second.running()  # a killed session keeps what the ticks recorded
    time.sleep(0.2)
    stop.set()
    assert len(script.CostLog.read(path)["sessions"]) == 2
    record = second.write()
    assert len(record["sessions"]) == 2
    assert record["wall_s"] == pytest.approx(sum(record["sessions"]))
    assert script.CostLog.read(path)["sessions"][0] == first["sessions"][0]


def test_run_tasks_evaluates_a_run_once_its_trainings_end_and_before_later_trainings(script):
    order: list[str] = []

    def task(name, after=()):
        return script.Task(name, lambda: order.append(name) or name, frozenset(after))

    tasks = [
        task("evaluate a", ["train a0", "train a1"]),
        task("train a0"),
        task("train a1"),
        task("evaluate b", ["train b0"]),
        task("train b0"),
    ]
    assert script.run_tasks(tasks, jobs=1) == {t.name: t.name for t in tasks}
    assert order == ["train a0", "train a1", "evaluate a", "train b0", "evaluate b"]
    order.clear()
    script.run_tasks(tasks, jobs=2)
    assert sorted(order) == sorted(t.name for t in tasks)
    assert order.index("evaluate a") > max(order.index("train a0"), order.index("train a1"))
    assert order.index("evaluate b") > order.index("train b0")


def test_run_tasks_skips_what_waits_for_a_failure_and_raises_it_at_the_end(script):
    ran: list[str] = []

    def fail():
        raise ValueError("training a0 failed")

    tasks = [
        script.Task("evaluate a", lambda: ran.append("evaluate a"), frozenset({"train a0"})),
        script.Task("train a0", fail),
        script.Task("train b0", lambda: ran.append("train b0")),
    ]
    for jobs in (1, 2):
        ran.clear()
        with pytest.raises(ValueError, match="training a0 failed"):
            script.run_tasks(tasks, jobs=jobs)
        assert ran == ["train b0"]
    with pytest.raises(ValueError, match="unknown tasks"):
        script.run_tasks([script.Task("x", lambda: 1, frozenset({"y"}))], jobs=1)


def test_doc_only_refuses_a_regime_that_is_not_evaluated(script, tmp_path, monkeypatch):
    (tmp_path / "fresh-full-didn").mkdir()
    args = ["results.py", "--doc-only", "--out", str(tmp_path), "--regimes", "fresh-full-didn"]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(InputError, match=r"metrics.json does not exist: .* is not evaluated yet"):
        script.main()


def test_in_parallel_keeps_the_items_order_and_raises_once_all_have_run(script):
    from _docs import in_parallel  # the benchmarks' one pool (run_tasks without dependencies)

    assert in_parallel(lambda x: x * x, range(5), jobs=2) == [0, 1, 4, 9, 16]
    ran: list[int] = []

    def square_or_fail(x: int) -> int:
        ran.append(x)
        if x == 1:
            raise ValueError("item 1 failed")
        return x * x

    for jobs in (1, 3):
        ran.clear()
        with pytest.raises(ValueError, match="item 1 failed"):
            in_parallel(square_or_fail, range(4), jobs=jobs)
        assert sorted(ran) == [0, 1, 2, 3]
