"""Markdown tables and sentences of the generalization document (``docs/RESULTS.md``).

Every function takes the study's runs as ``{label: RegimeRun}`` (label = the regime name shown in
the document, in the order the document lists them) and returns Markdown lines; differences are
shown as ``mean [ci_low, ci_high]`` in dB (:func:`~punmri.report.markdown.fmt_ci`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .markdown import fmt_ci
from .regimes import (
    BASELINES,
    CONTROLS,
    RegimeRun,
    Summary,
    harder_suites,
    max_val_drop,
    paired_summary,
    psnr_by_network,
    significance,
    without_batchnorm,
)


def _header(first: list[str], columns: list[str]) -> list[str]:
    """A table's header row (the ``first`` columns, then ``columns``) and separator."""
    head = "| " + " | ".join(first) + " | " + " | ".join(columns) + " |"
    return [head, "|---" * (len(first) + len(columns)) + "|"]


def _id_ood(line: Summary | None) -> str:
    """``ID / OOD`` PSNR differences of a summary line; ``-`` without one."""
    if line is None:
        return "-"
    return f"{fmt_ci(line['id_delta_psnr'])} / {fmt_ci(line['ood_delta_psnr'])}"


def _mean_psnr(values: dict[str, list[float]]) -> str:
    """``ID / OOD`` mean PSNR of one network's slices (:func:`psnr_by_network`)."""
    return f"{np.nanmean(values['id']):.2f} / {np.nanmean(values['ood']):.2f}"


def regime_map(regimes: Mapping[str, RegimeRun]) -> list[str]:
    """Table: a row per method (baselines last), a column per regime: ID / mean OOD PSNR
    difference to dense."""
    methods = sorted(
        {m for run in regimes.values() for m in run.summary},
        key=lambda m: (m in BASELINES, m),
    )
    lines = _header(["method"], [f"{r}: ID / OOD ΔPSNR (dB)" for r in regimes])
    for m in methods:
        cells = [_id_ood(run.summary.get(m)) for run in regimes.values()]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def seed_table(regimes: Mapping[str, RegimeRun]) -> list[str]:
    """Table: a row per regime and seed, a column per network (dense, PUN and its controls): ID /
    mean OOD PSNR of that seed (the seed-to-seed spread the slice bootstrap does not show)."""
    first = next(iter(regimes.values()))
    methods = ["dense", *(m for m in ("pun", *CONTROLS) if m in first.summary)]
    lines = _header(["regime", "seed"], methods)
    for label, run in regimes.items():
        per = psnr_by_network(run.records)
        for seed in sorted({seed for (_, seed) in per if seed is not None}):
            cells = [
                "-" if per.get((m, seed)) is None else _mean_psnr(per[(m, seed)]) for m in methods
            ]
            lines.append(f"| {label} | {seed} | " + " | ".join(cells) + " |")
    return lines


def hard_shift_table(regimes: Mapping[str, RegimeRun]) -> list[str]:
    """Table: a row per regime, a column per pruning method: the mean PSNR difference to dense
    over the shifts harder than ``id`` only (:func:`harder_suites`; an easier shift is no
    evidence of robustness)."""
    first = next(iter(regimes.values()))
    methods = [m for m in ("pun", *CONTROLS, "snip", "imp") if m in first.summary]
    lines = _header(["regime", "harder shifts"], methods)
    for label, run in regimes.items():
        hard = harder_suites(run.metrics)
        cells = []
        for m in methods:
            line = paired_summary(run.records, m, "dense", run.test_seed, hard) if hard else None
            cells.append(fmt_ci(line["ood_delta_psnr"]) if line else "-")
        lines.append(f"| {label} | {', '.join(sorted(hard))} | " + " | ".join(cells) + " |")
    return lines


def control_table(contrasts: Mapping[str, Mapping[str, Summary]]) -> list[str]:
    """Table: a row per regime, a column per control: PUN minus the control, ID / OOD PSNR
    difference (``contrasts`` from :func:`~punmri.report.regimes.pun_contrasts`)."""
    lines = _header(["regime"], [f"pun - {c}: ID / OOD (dB)" for c in CONTROLS])
    for label, per in contrasts.items():
        lines.append(f"| {label} | " + " | ".join(_id_ood(per.get(c)) for c in CONTROLS) + " |")
    return lines


def quality_table(regimes: Mapping[str, RegimeRun]) -> list[str]:
    """Table: a row per regime: mean PSNR of the classical baselines and dense in distribution
    and over the shifted suites (how good the reference network is)."""
    lines = [
        "| regime | zero-filled ID | CS-L1 ID | dense ID | zero-filled OOD | CS-L1 OOD | "
        "dense OOD |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, run in regimes.items():
        cells = []
        for part in ("id", "ood"):
            for m in (*BASELINES, "dense"):
                suites = run.metrics["methods"].get(m, {}).get("suites", {})
                values = [
                    e["psnr"]
                    for name, e in suites.items()
                    if (name == "id") == (part == "id") and e.get("psnr") is not None
                ]
                cells.append(f"{sum(values) / len(values):.2f}" if values else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def density_table(regimes: Mapping[str, RegimeRun], method: str = "pun") -> list[str]:
    """Table: a row per density of ``method`` in each regime that trained it at several: ID PSNR
    and ID / OOD difference to dense. Empty when no regime did."""
    lines = [
        "| regime | density | ID PSNR (dB) | ID ΔPSNR (dB) | OOD ΔPSNR (dB) |",
        "|---|---|---|---|---|",
    ]
    for label, run in regimes.items():
        entries = run.metrics["methods"]
        rows = [
            (e["density"], name)
            for name, e in entries.items()
            if name.split("@")[0] == method and "density" in e
        ]
        if len(rows) < 2:
            continue
        for density, name in sorted(rows):
            s = run.summary[name]
            lines.append(
                f"| {label} | {density:g} | {entries[name]['suites']['id']['psnr']:.2f}"
                f" | {fmt_ci(s['id_delta_psnr'])} | {fmt_ci(s['ood_delta_psnr'])} |"
            )
    return lines if len(lines) > 2 else []


def suite_table(run: RegimeRun) -> list[str]:
    """Table of one regime: a row per suite with its shift, its difficulty (zero-filled and dense
    PSNR) and each method's paired PSNR difference to dense."""
    metrics = run.metrics
    methods = [m for m in run.summary if m not in BASELINES]
    lines = _header(["suite", "shift", "zero-filled", "dense"], methods)
    for suite, info in metrics.get("suites", {}).items():
        cells = [
            fmt_ci(metrics["methods"][m]["suites"].get(suite, {}).get("delta_psnr"))
            for m in methods
        ]
        zf, dn = info.get("zero-filled_psnr"), info.get("dense_psnr")
        lines.append(
            f"| {suite} | {info.get('description', '')} | "
            f"{'-' if zf is None else f'{zf:.2f}'} | {'-' if dn is None else f'{dn:.2f}'} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def verdict(
    regimes: Mapping[str, RegimeRun], contrasts: Mapping[str, Mapping[str, Summary]]
) -> list[str]:
    """A bullet per regime with PUN: whether the CIs put it above, below or level with dense, in
    and out of distribution, and its differences to each control of ``contrasts``."""
    words = {1: "better than", -1: "worse than", 0: "not distinguishable from"}
    out = []
    for label, run in regimes.items():
        s = run.summary.get("pun")
        if s is None:
            continue
        idd, ood = s["id_delta_psnr"], s["ood_delta_psnr"]
        text = (
            f"- **{label}**: PUN is {words[significance(idd)]} dense in distribution "
            f"({fmt_ci(idd)} dB) and {words[significance(ood)]} dense out of distribution "
            f"({fmt_ci(ood)} dB)"
        )
        for ref, line in contrasts.get(label, {}).items():
            text += (
                f"; against `{ref}` it is {fmt_ci(line['id_delta_psnr'])} dB ID and "
                f"{fmt_ci(line['ood_delta_psnr'])} dB OOD"
            )
        out.append(text + ".")
    return out


#: Networks of the batch-normalisation tables: (name in the paired records, column label).
BATCHNORM_NETWORKS = (
    ("dense", "dense"),
    ("dense-nobn", "dense, no BN"),
    ("pun", "pun"),
    ("pun-nobn", "pun, no BN"),
    ("random-nobn", "random, no BN"),
)

#: Paired differences ``a - b`` of the batch-normalisation tables.
BATCHNORM_PAIRS = (
    ("dense-nobn", "dense"),
    ("pun-nobn", "dense-nobn"),
    ("random-nobn", "dense-nobn"),
    ("pun-nobn", "random-nobn"),
)


def batchnorm_tables(
    regimes: Mapping[str, RegimeRun], ablation: Mapping[str, RegimeRun]
) -> tuple[list[str], list[str]]:
    """The two tables comparing each regime of ``ablation`` with its run without BatchNorm.

    Returns:
        ``(per_seed, differences)``: a row per regime and seed with each network's ID / mean OOD
        PSNR and, in brackets, its :func:`max_val_drop`; and a row per regime with the paired
        differences of :data:`BATCHNORM_PAIRS` (the ablation's networks renamed ``NAME-nobn``).
    """
    per_seed = _header(["regime", "seed"], [label for _, label in BATCHNORM_NETWORKS])
    differences = _header(["regime"], [f"{a} - {b}: ID / OOD (dB)" for a, b in BATCHNORM_PAIRS])
    for label, nobn in ablation.items():
        main = regimes[label]
        records = main.records + without_batchnorm(nobn.records)
        per = psnr_by_network(records)
        for seed in sorted({s for (n, s) in per if n == "dense-nobn" and s is not None}):
            cells = []
            for name, _ in BATCHNORM_NETWORKS:
                values = per.get((name, seed))
                if values is None:
                    cells.append("-")
                    continue
                ablated = name.endswith("-nobn")
                run, method = (nobn, name.removesuffix("-nobn")) if ablated else (main, name)
                drop = max_val_drop(run.history(method, seed))
                cells.append(f"{_mean_psnr(values)} ({drop:.1f})")
            per_seed.append(f"| {label} | {seed} | " + " | ".join(cells) + " |")
        cells = [_id_ood(paired_summary(records, a, b, main.test_seed)) for a, b in BATCHNORM_PAIRS]
        differences.append(f"| {label} | " + " | ".join(cells) + " |")
    return per_seed, differences


__all__ = [
    "BATCHNORM_NETWORKS",
    "BATCHNORM_PAIRS",
    "batchnorm_tables",
    "control_table",
    "density_table",
    "hard_shift_table",
    "quality_table",
    "regime_map",
    "seed_table",
    "suite_table",
    "verdict",
]
