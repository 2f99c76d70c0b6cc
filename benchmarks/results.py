"""Generalization results -> docs/RESULTS.md (and docs/figures/results/).

Runs ``configs/results.yaml`` once per training regime (resumable ``punmri run`` directories in
``runs/results/REGIME``), then writes the regime map (ID and mean OOD PSNR difference to dense,
with bootstrap 95% CIs, per method), each regime's per-suite table with suite difficulty, and the
figures. Regimes: simulation *fixed* per training slice vs *fresh* per sample, and the full
training slab vs a small training set. In the ``--batchnorm-regimes`` (default fixed-full and
fresh-small) dense, PUN and random are also trained without BatchNorm (``runs/results/REGIME-nobn``)
and compared with the main runs.

Usage: ``python benchmarks/results.py [--regimes fixed-small ...] [--jobs N] [--config FILE]
[overrides]``; with ``--jobs N`` the regimes run N at a time, each with ``cores / N`` threads and
its output in ``runs/results/REGIME.log``; ``--from-runs`` only rebuilds the reports and the
document from finished runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _docs import punmri_run

from punmri.evaluate.statistics import split_seed, suite_statistics, summary_line
from punmri.evaluate.tables import read_slice_csv
from punmri.io import write_text_atomic
from punmri.pipeline import report_run
from punmri.report.figures import summary_bars
from punmri.report.markdown import cost_table, fmt_ci, training_table
from punmri.specs import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
SMALL_SLICES = 8
REGIMES = {
    "fixed-small": ["physics.fresh=false", f"data.max_train_slices={SMALL_SLICES}"],
    "fresh-small": ["physics.fresh=true", f"data.max_train_slices={SMALL_SLICES}"],
    "fixed-full": ["physics.fresh=false", "data.max_train_slices=0"],
    "fresh-full": ["physics.fresh=true", "data.max_train_slices=0"],
}


#: The batch-normalisation ablation: dense, PUN and its random control with a ResNet denoiser
#: without BatchNorm, trained like the main grid (run directories ``runs/results/REGIME-nobn``).
NO_BATCHNORM_METHODS = ("dense", "pun", "random")
NO_BATCHNORM = [
    "model.batchnorm=false",
    f"methods=[{','.join(NO_BATCHNORM_METHODS)}]",
    "prune.densities=[]",
    "evaluate.baselines=[zero-filled]",
]


def run_regime(config: str, out: Path, overrides: list[str], log: Path | None = None) -> dict:
    """Run (or resume) one regime into ``out`` and return its metrics."""
    punmri_run(config, out, [f"name=results-{out.name}", *overrides], log=log)
    return json.loads((out / "metrics.json").read_text())


def run_regimes(
    config: str, runs: dict[str, Path], overrides: dict[str, list[str]], jobs: int
) -> dict[str, dict]:
    """Run every run of ``runs`` (with its ``overrides``), ``jobs`` at a time (the CPU threads
    split between them)."""
    if jobs <= 1:
        return {r: run_regime(config, out, overrides[r]) for r, out in runs.items()}
    threads = f"train.threads={max(1, (os.cpu_count() or 1) // jobs)}"
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            r: pool.submit(
                run_regime, config, out, [threads, *overrides[r]], out.parent / f"{out.name}.log"
            )
            for r, out in runs.items()
        }
        return {r: f.result() for r, f in futures.items()}


def _significant(e: dict | None) -> int:
    """+1 / -1 when the 95% CI excludes 0 above / below, else 0."""
    if not e or e.get("ci_low") is None or math.isnan(e["ci_low"]):
        return 0
    return 1 if e["ci_low"] > 0 else -1 if e["ci_high"] < 0 else 0


def regime_map(results: dict[str, dict]) -> list[str]:
    """Table: method x regime, ID and mean OOD PSNR difference to dense."""
    regimes = list(results)
    methods = sorted(
        {m for r in results.values() for m in r.get("summary", {})},
        key=lambda m: (m in ("zero-filled", "cs-l1"), m),
    )
    lines = [
        "| method | " + " | ".join(f"{r}: ID / OOD ΔPSNR (dB)" for r in regimes) + " |",
        "|---" * (len(regimes) + 1) + "|",
    ]
    for m in methods:
        cells = []
        for r in regimes:
            s = results[r].get("summary", {}).get(m)
            cells.append(
                "-"
                if s is None
                else f"{fmt_ci(s['id_delta_psnr'])} / {fmt_ci(s['ood_delta_psnr'])}"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _pairwise(
    records: list, method: str, reference: str, seed: int, suites: set[str] | None = None
) -> dict | None:
    """Summary line (ID and mean OOD paired PSNR difference, CIs) of ``method - reference``
    from per-slice records, over ``suites`` (default all; ``id`` is always kept); None when
    either method is missing."""
    names = {split_seed(r.method)[0] for r in records}
    if method not in names or reference not in names:
        return None
    if suites is not None:
        records = [r for r in records if r.suite == "id" or r.suite in suites]
    stats = suite_statistics(records, [method], reference=reference, seed=seed)
    return summary_line(stats, method, seed=seed)


def _slices(run_dir: Path) -> list:
    """The per-slice records of a run."""
    return read_slice_csv(run_dir / "eval" / "slices.csv")


def _psnr_by_network(records: list) -> dict[tuple[str, int | None], dict[str, list[float]]]:
    """Per (method, seed): the PSNR of every ``id`` slice and of every shifted-suite slice."""
    per: dict[tuple[str, int | None], dict[str, list[float]]] = {}
    for r in records:
        part = "id" if r.suite == "id" else "ood"
        per.setdefault(split_seed(r.method), {"id": [], "ood": []})[part].append(r.psnr)
    return per


def harder_suites(metrics: dict) -> set[str]:
    """Shifted suites whose zero-filled PSNR is below the ``id`` suite's (harder inputs)."""
    info = metrics.get("suites", {})
    ref = info.get("id", {}).get("zero-filled_psnr")
    if ref is None:
        return set()
    return {s for s, i in info.items() if s != "id" and i.get("zero-filled_psnr", math.inf) < ref}


def seed_table(results: dict[str, dict], runs: dict[str, Path]) -> list[str]:
    """Table: per regime and method, the ID and mean-OOD PSNR of each seed (seed-to-seed spread,
    which the slice bootstrap does not show)."""
    first = next(iter(results.values()))
    methods = ["dense", *(m for m in ("pun", *CONTROLS) if m in first.get("summary", {}))]
    lines = ["| regime | seed | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
    for regime in results:
        per = _psnr_by_network(_slices(runs[regime]))
        seeds = sorted({seed for (_, seed) in per if seed is not None})
        for seed in seeds:
            cells = []
            for m in methods:
                v = per.get((m, seed))
                cells.append(
                    "-" if v is None else f"{np.nanmean(v['id']):.2f} / {np.nanmean(v['ood']):.2f}"
                )
            lines.append(f"| {regime} | {seed} | " + " | ".join(cells) + " |")
    return lines


def hard_shift_table(results: dict[str, dict], runs: dict[str, Path]) -> list[str]:
    """Table: per regime and method, the mean PSNR difference to dense over the shifts that are
    harder than ``id`` only (an easier shift is no evidence of robustness)."""
    first = next(iter(results.values()))
    methods = [m for m in ("pun", *CONTROLS, "snip", "imp") if m in first.get("summary", {})]
    lines = [
        "| regime | harder shifts | " + " | ".join(methods) + " |",
        "|---" * (len(methods) + 2) + "|",
    ]
    for regime, metrics in results.items():
        hard = harder_suites(metrics)
        seed = metrics["config"]["evaluate"]["test_seed"]
        records = _slices(runs[regime])
        cells = []
        for m in methods:
            line = _pairwise(records, m, "dense", seed, hard) if hard else None
            cells.append(fmt_ci(line["ood_delta_psnr"]) if line else "-")
        lines.append(f"| {regime} | {', '.join(sorted(hard))} | " + " | ".join(cells) + " |")
    return lines


CONTROLS = ("pun-shuffled", "random")


def controls(results: dict[str, dict], runs: dict[str, Path]) -> dict[str, dict[str, dict]]:
    """Per regime, PUN minus each control (paired over slices and seeds)."""
    out: dict[str, dict[str, dict]] = {}
    for regime, metrics in results.items():
        seed = metrics["config"]["evaluate"]["test_seed"]
        out[regime] = {}
        for ref in CONTROLS:
            line = _pairwise(_slices(runs[regime]), "pun", ref, seed)
            if line is not None:
                out[regime][ref] = line
    return out


def verdict(results: dict[str, dict], contrasts: dict[str, dict[str, dict]]) -> list[str]:
    """Plain statements of what the CIs say about PUN vs dense and vs its controls, per regime."""
    words = {1: "better than", -1: "worse than", 0: "not distinguishable from"}
    out = []
    for regime, metrics in results.items():
        s = metrics.get("summary", {}).get("pun")
        if s is None:
            continue
        idd, ood = s["id_delta_psnr"], s["ood_delta_psnr"]
        text = (
            f"- **{regime}**: PUN is {words[_significant(idd)]} dense in distribution "
            f"({fmt_ci(idd)} dB) and {words[_significant(ood)]} dense out of distribution "
            f"({fmt_ci(ood)} dB)"
        )
        for ref, line in contrasts.get(regime, {}).items():
            text += (
                f"; against `{ref}` it is {fmt_ci(line['id_delta_psnr'])} dB ID and "
                f"{fmt_ci(line['ood_delta_psnr'])} dB OOD"
            )
        out.append(text + ".")
    return out


def control_table(contrasts: dict[str, dict[str, dict]]) -> list[str]:
    """Table: regime x control, PUN minus control (ID / OOD ΔPSNR with CIs)."""
    lines = [
        "| regime | " + " | ".join(f"pun - {c}: ID / OOD (dB)" for c in CONTROLS) + " |",
        "|---" * (len(CONTROLS) + 1) + "|",
    ]
    for regime, per in contrasts.items():
        cells = [
            f"{fmt_ci(per[c]['id_delta_psnr'])} / {fmt_ci(per[c]['ood_delta_psnr'])}"
            if c in per
            else "-"
            for c in CONTROLS
        ]
        lines.append(f"| {regime} | " + " | ".join(cells) + " |")
    return lines


def quality_table(results: dict[str, dict]) -> list[str]:
    """Table: per regime, ID PSNR of the classical baselines and dense, and the mean PSNR over
    the shifted suites (how good the reference network is)."""
    lines = [
        "| regime | zero-filled ID | CS-L1 ID | dense ID | zero-filled OOD | CS-L1 OOD | "
        "dense OOD |",
        "|---|---|---|---|---|---|---|",
    ]
    for regime, metrics in results.items():
        cells = []
        for part in ("id", "ood"):
            for m in ("zero-filled", "cs-l1", "dense"):
                suites = metrics["methods"].get(m, {}).get("suites", {})
                values = [
                    e["psnr"]
                    for name, e in suites.items()
                    if (name == "id") == (part == "id") and e.get("psnr") is not None
                ]
                cells.append(f"{sum(values) / len(values):.2f}" if values else "-")
        lines.append(f"| {regime} | " + " | ".join(cells) + " |")
    return lines


def density_table(results: dict[str, dict], method: str = "pun") -> list[str]:
    """Table: for each regime that trained ``method`` at several densities, ID PSNR and ID/OOD
    difference to dense at each density."""
    lines = [
        "| regime | density | ID PSNR (dB) | ID ΔPSNR (dB) | OOD ΔPSNR (dB) |",
        "|---|---|---|---|---|",
    ]
    for regime, metrics in results.items():
        rows = [
            (e["density"], name)
            for name, e in metrics["methods"].items()
            if name.split("@")[0] == method and "density" in e
        ]
        if len(rows) < 2:
            continue
        for density, name in sorted(rows):
            s = metrics["summary"][name]
            lines.append(
                f"| {regime} | {density:g} | {metrics['methods'][name]['suites']['id']['psnr']:.2f}"
                f" | {fmt_ci(s['id_delta_psnr'])} | {fmt_ci(s['ood_delta_psnr'])} |"
            )
    return lines if len(lines) > 2 else []


def max_val_drop(history: list[dict]) -> float:
    """Largest fall of validation PSNR (dB) between consecutive checks in a training history
    (``TrainResult.history``): the training instability the seed-by-seed table shows."""
    vals = [h["val_psnr"] for h in history if "val_psnr" in h]
    return max([a - b for a, b in zip(vals[:-1], vals[1:], strict=True)] + [0.0])


def _history(run_dir: Path, method: str, seed: int) -> list[dict]:
    """The training history of one finished network of a run."""
    done = ModelSpec(method, seed).directory(run_dir) / "train" / "done.json"
    return json.loads(done.read_text())["history"]


def _without_batchnorm(records: list) -> list:
    """The trained networks' records of an ablation run, renamed ``NAME-nobn`` (``#sS`` kept)."""
    out = []
    for r in records:
        name, _ = split_seed(r.method)
        if name in NO_BATCHNORM_METHODS:
            out.append(dataclasses.replace(r, method=name + "-nobn" + r.method[len(name) :]))
    return out


def batchnorm_section(
    results: dict[str, dict], runs: dict[str, Path], ablation: dict[str, Path]
) -> list[str]:
    """Dense, PUN and random with and without BatchNorm in the denoiser: per seed ID / mean OOD
    PSNR and the largest validation drop, then paired differences across the two runs."""
    nets = [("dense", "dense"), ("dense-nobn", "dense, no BN"), ("pun", "pun"),
            ("pun-nobn", "pun, no BN"), ("random-nobn", "random, no BN")]  # fmt: skip
    seeds_table = [
        "| regime | seed | " + " | ".join(label for _, label in nets) + " |",
        "|---" * (len(nets) + 2) + "|",
    ]
    pairs = [
        ("dense-nobn", "dense"),
        ("pun-nobn", "dense-nobn"),
        ("random-nobn", "dense-nobn"),
        ("pun-nobn", "random-nobn"),
    ]
    diff_table = [
        "| regime | " + " | ".join(f"{a} - {b}: ID / OOD (dB)" for a, b in pairs) + " |",
        "|---" * (len(pairs) + 1) + "|",
    ]
    for regime, nobn in ablation.items():
        records = _slices(runs[regime]) + _without_batchnorm(_slices(nobn))
        per = _psnr_by_network(records)
        for seed in sorted({s for (n, s) in per if n == "dense-nobn" and s is not None}):
            cells = []
            for name, _ in nets:
                v = per.get((name, seed))
                ablated = name.endswith("-nobn")
                run_dir, method = (nobn, name[:-5]) if ablated else (runs[regime], name)
                cells.append(
                    "-"
                    if v is None
                    else f"{np.nanmean(v['id']):.2f} / {np.nanmean(v['ood']):.2f} "
                    f"({max_val_drop(_history(run_dir, method, seed)):.1f})"
                )
            seeds_table.append(f"| {regime} | {seed} | " + " | ".join(cells) + " |")
        test_seed = results[regime]["config"]["evaluate"]["test_seed"]
        cells = []
        for a, b in pairs:
            line = _pairwise(records, a, b, test_seed)
            cells.append(
                "-" if line is None else
                f"{fmt_ci(line['id_delta_psnr'])} / {fmt_ci(line['ood_delta_psnr'])}"
            )  # fmt: skip
        diff_table.append(f"| {regime} | " + " | ".join(cells) + " |")
    return [
        "## Dense training without batch normalisation",
        "",
        "The same training with a denoiser without BatchNorm (`model.batchnorm=false`; dense, PUN "
        f"and `random` only; run directories {_paths(ablation)}), to test whether the unstable "
        "dense trainings come from batch statistics at batch size 2 in a denoiser shared by all "
        "unrolls. ID / mean OOD PSNR (dB) per seed, in brackets the largest fall of validation "
        "PSNR between consecutive checks (dB):",
        "",
        *seeds_table,
        "",
        "Paired differences (same slices and seeds, bootstrap 95% CIs):",
        "",
        *diff_table,
        "",
    ]


def _paths(runs: dict[str, Path]) -> str:
    shown = [p.relative_to(ROOT) if p.is_relative_to(ROOT) else p for p in runs.values()]
    return ", ".join(f"`{p}`" for p in shown)


def suite_table(metrics: dict) -> list[str]:
    """Per-suite difficulty and PSNR differences for one regime."""
    methods = [m for m in metrics.get("summary", {}) if m not in ("zero-filled", "cs-l1")]
    lines = [
        "| suite | shift | zero-filled | dense | " + " | ".join(methods) + " |",
        "|---" * (4 + len(methods)) + "|",
    ]
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


REGIME_FIGURES = ("delta_psnr.png", "density.png", "layer_density.png", "training.png")


def write_doc(
    results: dict[str, dict],
    runs: dict[str, Path],
    command: str,
    doc: Path,
    discussion: Path | None = None,
    ablation: dict[str, Path] | None = None,
) -> None:
    """Compose ``doc`` (docs/RESULTS.md) from the regimes' metrics, per-slice CSVs and figures;
    ``discussion`` (Markdown, hand-written about these numbers) is included when it exists;
    ``ablation`` maps regimes to their run without BatchNorm (:data:`NO_BATCHNORM`)."""
    figures = doc.parent / "figures" / "results"
    figures.mkdir(parents=True, exist_ok=True)
    first = next(iter(results.values()))
    cfg = first["config"]
    contrasts = controls(results, runs)
    bars = [m for m in ("pun", "pun-shuffled", "random", "snip", "imp") if m in first["summary"]]
    summary_bars(
        {r: m.get("summary", {}) for r, m in results.items()}, bars, figures / "regimes.png"
    )
    lines = [
        "# Does pruning at initialisation (PUN) generalise better than dense MoDL?",
        "",
        f"Generated by `{command}` from the run directories {_paths(runs)}.",
        "",
        f"Setting: `{cfg['data']['source']}` {cfg['data']['resolution_mm']} mm "
        f"{cfg['data']['view']} slices "
        f"{cfg['data']['image_size'][0]}x{cfg['data']['image_size'][1]}, "
        f"{cfg['physics']['coils']} coils, {cfg['physics']['mask_kind']} "
        f"{cfg['physics']['acceleration']:g}x, SNR {cfg['physics']['snr_db']:g} dB; MoDL "
        f"{cfg['model']['denoiser']} {cfg['model']['channels']}x{cfg['model']['depth']}, "
        f"K={cfg['model']['unrolls']}, CG={cfg['model']['cg_iterations']}; Adam lr "
        f"{cfg['train']['lr']:g}, batch {cfg['train']['batch_size']}, training to a validation "
        f"plateau (validation every {cfg['train']['val_every']} steps, patience "
        f"{cfg['train']['patience']}, cap {cfg['train']['steps']} steps; the best-validation "
        f"checkpoint is tested); seeds {cfg['seeds']}; pruning at density "
        f"{cfg['prune']['density']:g} (PUN also at {cfg['prune']['densities']} in "
        f"{', '.join(r for r in results if len(density_table({r: results[r]})) > 2) or 'none'})."
        " Regimes: `fixed` = one undersampling mask, phase and coil set per training slice drawn "
        "once, `fresh` = redrawn for every sample; `full` = the whole training slab, `small` = "
        f"{SMALL_SLICES} evenly spaced training slices.",
        "",
        "Differences are paired (same slices, same seeds) mean PSNR differences with percentile "
        "bootstrap 95% confidence intervals (slices resampled, a slice's seeds kept together); "
        "OOD is the mean over the shifted suites, each shift weighted equally. `pun-shuffled` is "
        "PUN's mask shuffled within each layer (the same per-layer counts): the control that "
        "tells whether PUN's choice of weights matters or only its layer allocation. `random` is "
        "a uniform per-layer random mask.",
        "",
        "## Answer",
        "",
        *verdict(results, contrasts),
    ]
    if ablation:
        nobn = {f"{r} without BatchNorm": p for r, p in ablation.items()}
        nobn_results = {k: json.loads((p / "metrics.json").read_text()) for k, p in nobn.items()}
        lines += verdict(nobn_results, controls(nobn_results, nobn))
    lines.append("")
    if discussion is not None and discussion.is_file():
        lines += [discussion.read_text().strip(), ""]
    lines += [
        "## Regime map: difference to dense",
        "",
        *regime_map(results),
        "",
        "![ID and OOD difference to dense per regime](figures/results/regimes.png)",
        "",
        "## Only the shifts harder than `id`",
        "",
        "Mean PSNR difference to dense (dB) over the shifted suites whose zero-filled PSNR is "
        "below the `id` suite's:",
        "",
        *hard_shift_table(results, runs),
        "",
        "## Seed by seed",
        "",
        "ID / mean OOD PSNR (dB) of each seed's network (the confidence intervals above resample "
        "slices, not seeds):",
        "",
        *seed_table(results, runs),
        "",
        "## PUN against its controls",
        "",
        *control_table(contrasts),
        "",
        "## How good the reference is",
        "",
        "Mean PSNR (dB) in distribution and over the shifted suites:",
        "",
        *quality_table(results),
        "",
    ]
    sweep = density_table(results)
    if sweep:
        lines += ["## PUN at other densities", "", *sweep, ""]
    if ablation:
        lines += batchnorm_section(results, runs, ablation)
    for regime, metrics in results.items():
        lines += [
            f"## Regime `{regime}`",
            "",
            "Per-suite difficulty (zero-filled and dense PSNR) and paired PSNR difference to "
            "dense:",
            "",
            *suite_table(metrics),
            "",
            "Training (the final checkpoint's validation PSNR shows the over-fitting that early "
            "stopping avoided):",
            "",
            training_table(metrics),
            "",
            "Cost per network (mean over seeds):",
            "",
            cost_table(metrics),
            "",
        ]
        for fig in REGIME_FIGURES:
            src = runs[regime] / "figures" / fig
            if src.is_file():
                dst = figures / f"{regime}_{fig}"
                shutil.copyfile(src, dst)
                lines += [f"![{regime} {fig}](figures/results/{dst.name})", ""]
    write_text_atomic(doc, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/results.yaml")
    parser.add_argument("--out", default="runs/results")
    parser.add_argument("--doc", default="docs/RESULTS.md", help="Markdown file to write")
    parser.add_argument(
        "--discussion",
        default="benchmarks/results_discussion.md",
        help="hand-written interpretation included under the answer (when the file exists)",
    )
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--jobs", type=int, default=1, help="regimes run at the same time")
    parser.add_argument(
        "--sweep-regimes",
        nargs="*",
        default=["fixed-small"],
        choices=list(REGIMES),
        help="regimes that also train prune.densities (the others only the headline density)",
    )
    parser.add_argument(
        "--batchnorm-regimes",
        nargs="*",
        default=["fixed-full", "fresh-small"],
        choices=list(REGIMES),
        help=f"regimes also trained without BatchNorm ({', '.join(NO_BATCHNORM_METHODS)}) "
        "into OUT/REGIME-nobn",
    )
    parser.add_argument(
        "--from-runs",
        action="store_true",
        help="train nothing: rebuild each regime's metrics and report from its per-slice results "
        "(`punmri report`) and write the document",
    )
    parser.add_argument("overrides", nargs="*", help="extra config overrides for every regime")
    args = parser.parse_args()
    runs = {r: ROOT / args.out / r for r in args.regimes}
    overrides = {
        r: [*REGIMES[r], *([] if r in args.sweep_regimes else ["prune.densities=[]"])]
        for r in args.regimes
    }
    ablation = {r: ROOT / args.out / f"{r}-nobn" for r in args.batchnorm_regimes if r in runs}
    every = {**runs, **{f"{r}-nobn": out for r, out in ablation.items()}}
    overrides.update({f"{r}-nobn": [*REGIMES[r], *NO_BATCHNORM] for r in ablation})
    overrides = {r: [*o, *args.overrides] for r, o in overrides.items()}
    if args.from_runs:
        done = {r: report_run(out, progress=False) for r, out in every.items()}
    else:
        done = run_regimes(args.config, every, overrides, args.jobs)
    results = {r: done[r] for r in runs}
    command = "python benchmarks/results.py " + " ".join(sys.argv[1:])
    doc = ROOT / args.doc
    write_doc(results, runs, command.strip(), doc, ROOT / args.discussion, ablation)
    print(doc)


if __name__ == "__main__":
    main()
