"""Markdown tables and sentences of the generalization document (``docs/RESULTS.md``).

Every function takes the study's runs as ``{label: RegimeRun}`` (label = the regime name shown in
the document, in the order the document lists them) and returns Markdown lines; differences are
shown as ``mean [ci_low, ci_high]`` in dB (:func:`~punmri.report.markdown.fmt_ci`). Networks
tested at their final training step (``NAME~final``) appear in the regime map and the verdict's
over-fitting lines; the other tables show the best-validation checkpoints.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..evaluate.checkpoints import checkpoint_name, split_checkpoint
from ..evaluate.summary import replicate_suites
from .markdown import fmt_ci, fmt_spread
from .regimes import (
    BASELINES,
    CONTROLS,
    OVERFIT_DB,
    VERDICT_REFERENCES,
    RegimeRun,
    Summary,
    harder_suites,
    max_val_drop,
    overfitting,
    paired_summary,
    psnr_by_network,
    significance,
    without_batchnorm,
)

#: A verdict cell's word for the sign of its CI (:func:`~punmri.report.regimes.significance`).
WORDS = {1: "better", -1: "worse", 0: "level"}


def _header(first: list[str], columns: list[str]) -> list[str]:
    """A table's header row (the ``first`` columns, then ``columns``) and separator."""
    head = "| " + " | ".join(first) + " | " + " | ".join(columns) + " |"
    return [head, "|---" * (len(first) + len(columns)) + "|"]


def _seed_range(line: Summary, key: str) -> str:
    """`` (seeds lo..hi)``, the range of the per-seed mean differences of one entry of a
    summary line; empty with one seed."""
    spread = fmt_spread(line.get(f"{key}_seeds"), sd=False)
    return "" if spread == "-" else f" (seeds {spread})"


def _ci_seeds(line: Summary, key: str) -> str:
    """``mean [lo, hi] (seeds lo..hi)`` of one entry of a summary line."""
    return fmt_ci(line[key]) + _seed_range(line, key)


def _id_ood(line: Summary | None) -> str:
    """``ID / OOD`` PSNR differences of a summary line with their seed ranges; ``-`` without
    one."""
    if line is None:
        return "-"
    return f"{_ci_seeds(line, 'id_delta_psnr')} / {_ci_seeds(line, 'ood_delta_psnr')}"


def _mean_psnr(values: dict[str, list[float]]) -> str:
    """``ID / OOD`` mean PSNR of one network's slices (:func:`psnr_by_network`)."""
    return f"{np.nanmean(values['id']):.2f} / {np.nanmean(values['ood']):.2f}"


def _present(regimes: Mapping[str, RegimeRun], candidates: Iterable[str]) -> list[str]:
    """The ``candidates`` (in their order) that some regime compares with dense."""
    have = {m for run in regimes.values() for m in run.summary}
    return [m for m in candidates if m in have]


def _verdict_cell(line: Summary | None, key: str, mark: str = "") -> str:
    """``+m [lo, hi] better`` (or ``worse`` / ``level``) of one entry of a summary line, with
    ``mark`` after the word, then its seed range."""
    if line is None:
        return "-"
    return f"{fmt_ci(line[key])} {WORDS[significance(line[key])]}{mark}{_seed_range(line, key)}"


#: Bootstrap replicates of the Bonferroni-level intervals of the verdict table (their tails
#: hold 0.05 / (2 N) of the replicates: 2000 would leave a handful to a tail).
BONFERRONI_BOOT = 20000

_KEYS = ("id_delta_psnr", "ood_delta_psnr")


def _bonferroni_holds(run: RegimeRun, ref: str, key: str, sign: int, level: float) -> bool:
    """Whether PUN minus ``ref`` keeps ``sign`` when its interval is drawn at ``level``."""
    line = paired_summary(
        run.records, "pun", ref, run.test_seed, level=level, n_boot=BONFERRONI_BOOT
    )
    return line is not None and significance(line[key]) == sign


def verdict_table(regimes: Mapping[str, RegimeRun]) -> list[str]:
    """Table: a row per regime, ID and OOD columns per reference of
    :data:`~punmri.report.regimes.VERDICT_REFERENCES`: PUN minus it at the best-validation
    checkpoints (over the seeds both trained), and whether PUN beats all of them in both; then
    a footnote. A word marked ``†`` (better / worse) also holds when every interval of the table
    is drawn at the Bonferroni level ``1 - 0.05 / N`` for its ``N`` tested comparisons."""
    columns = [f"pun - {r}: {part}" for r in VERDICT_REFERENCES for part in ("ID", "OOD")]
    lines = _header(["regime"], [*columns, "PUN beats all three, ID and OOD?"])
    rows = {
        label: {
            ref: paired_summary(run.records, "pun", ref, run.test_seed)
            for ref in VERDICT_REFERENCES
        }
        for label, run in regimes.items()
    }
    n_tests = sum(line is not None for row in rows.values() for line in row.values()) * len(_KEYS)
    level = 1 - 0.05 / max(n_tests, 1)
    for label, run in regimes.items():
        cells, signs = [], []
        for ref, line in rows[label].items():
            for key in _KEYS:
                sign = None if line is None else significance(line[key])
                held = bool(sign) and _bonferroni_holds(run, ref, key, sign, level)
                cells.append(_verdict_cell(line, key, "†" if held else ""))
                signs.append(sign)
        tested = [s for s in signs if s is not None]
        missing = [r for r, s in zip(VERDICT_REFERENCES, signs[::2], strict=True) if s is None]
        answer = "yes" if tested and tested.count(1) == len(tested) else "no"
        if missing and answer == "yes":
            answer = "yes, where tested"
        answer += f": better in {tested.count(1)} of {len(tested)}, worse in {tested.count(-1)}"
        if missing:
            answer += f" (no {', '.join(missing)})"
        lines.append(f"| {label} | " + " | ".join([*cells, answer]) + " |")
    note = (
        f"† also at the Bonferroni level: the interval at {100 * level:.2f}% (95% shared by "
        f"the table's {n_tests} comparisons; {BONFERRONI_BOOT} bootstrap replicates) excludes 0 "
        "as well. Unmarked better / worse calls are per comparison: with this many, about "
        f"{0.05 * n_tests:.1f} could exclude 0 by chance if no difference were real."
    )
    return [*lines, "", note]


def overfitting_lines(regimes: Mapping[str, RegimeRun]) -> list[str]:
    """A bullet per regime with dense: whether dense over-fits (its final-step validation PSNR
    below its best, :func:`~punmri.report.regimes.overfitting`), what its final-step checkpoint
    loses on the test slices, and PUN minus dense at the final-step checkpoints."""
    out = []
    for label, run in regimes.items():
        fit = overfitting(run)
        if fit is None:
            continue
        verb = "over-fits" if fit.overfits else "does not over-fit"
        text = (
            f"- **{label}**: dense {verb}: its validation PSNR at the final step is "
            f"{fit.mean_drop:.2f} dB below its best (mean over {len(fit.seeds)} seeds; "
            f"{fit.n_over} of {len(fit.seeds)} more than {OVERFIT_DB:g} dB below; largest fall "
            f"between consecutive checks {max(fit.falls):.2f} dB)."
        )
        if fit.final is None:
            out.append(text + " Final-step checkpoints were not tested (`evaluate.checkpoints`).")
            continue
        final = paired_summary(
            run.records,
            checkpoint_name("pun", "final"),
            checkpoint_name("dense", "final"),
            run.test_seed,
        )
        text += (
            f" On the test slices `dense~final` - `dense` is {fmt_ci(fit.final['id_delta_psnr'])} "
            f"dB ID and {fmt_ci(fit.final['ood_delta_psnr'])} dB OOD."
        )
        if final is not None:
            idd, ood = final["id_delta_psnr"], final["ood_delta_psnr"]
            text += (
                f" At the final-step checkpoints `pun~final` - `dense~final` is {fmt_ci(idd)} dB "
                f"ID ({WORDS[significance(idd)]}) and {fmt_ci(ood)} dB OOD "
                f"({WORDS[significance(ood)]})."
            )
        out.append(text)
    return out


def _networks(cfg: Mapping[str, Any]) -> str:
    """The methods of a run's config grouped by their number of seeds (``5 seeds: dense,
    pun; 3 seeds: ...``)."""
    seeds = cfg.get("method_seeds") or {}
    groups: dict[int, list[str]] = {}
    for method in cfg["methods"]:
        groups.setdefault(len(seeds.get(method) or cfg["seeds"]), []).append(method)
    return "; ".join(f"{n} seeds: {', '.join(m)}" for n, m in sorted(groups.items(), reverse=True))


def _norm(model: Mapping[str, Any]) -> str:
    """The denoiser's normalisation in a saved model config (older configs: ``batchnorm``)."""
    return model.get("norm") or ("batch" if model.get("batchnorm", True) else "none")


def regime_settings(regimes: Mapping[str, RegimeRun]) -> list[str]:
    """Table: a row per regime with what its run's config sets: simulation, SNR, training
    slices, augmentation, steps, learning-rate schedule, early stopping, denoiser, tested
    checkpoints and the networks with their seed counts."""
    lines = _header(
        ["regime"],
        [
            "physics",
            "SNR (dB)",
            "training slices",
            "augmentation",
            "steps",
            "schedule",
            "early stopping",
            "denoiser",
            "checkpoints",
            "networks",
        ],
    )
    for label, run in regimes.items():
        cfg = run.config
        d, t, m = cfg["data"], cfg["train"], cfg["model"]
        cells = [
            "fresh" if cfg["physics"]["fresh"] else "fixed",
            f"{cfg['physics']['snr_db']:g}",
            str(d.get("max_train_slices") or "all"),
            "yes" if t.get("augment", True) else "no",
            str(t["steps"]),
            str(t.get("schedule", "cosine")),
            f"patience {t['patience']}" if t.get("patience") else "none",
            f"{m['denoiser']} {m['channels']}x{m['depth']}, norm {_norm(m)}",
            ", ".join(run.checkpoints),
            _networks(cfg),
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def regime_map(regimes: Mapping[str, RegimeRun]) -> list[str]:
    """Table: a row per method (best-validation checkpoints first, then the final-step ones,
    baselines last), a column per regime: ID / mean OOD PSNR difference to dense."""
    methods = sorted(
        {m for run in regimes.values() for m in run.summary},
        key=lambda m: (m in BASELINES, split_checkpoint(m)[1] != "best", m),
    )
    lines = _header(["method"], [f"{r}: ID / OOD ΔPSNR (dB)" for r in regimes])
    for m in methods:
        cells = [_id_ood(run.summary.get(m)) for run in regimes.values()]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def seed_table(regimes: Mapping[str, RegimeRun]) -> list[str]:
    """Table: a row per regime and seed, a column per network (dense, PUN and its controls): ID /
    mean OOD PSNR of that seed (the seed-to-seed spread the slice bootstrap does not show)."""
    methods = ["dense", *_present(regimes, ("pun", *CONTROLS))]
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
    methods = _present(regimes, ("pun", "pun-uniform", *CONTROLS, "snip", "imp"))
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


#: The masks :func:`mask_table` describes, in its row order (those a run has).
MASK_METHODS = ("pun", "pun-uniform", "random", "snip")
#: Layers listed one by one in :func:`mask_table`; deeper denoisers show their extremes.
MAX_LAYERS_LISTED = 8


def _mask_files(run: RegimeRun, method: str) -> list[dict[str, Any]]:
    """The ``mask.json`` of every seed of ``method`` in ``run`` that has one."""
    paths = sorted((run.run_dir / "models" / method).glob("seed*/mask.json"))
    return [json.loads(path.read_text()) for path in paths]


def _kept_per_layer(masks: list[dict[str, Any]]) -> str:
    """Kept percentage per layer, mean over the masks, in layer order; with more than
    :data:`MAX_LAYERS_LISTED` layers only the smallest and largest with their names."""
    names = [layer["name"] for layer in masks[0]["layers"]]
    kept = {
        name: 100 * float(np.mean([m["layers"][i]["density"] for m in masks]))
        for i, name in enumerate(names)
    }
    if len(kept) <= MAX_LAYERS_LISTED:
        return " / ".join(f"{v:.1f}" for v in kept.values())
    low, high = min(kept, key=kept.get), max(kept, key=kept.get)
    return f"{len(kept)} layers: {kept[low]:.1f} (`{low}`) to {kept[high]:.1f} (`{high}`)"


def mask_table(regimes: Mapping[str, RegimeRun]) -> list[str]:
    """Table: a row per regime and mask method of :data:`MASK_METHODS` (read from each seed's
    ``mask.json``): the kept percentage of every layer and the loss of the *untrained* network
    on held-out training batches, dense, under the mask and under layer-shuffled copies of it
    (the loss PUN's search minimises; means over seeds). Empty when no run has a mask."""
    lines = _header(
        ["regime", "mask", "seeds"],
        [
            "kept per layer (%), in the order of the network",
            "untrained loss: dense / mask / shuffled",
        ],
    )
    rows = []
    for label, run in regimes.items():
        for method in MASK_METHODS:
            masks = _mask_files(run, method)
            if not masks:
                continue
            checks = [m["metadata"]["check"] for m in masks if "check" in m["metadata"]]
            loss = "-"
            if checks:
                means = [
                    np.mean([c[key] for c in checks])
                    for key in ("loss_dense", "loss_mask", "loss_shuffled_mean")
                ]
                loss = " / ".join(f"{v:.4f}" for v in means)
            cells = [label, f"`{method}`", str(len(masks)), _kept_per_layer(masks), loss]
            rows.append("| " + " | ".join(cells) + " |")
    return [*lines, *rows] if rows else []


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
        same = replicate_suites(run.metrics)
        for part in ("id", "ood"):
            for m in (*BASELINES, "dense"):
                suites = run.metrics["methods"].get(m, {}).get("suites", {})
                values = [
                    e["psnr"]
                    for name, e in suites.items()
                    if (name == "id") == (part == "id")
                    and name not in same
                    and e.get("psnr") is not None
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
    PSNR) and each method's paired PSNR difference to dense (best-validation checkpoints)."""
    metrics = run.metrics
    methods = [m for m in run.summary if m not in BASELINES and split_checkpoint(m)[1] == "best"]
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
    "WORDS",
    "batchnorm_tables",
    "control_table",
    "density_table",
    "hard_shift_table",
    "overfitting_lines",
    "quality_table",
    "regime_map",
    "regime_settings",
    "seed_table",
    "suite_table",
    "verdict",
    "verdict_table",
]
