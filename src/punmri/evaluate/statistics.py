"""Paired, seed-aware statistics of slice records: differences to a reference with bootstrap CIs.

Records of a run with several seeds carry method names ``NAME#sS``
(:func:`punmri.pipeline.seed_method_name`; the plain name when there is one seed). A method is
compared with a reference (``dense`` by default) on the *same* test slices: the paired difference
``method - reference`` of a metric, per slice and per seed, removes the slice-to-slice variation
of difficulty that dominates unpaired comparisons.

Confidence intervals are percentile bootstraps of the mean paired difference that resample
*slices*, keeping all seeds of a slice together (a cluster bootstrap). Slices are the unit because
they are the independent draws from the image population the claim is about; the seeds of one
slice share its image and its simulated measurement, so their differences are correlated, and
resampling (slice, seed) pairs as if independent would make the interval too narrow. The interval
is therefore conditional on the trained seeds: with a handful of seeds it does not capture the
full between-training-run variance, which :func:`pooled_statistics` reports separately
(``*_seed_std``).

Non-finite values (a failed slice: ``nan``; an exact one: ``inf``) are not dropped: a difference
containing one gives a non-finite mean and a ``nan`` interval, so failures stay visible.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .tables import METRICS, SliceRecord, aggregate

_SEED_SUFFIX = re.compile(r"^(?P<base>.+)#s(?P<seed>-?\d+)$")


def split_seed(method: str) -> tuple[str, int | None]:
    """``"pun#s2"`` -> ``("pun", 2)``; a plain name -> ``(name, None)``."""
    match = _SEED_SUFFIX.match(method)
    if match is None:
        return method, None
    return match["base"], int(match["seed"])


def _value(record: SliceRecord, metric: str) -> float:
    if metric in METRICS:
        return float(getattr(record, metric))
    if metric in record.extra:
        return float(record.extra[metric])
    raise InputError(
        f"metric {metric!r}: record ({record.method}, {record.suite}, {record.slice_name}) has "
        f"no such value; expected one of {list(METRICS)} or an extra metric of the records"
    )


def _method_table(
    records: Sequence[SliceRecord], method: str, metric: str
) -> dict[str, dict[int | None, dict[str, float]]]:
    """suite -> seed -> slice -> value for ``method`` (a base name or an exact ``NAME#sS``)."""
    exact = split_seed(method)[1] is not None
    table: dict[str, dict[int | None, dict[str, float]]] = {}
    for r in records:
        base, seed = split_seed(r.method)
        if (r.method != method) if exact else (base != method):
            continue
        cell = table.setdefault(r.suite, {}).setdefault(seed, {})
        if r.slice_name in cell:
            raise InputError(
                f"records: duplicate record for method {r.method!r}, suite {r.suite!r}, slice "
                f"{r.slice_name!r}"
            )
        cell[r.slice_name] = _value(r, metric)
    if not table:
        known = sorted({split_seed(r.method)[0] for r in records})
        raise InputError(f"method {method!r}: no records; methods in the records: {known}")
    for suite, seeds in table.items():
        if None in seeds and len(seeds) > 1:
            raise InputError(
                f"method {method!r}, suite {suite!r}: records mix a plain name with per-seed "
                "names NAME#sS"
            )
    return table


def _seed_pairs(
    method: str, suite: str, m_seeds: list[int | None], r_seeds: list[int | None]
) -> list[tuple[int | None, int | None]]:
    """(method seed, reference seed) columns of a suite's difference matrix."""
    if len(r_seeds) == 1:
        return [(s, r_seeds[0]) for s in m_seeds]
    if m_seeds == [None]:
        return [(None, s) for s in r_seeds]
    missing = [s for s in m_seeds if s not in r_seeds]
    if missing:
        raise InputError(
            f"method {method!r}, suite {suite!r}: the reference has no records of seed "
            f"{missing[0]} (reference seeds: {r_seeds})"
        )
    return [(s, s) for s in m_seeds]


def paired_differences(
    records: Iterable[SliceRecord],
    method: str,
    reference: str = "dense",
    metric: str = "psnr",
) -> dict[str, np.ndarray]:
    """Per-suite paired differences ``method - reference`` of ``metric``.

    Records are matched on (suite, slice, seed), the seed parsed from ``NAME#sS`` names. Method
    seed ``s`` pairs with reference seed ``s``; a reference with a single seed (or a plain name)
    pairs with every method seed, and a plain-named method (e.g. a classical baseline) with every
    reference seed.

    Args:
        records: slice records of one evaluation.
        method: base name (all its seeds) or an exact ``NAME#sS``.
        reference: base name of the reference method.
        metric: ``psnr``, ``ssim``, ``nmse`` or the name of an extra metric.

    Returns:
        suite -> ``(n_slices, n_seeds)`` float64 array; rows follow the records' slice order,
        columns the method's seeds in increasing order.

    Raises:
        InputError: a method without records, a suite, seed or slice without a partner,
            duplicate records, or a metric the records do not have.
    """
    records = list(records)
    mine = _method_table(records, method, metric)
    ref = _method_table(records, reference, metric)
    for suite in ref:
        if suite not in mine:
            raise InputError(
                f"method {method!r}: no records in suite {suite!r}, which reference "
                f"{reference!r} has"
            )
    out: dict[str, np.ndarray] = {}
    for suite, m_cells in mine.items():
        if suite not in ref:
            raise InputError(
                f"method {method!r}, suite {suite!r}: reference {reference!r} has no records "
                "in this suite"
            )
        r_cells = ref[suite]
        m_seeds = sorted(m_cells, key=lambda s: -1 if s is None else s)
        r_seeds = sorted(r_cells, key=lambda s: -1 if s is None else s)
        slices = list(dict.fromkeys(name for s in m_seeds for name in m_cells[s]))
        columns = []
        for ms, rs in _seed_pairs(method, suite, m_seeds, r_seeds):
            for side, cells, seed in (("method", m_cells, ms), ("reference", r_cells, rs)):
                lacking = [name for name in slices if name not in cells[seed]]
                extra = [name for name in cells[seed] if name not in slices]
                if lacking or extra:
                    who = method if side == "method" else reference
                    raise InputError(
                        f"method {method!r}, suite {suite!r}: {side} {who!r} (seed {seed}) has "
                        f"no partner for slice {(lacking or extra)[0]!r}"
                    )
            columns.append([m_cells[ms][name] - r_cells[rs][name] for name in slices])
        out[suite] = np.asarray(columns, dtype=np.float64).T
    return out


def _check_boot(n_boot: int, level: float) -> None:
    if int(n_boot) != n_boot or n_boot < 1:
        raise InputError(f"n_boot: expected a positive integer, got {n_boot!r}")
    if not 0 < level < 1:
        raise InputError(f"level: expected a confidence level in (0, 1), got {level!r}")


def _cluster_means(diffs: np.ndarray) -> np.ndarray:
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise InputError(
            f"diffs: expected a non-empty (n_slices,) or (n_slices, n_seeds) array, got {d.shape}"
        )
    with np.errstate(invalid="ignore"):  # inf - inf in ptp of an exact (inf) slice
        constant = np.ptp(d, axis=1) == 0
    return np.where(constant, d[:, 0], d.mean(axis=1))  # exact mean of equal seeds


def _percentile_ci(
    means: Sequence[np.ndarray], n_boot: int, level: float, seed: int
) -> dict[str, float]:
    """Bootstrap of the average over groups of the group means (each group resampled alone)."""
    if not all(np.isfinite(m).all() for m in means):
        point = float(np.mean([m.mean() for m in means]))
        return {"mean": point, "ci_low": math.nan, "ci_high": math.nan}
    point = float(np.mean([m[0] if np.ptp(m) == 0 else m.mean() for m in means]))
    if all(m.size == 1 or np.ptp(m) == 0 for m in means):  # no resampling variation
        return {"mean": point, "ci_low": point, "ci_high": point}
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    for m in means:
        boot += m[rng.integers(0, m.size, size=(n_boot, m.size))].mean(axis=1)
    boot /= len(means)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return {"mean": point, "ci_low": float(low), "ci_high": float(high)}


def bootstrap_ci(
    diffs: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Percentile-bootstrap CI of the mean paired difference, resampling slices (clusters).

    Args:
        diffs: ``(n_slices, n_seeds)`` (or ``(n_slices,)``) paired differences; the seeds of a
            slice are resampled together (see the module docstring for why).
        n_boot: bootstrap replicates.
        level: confidence level.
        seed: seed of the ``numpy.random.Generator`` (the result is deterministic).

    Returns:
        ``{"mean", "ci_low", "ci_high"}``; the interval is ``[mean, mean]`` for one slice or
        constant differences, ``nan`` when a difference is not finite.
    """
    _check_boot(n_boot, level)
    return _percentile_ci([_cluster_means(diffs)], int(n_boot), level, seed)


def suite_statistics(
    records: Iterable[SliceRecord],
    methods: Sequence[str],
    reference: str = "dense",
    metrics: Sequence[str] = ("psnr", "ssim"),
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Paired differences to ``reference`` with bootstrap CIs, per method and suite.

    Returns:
        ``stats[method][suite]`` = ``{"delta_<metric>": {"mean", "ci_low", "ci_high"}, ...,
        "n_slices": int, "n_seeds": int, "slice_deltas": {metric: [seed-averaged difference per
        slice]}}``; ``slice_deltas`` feeds :func:`summary_line`.
    """
    _check_boot(n_boot, level)
    records = list(records)
    stats: dict[str, dict[str, dict[str, Any]]] = {}
    for method in methods:
        per_suite: dict[str, dict[str, Any]] = {}
        for metric in metrics:
            for suite, d in paired_differences(records, method, reference, metric).items():
                entry = per_suite.setdefault(
                    suite, {"n_slices": d.shape[0], "n_seeds": d.shape[1], "slice_deltas": {}}
                )
                entry[f"delta_{metric}"] = bootstrap_ci(d, n_boot, level, seed)
                entry["slice_deltas"][metric] = d.mean(axis=1).tolist()
        stats[method] = per_suite
    return stats


def summary_line(
    stats: Mapping[str, Mapping[str, Mapping[str, Any]]],
    method: str,
    id_suite: str = "id",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """In-distribution and out-of-distribution paired differences of one method.

    ``ood_delta_<metric>`` is the average over the non-``id`` suites of each suite's mean paired
    difference (every shift weighs the same, whatever its slice count); its CI resamples slices
    within each suite and averages the resampled suite means.

    Returns:
        ``{"method", "id_delta_<metric>": {mean, ci_low, ci_high}, "ood_delta_<metric>": {...},
        "ood_suites": [...]}`` for every metric in ``stats`` (``nan`` without non-id suites).
    """
    _check_boot(n_boot, level)
    if method not in stats:
        raise InputError(f"method {method!r}: not in the statistics; have {sorted(stats)}")
    suites = stats[method]
    if id_suite not in suites:
        raise InputError(
            f"id_suite {id_suite!r}: method {method!r} has no such suite; have {sorted(suites)}"
        )
    ood = [s for s in suites if s != id_suite]
    metrics = [k.removeprefix("delta_") for k in suites[id_suite] if k.startswith("delta_")]
    out: dict[str, Any] = {"method": method}
    nan = {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    for metric in metrics:
        out[f"id_delta_{metric}"] = dict(suites[id_suite][f"delta_{metric}"])
        groups = [np.asarray(suites[s]["slice_deltas"][metric], dtype=np.float64) for s in ood]
        out[f"ood_delta_{metric}"] = (
            _percentile_ci(groups, int(n_boot), level, seed) if groups else dict(nan)
        )
    out["ood_suites"] = ood
    return out


def pooled_statistics(records: Iterable[SliceRecord]) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean and std over slices *and* seeds per method (seeds folded) and suite.

    Returns:
        ``stats[method][suite]`` = ``{"psnr_mean", "psnr_std", "ssim_mean", "ssim_std",
        "nmse_mean", "n", "n_seeds", "psnr_seed_std", "ssim_seed_std"[, "n_failed"]}`` where
        ``n`` counts (slice, seed) records, the std is the population std over them (``nan``
        ignored as in :func:`~punmri.evaluate.tables.aggregate`) and ``*_seed_std`` is the
        population std over seeds of the per-seed suite means (0 for one seed).
    """
    records = list(records)
    folded = [dataclasses.replace(r, method=split_seed(r.method)[0]) for r in records]
    pooled = aggregate(folded)["methods"]
    per_seed = aggregate(records)["methods"]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method, entry in pooled.items():
        out[method] = {}
        for suite, agg in entry["suites"].items():
            seed_means = {
                m: per_seed[m]["suites"][suite]
                for m in per_seed
                if split_seed(m)[0] == method and suite in per_seed[m]["suites"]
            }
            row: dict[str, Any] = {
                "psnr_mean": agg["psnr"],
                "psnr_std": agg["psnr_std"],
                "ssim_mean": agg["ssim"],
                "ssim_std": agg["ssim_std"],
                "nmse_mean": agg["nmse"],
                "n": agg["n"],
                "n_seeds": len(seed_means),
            }
            for metric in ("psnr", "ssim"):
                values = np.asarray([v[metric] for v in seed_means.values()], dtype=np.float64)
                values = values[~np.isnan(values)]
                row[f"{metric}_seed_std"] = float(values.std()) if values.size else math.nan
            if "n_failed" in agg:
                row["n_failed"] = agg["n_failed"]
            out[method][suite] = row
    return out
