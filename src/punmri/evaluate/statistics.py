"""Paired, seed-aware statistics of slice records: differences to a reference with bootstrap CIs.

Records of a run with several seeds carry method names ``NAME#sS``
(:func:`punmri.pipeline.seed_method_name`; the plain name when there is one seed). A method is
compared with a reference (``dense`` by default) on the *same* test slices: the paired difference
``method - reference`` of a metric, per slice and per seed, removes the slice-to-slice variation
of difficulty that dominates unpaired comparisons. A suite's differences form an
``(n_slices, n_seeds)`` matrix ``D``; its mean is the mean of ``D``.

**Hierarchical bootstrap.** Two things are drawn at random in an experiment: the training runs
(seeds) and the test slices. Every seed's network is tested on the *same* slices, so the two are
crossed, not nested: a slice on which the method gains much gains for every seed. One bootstrap
replicate therefore

1. draws ``n_slices`` slice indices with replacement (once per replicate), then
2. draws ``n_seeds`` seed indices with replacement (once per replicate),

and takes the mean of ``D`` over the drawn rows and columns (each drawn seed contributes the
drawn slices; duplicates count as often as drawn). With one seed this is the slice bootstrap.
Drawing slices afresh for every drawn seed (a nested bootstrap) would treat a slice's gain as
independent across seeds and make the slice part of the interval too narrow by up to a factor
``sqrt(n_seeds)``. The interval is the percentile interval of the replicates (95% by default),
from a ``numpy.random.Generator`` seeded with the given seed (the run's ``evaluate.test_seed``):
deterministic, and the same draws for every method, so ``reference - method`` gives the mirrored
interval. ``resample_seeds=False`` keeps the seeds fixed (the slice bootstrap of earlier versions:
an interval conditional on the trained networks).

On simulated studies of 3 seeds x 20 slices with a known mean difference the 95% interval covers
it in 93% of studies when seed effects are modest (tests/test_statistics.py); without any seed
effect it is conservative (about 98%: per-slice noise enters at both levels). The seed level of a
percentile bootstrap cannot reach beyond the range of the per-seed means, though: when
seed-to-seed variation dominates, coverage is at most ``1 - 2 * 2**-n_seeds`` (75% with 3 seeds,
94% with 5; measured 76% and 84%; the slice bootstrap 23%). The seed-to-seed spread of the
per-seed mean differences (``*_seeds``: ``std`` with ``ddof=1``, ``min``, ``max``, the values)
is therefore reported beside every interval.

**Mean over shifted suites (OOD).** The average over the non-``id`` suites of each suite's mean
(every shift weighs the same). Its replicates draw the seeds once and use them in every suite (the
same networks are tested on every suite), and draw slices once per *slice set*: suites whose
slices have the same names (all suites built from the ``test`` slab re-simulate the same images,
named ``SOURCE:VIEW:INDEX``) are resampled with the same slice indices; a suite with another set
(another view, an extra image source) has its own slice draw, made in the same replicate.

Non-finite values (a failed slice: ``nan``; an exact one: ``inf``) are not dropped: a difference
containing one gives a non-finite mean and a ``nan`` interval, so failures stay visible.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
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


@dataclasses.dataclass(frozen=True)
class Paired:
    """One suite's paired differences: ``diffs[i, j]`` is slice ``slices[i]`` under seed
    ``seeds[j]`` (the seed that varies: the method's, or the reference's for a plain-named
    method; ``None`` for one plain-named network on both sides)."""

    slices: tuple[str, ...]
    seeds: tuple[int | None, ...]
    diffs: np.ndarray


def paired_tables(
    records: Iterable[SliceRecord],
    method: str,
    reference: str = "dense",
    metric: str = "psnr",
) -> dict[str, Paired]:
    """:func:`paired_differences` with the slice names and seeds of each row and column."""
    records = list(records)
    mine = _method_table(records, method, metric)
    ref = _method_table(records, reference, metric)
    for suite in ref:
        if suite not in mine:
            raise InputError(
                f"method {method!r}: no records in suite {suite!r}, which reference "
                f"{reference!r} has"
            )
    out: dict[str, Paired] = {}
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
        pairs = _seed_pairs(method, suite, m_seeds, r_seeds)
        for ms, rs in pairs:
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
        seeds = tuple(ms if ms is not None else rs for ms, rs in pairs)
        out[suite] = Paired(tuple(slices), seeds, np.asarray(columns, dtype=np.float64).T)
    return out


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
    tables = paired_tables(records, method, reference, metric)
    return {suite: table.diffs for suite, table in tables.items()}


def _check_boot(n_boot: int, level: float) -> None:
    if int(n_boot) != n_boot or n_boot < 1:
        raise InputError(f"n_boot: expected a positive integer, got {n_boot!r}")
    if not 0 < level < 1:
        raise InputError(f"level: expected a confidence level in (0, 1), got {level!r}")


def _as_matrix(diffs: np.ndarray) -> np.ndarray:
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] == 0:
        raise InputError(
            f"diffs: expected a non-empty (n_slices,) or (n_slices, n_seeds) array, got {d.shape}"
        )
    return d


def _exact_mean(values: np.ndarray) -> float:
    """The mean of ``values``; exactly their value when they are all equal."""
    with np.errstate(invalid="ignore"):  # inf - inf in ptp of an exact (inf) slice
        constant = values.size > 0 and np.ptp(values) == 0
    return float(values.flat[0]) if constant else float(np.mean(values))


def _draw_weights(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """``(n_boot, n)``: per replicate, how often each of ``n`` indices was drawn in ``n`` draws
    with replacement, divided by ``n`` (the weights of the resampled mean)."""
    picks = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(picks.ravel(), minlength=n_boot * n).reshape(n_boot, n) / n


def _hierarchical_ci(
    groups: Sequence[Sequence[np.ndarray]],
    n_boot: int,
    level: float,
    seed: int,
    resample_seeds: bool,
) -> dict[str, float]:
    """Percentile CI of the average over matrices of their means (see the module docstring).

    Args:
        groups: slice sets, each a list of ``(n_slices, n_seeds)`` matrices whose rows are the
            same slices in the same order; every matrix's columns are the same seeds.
        n_boot, level, seed: replicates, confidence level, generator seed.
        resample_seeds: draw seeds (the hierarchical bootstrap) or keep them (slices only).
    """
    mats = [m for group in groups for m in group]
    point = float(np.mean([_exact_mean(m) for m in mats]))
    if not all(np.isfinite(m).all() for m in mats):
        return {"mean": point, "ci_low": math.nan, "ci_high": math.nan}
    if all(np.ptp(m) == 0 for m in mats):  # no resampling variation
        return {"mean": point, "ci_low": point, "ci_high": point}
    rng = np.random.default_rng(seed)
    slice_weights = [_draw_weights(rng, group[0].shape[0], n_boot) for group in groups]
    n_seeds = mats[0].shape[1]
    if resample_seeds and n_seeds > 1:
        seed_weights = _draw_weights(rng, n_seeds, n_boot)
    else:
        seed_weights = np.full((n_boot, n_seeds), 1.0 / n_seeds)
    boot = np.zeros(n_boot)
    for group, weights in zip(groups, slice_weights, strict=True):
        for m in group:
            boot += np.einsum("bi,is,bs->b", weights, m, seed_weights)
    boot /= len(mats)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return {"mean": point, "ci_low": float(low), "ci_high": float(high)}


def bootstrap_ci(
    diffs: np.ndarray,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    resample_seeds: bool = True,
) -> dict[str, float]:
    """Hierarchical percentile-bootstrap CI of the mean paired difference (module docstring).

    Args:
        diffs: ``(n_slices, n_seeds)`` (or ``(n_slices,)``) paired differences, the same slices
            under every seed.
        n_boot: bootstrap replicates.
        level: confidence level.
        seed: seed of the ``numpy.random.Generator`` (the result is deterministic).
        resample_seeds: False keeps the seeds fixed (the slice bootstrap: an interval
            conditional on the trained networks); one seed gives the slice bootstrap either way.

    Returns:
        ``{"mean", "ci_low", "ci_high"}``; the interval is ``[mean, mean]`` for one slice and
        one seed or constant differences, ``nan`` when a difference is not finite.
    """
    _check_boot(n_boot, level)
    return _hierarchical_ci([[_as_matrix(diffs)]], int(n_boot), level, seed, resample_seeds)


def seed_spread(per_seed: Sequence[float], seeds: Sequence[int | None]) -> dict[str, Any]:
    """The seed-to-seed spread of per-seed mean differences, reported beside each interval.

    Returns:
        ``{"n", "std", "min", "max", "values", "seeds"}``: ``std`` with ``ddof=1`` (``nan`` for
        one seed), ``values[j]`` the mean difference of seed ``seeds[j]``.
    """
    values = np.asarray(per_seed, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        std = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return {
        "n": int(values.size),
        "std": std,
        "min": float(values.min()) if values.size else math.nan,
        "max": float(values.max()) if values.size else math.nan,
        "values": values.tolist(),
        "seeds": list(seeds),
    }


def suite_statistics(
    records: Iterable[SliceRecord],
    methods: Sequence[str],
    reference: str = "dense",
    metrics: Sequence[str] = ("psnr", "ssim"),
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    resample_seeds: bool = True,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Paired differences to ``reference`` with hierarchical bootstrap CIs, per method and suite.

    Returns:
        ``stats[method][suite]`` = ``{"delta_<metric>": {"mean", "ci_low", "ci_high"},
        "delta_<metric>_seeds": seed_spread(...), ..., "n_slices", "n_seeds", "slices": [names],
        "seeds": [seeds], "diffs": {metric: (n_slices, n_seeds) nested list}}``; ``slices``,
        ``seeds`` and ``diffs`` feed :func:`summary_line`.
    """
    _check_boot(n_boot, level)
    records = list(records)
    stats: dict[str, dict[str, dict[str, Any]]] = {}
    for method in methods:
        per_suite: dict[str, dict[str, Any]] = {}
        for metric in metrics:
            for suite, table in paired_tables(records, method, reference, metric).items():
                d = table.diffs
                entry = per_suite.setdefault(
                    suite,
                    {
                        "n_slices": d.shape[0],
                        "n_seeds": d.shape[1],
                        "slices": list(table.slices),
                        "seeds": list(table.seeds),
                        "diffs": {},
                    },
                )
                entry[f"delta_{metric}"] = bootstrap_ci(d, n_boot, level, seed, resample_seeds)
                per_seed = [_exact_mean(column) for column in d.T]
                entry[f"delta_{metric}_seeds"] = seed_spread(per_seed, table.seeds)
                entry["diffs"][metric] = d.tolist()
        stats[method] = per_suite
    return stats


def _slice_groups(
    suites: Mapping[str, Mapping[str, Any]], metric: str, method: str
) -> list[list[np.ndarray]]:
    """The suites' difference matrices grouped by slice set (rows in the first suite's order)."""
    names = list(suites)
    seeds = suites[names[0]]["seeds"]
    groups: dict[frozenset[str], tuple[list[str], list[np.ndarray]]] = {}
    for name in names:
        entry = suites[name]
        if entry["seeds"] != seeds:
            raise InputError(
                f"method {method!r}: suite {name!r} has seeds {entry['seeds']} and suite "
                f"{names[0]!r} {seeds}; the mean over suites needs the same seeds in every suite"
            )
        d = np.asarray(entry["diffs"][metric], dtype=np.float64).reshape(len(entry["slices"]), -1)
        order, mats = groups.setdefault(frozenset(entry["slices"]), (entry["slices"], []))
        row = {slice_name: i for i, slice_name in enumerate(entry["slices"])}
        mats.append(d[[row[slice_name] for slice_name in order]])
    return [mats for _, mats in groups.values()]


def summary_line(
    stats: Mapping[str, Mapping[str, Mapping[str, Any]]],
    method: str,
    id_suite: str = "id",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    resample_seeds: bool = True,
    replicates: Collection[str] = (),
) -> dict[str, Any]:
    """In-distribution and out-of-distribution paired differences of one method.

    ``ood_delta_<metric>`` is the average over the non-``id`` suites of each suite's mean paired
    difference (every shift weighs the same, whatever its slice count); its CI draws the seeds
    once per replicate for all suites and the slices once per slice set (module docstring).
    ``replicates`` are suites left out of that average: suites that repeat the training
    distribution (:attr:`~punmri.evaluate.suites.Suite.in_distribution`), which are no shift.

    Returns:
        ``{"method", "id_delta_<metric>": {mean, ci_low, ci_high}, "id_delta_<metric>_seeds":
        seed_spread(...), "ood_delta_<metric>": {...}, "ood_delta_<metric>_seeds": {...},
        "ood_suites": [...]}`` for every metric in ``stats`` (``nan`` without non-id suites);
        the OOD spread is over the per-seed means over the shifted suites.
    """
    _check_boot(n_boot, level)
    if method not in stats:
        raise InputError(f"method {method!r}: not in the statistics; have {sorted(stats)}")
    suites = stats[method]
    if id_suite not in suites:
        raise InputError(
            f"id_suite {id_suite!r}: method {method!r} has no such suite; have {sorted(suites)}"
        )
    ood = {n: entry for n, entry in suites.items() if n != id_suite and n not in replicates}
    seeds = suites[id_suite]["seeds"]
    metrics = [k.removeprefix("delta_") for k in suites[id_suite] if k.startswith("delta_")]
    metrics = [m for m in metrics if not m.endswith("_seeds")]
    out: dict[str, Any] = {"method": method}
    for metric in metrics:
        out[f"id_delta_{metric}"] = dict(suites[id_suite][f"delta_{metric}"])
        out[f"id_delta_{metric}_seeds"] = dict(suites[id_suite][f"delta_{metric}_seeds"])
        if not ood:
            out[f"ood_delta_{metric}"] = {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan}
            out[f"ood_delta_{metric}_seeds"] = seed_spread([math.nan] * len(seeds), seeds)
            continue
        groups = _slice_groups(ood, metric, method)
        out[f"ood_delta_{metric}"] = _hierarchical_ci(
            groups, int(n_boot), level, seed, resample_seeds
        )
        per_seed = np.mean([entry[f"delta_{metric}_seeds"]["values"] for entry in ood.values()], 0)
        out[f"ood_delta_{metric}_seeds"] = seed_spread(per_seed, list(ood.values())[0]["seeds"])
    out["ood_suites"] = list(ood)
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
