"""The ``metrics.json`` contract: aggregates of the slice records of an evaluation, paired
differences to dense, suite descriptions, and each trained network's costs and training record."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..config import RunConfig, to_dict
from ..specs import TrainedModel
from ..train import device_label
from .statistics import split_seed, suite_statistics, summary_line
from .suites import Suite
from .tables import SliceRecord, aggregate


def replicate_suites(metrics: dict, id_suite: str = "id") -> set[str]:
    """The suites of a ``metrics.json`` that repeat the training distribution (flagged
    ``in_distribution``) other than ``id_suite``: replicates, left out of every OOD mean."""
    return {
        name
        for name, info in metrics.get("suites", {}).items()
        if info.get("in_distribution") and name != id_suite
    }


def summarize(
    records: list[SliceRecord],
    trained: Sequence[TrainedModel],
    cfg: RunConfig,
    suites: Sequence[Suite] = (),
) -> dict:
    """The ``metrics.json`` contract: per method and suite the mean/std over slices and seeds,
    paired differences to ``dense`` with hierarchical bootstrap 95% CIs and their seed-to-seed
    spread, a summary line per method (ID delta and mean OOD delta over the shifted suites:
    suites that repeat the training distribution are left out), suite difficulty, descriptions
    and ``in_distribution`` flags, and per-method costs."""
    folded = [dataclasses.replace(r, method=split_seed(r.method)[0]) for r in records]
    metrics = aggregate(folded)
    methods = metrics["methods"]
    replicates = [s.name for s in suites if s.in_distribution and s.name != "id"]
    if "dense" in methods:
        others = sorted({r.method for r in records if split_seed(r.method)[0] != "dense"})
        bases = sorted({split_seed(m)[0] for m in others})
        stats = suite_statistics(records, bases, reference="dense", seed=cfg.evaluate.test_seed)
        metrics["summary"] = {}
        for method, per_suite in stats.items():
            for suite, entry in per_suite.items():
                target = methods[method]["suites"][suite]
                for key in ("delta_psnr", "delta_ssim", "delta_psnr_seeds", "delta_ssim_seeds"):
                    target[key] = entry[key]
            metrics["summary"][method] = summary_line(
                stats, method, seed=cfg.evaluate.test_seed, replicates=replicates
            )
    metrics["suites"] = {
        s.name: {
            "description": s.description,
            "in_distribution": s.in_distribution,
            "n_slices": len(s),
            **{
                f"{m}_psnr": methods[m]["suites"][s.name]["psnr"]
                for m in ("zero-filled", "dense")
                if m in methods and s.name in methods[m]["suites"]
            },
        }
        for s in suites
    }
    for tm in trained:
        entry = methods.setdefault(tm.spec.name, {"suites": {}})
        costs = entry.setdefault("costs", {})
        for key, value in tm.costs.items():
            costs[key] = costs.get(key, 0.0) + value / len(cfg.seeds_of(tm.spec.method))
        entry.setdefault("seeds", []).append(tm.spec.seed)
        entry.setdefault("best_step", []).append(tm.result.best_step)
        training = entry.setdefault("training", {})
        for key in ("steps", "best_step", "best_val_psnr", "final_val_psnr", "stopped_early"):
            training.setdefault(key, []).append(getattr(tm.result, key))
        if tm.spec.density is not None:
            entry["density"] = tm.spec.density
    metrics["config"] = to_dict(cfg)
    metrics["image_shape"] = list(cfg.data.image_size)
    metrics["device"] = device_label(cfg.train.device)
    return metrics


__all__ = ["summarize"]
