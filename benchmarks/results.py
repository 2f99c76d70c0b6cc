"""Generalization results -> docs/RESULTS.md (and docs/figures/results/).

Runs ``configs/results.yaml`` once per training regime (resumable ``punmri run`` directories in
``runs/results/REGIME``), then writes the regime map (ID and mean OOD PSNR difference to dense,
with bootstrap 95% CIs, per method), each regime's per-suite table with suite difficulty, and the
figures. Regimes: simulation *fixed* per training slice vs *fresh* per sample, and the full
training slab vs a small training set.

Usage: ``python benchmarks/results.py [--regimes fixed-small ...] [--jobs N] [--config FILE]
[overrides]``; with ``--jobs N`` the regimes run N at a time, each with ``cores / N`` threads and
its output in ``runs/results/REGIME.log``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _docs import punmri_run

ROOT = Path(__file__).resolve().parent.parent
SMALL_SLICES = 8
REGIMES = {
    "fixed-small": ["physics.fresh=false", f"data.max_train_slices={SMALL_SLICES}"],
    "fresh-small": ["physics.fresh=true", f"data.max_train_slices={SMALL_SLICES}"],
    "fixed-full": ["physics.fresh=false", "data.max_train_slices=0"],
    "fresh-full": ["physics.fresh=true", "data.max_train_slices=0"],
}


def run_regime(
    config: str, regime: str, out: Path, overrides: list[str], log: Path | None = None
) -> dict:
    """Run (or resume) one regime and return its metrics."""
    punmri_run(config, out, [*REGIMES[regime], f"name=results-{regime}", *overrides], log=log)
    return json.loads((out / "metrics.json").read_text())


def run_regimes(
    config: str, runs: dict[str, Path], overrides: dict[str, list[str]], jobs: int
) -> dict[str, dict]:
    """Run every regime of ``runs`` (with its ``overrides``), ``jobs`` at a time (the CPU
    threads split between them)."""
    if jobs <= 1:
        return {r: run_regime(config, r, out, overrides[r]) for r, out in runs.items()}
    threads = f"train.threads={max(1, (os.cpu_count() or 1) // jobs)}"
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            r: pool.submit(
                run_regime, config, r, out, [threads, *overrides[r]], out.parent / f"{r}.log"
            )
            for r, out in runs.items()
        }
        return {r: f.result() for r, f in futures.items()}


def _ci(e: dict | None) -> str:
    if not e or e.get("mean") is None:
        return "-"
    return f"{e['mean']:+.2f} [{e['ci_low']:+.2f}, {e['ci_high']:+.2f}]"


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
                "-" if s is None else f"{_ci(s['id_delta_psnr'])} / {_ci(s['ood_delta_psnr'])}"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def verdict(results: dict[str, dict], method: str = "pun") -> list[str]:
    """Plain statements of what the CIs say about ``method`` vs dense, per regime."""
    out = []
    for regime, metrics in results.items():
        s = metrics.get("summary", {}).get(method)
        if s is None:
            continue
        idd, ood = s["id_delta_psnr"], s["ood_delta_psnr"]
        words = {1: "better than", -1: "worse than", 0: "not distinguishable from"}
        ctrl = metrics.get("summary", {}).get("pun-shuffled")
        ctrl_text = ""
        if ctrl is not None:
            ctrl_text = (
                f"; the layer-count control (pun-shuffled) has OOD {_ci(ctrl['ood_delta_psnr'])} dB"
            )
        out.append(
            f"- **{regime}**: {method} is {words[_significant(idd)]} dense in distribution "
            f"({_ci(idd)} dB) and {words[_significant(ood)]} dense out of distribution "
            f"({_ci(ood)} dB){ctrl_text}."
        )
    return out


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
            _ci(metrics["methods"][m]["suites"].get(suite, {}).get("delta_psnr")) for m in methods
        ]
        zf, dn = info.get("zero-filled_psnr"), info.get("dense_psnr")
        lines.append(
            f"| {suite} | {info.get('description', '')} | "
            f"{'-' if zf is None else f'{zf:.2f}'} | {'-' if dn is None else f'{dn:.2f}'} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def write_doc(results: dict[str, dict], runs: dict[str, Path], command: str, doc: Path) -> None:
    """Compose ``doc`` (docs/RESULTS.md) from the regimes' metrics and figures."""
    figures = doc.parent / "figures" / "results"
    figures.mkdir(parents=True, exist_ok=True)
    first = next(iter(results.values()))
    cfg = first["config"]
    lines = [
        "# Does pruning at initialisation (PUN) generalise better than dense MoDL?",
        "",
        f"Generated by `{command}` from the run directories {_paths(runs)}.",
        "",
        f"Setting: `{cfg['data']['source']}` {cfg['data']['resolution_mm']} mm "
        f"{cfg['data']['view']} slices "
        f"{cfg['data']['image_size'][0]}x{cfg['data']['image_size'][1]}, "
        f"{cfg['physics']['coils']} coils, {cfg['physics']['mask_kind']} "
        f"{cfg['physics']['acceleration']:g}x; MoDL {cfg['model']['denoiser']} "
        f"{cfg['model']['channels']}x{cfg['model']['depth']}, K={cfg['model']['unrolls']}; "
        f"training to a validation plateau (patience {cfg['train']['patience']}, cap "
        f"{cfg['train']['steps']} steps); seeds {cfg['seeds']}; PUN at density "
        f"{cfg['prune']['density']} and {cfg['prune']['densities']}.",
        "",
        "Differences are paired (same slices, same seeds) mean PSNR differences to dense with "
        "bootstrap 95% confidence intervals; OOD averages the shifted suites.",
        "",
        "## Answer",
        "",
        *verdict(results),
        "",
        "## Regime map",
        "",
        *regime_map(results),
        "",
    ]
    for regime, metrics in results.items():
        lines += [f"## Regime `{regime}`", "", *suite_table(metrics), ""]
        for fig in ("delta_psnr.png", "density.png", "layer_density.png", "training.png"):
            src = runs[regime] / "figures" / fig
            if src.is_file():
                dst = figures / f"{regime}_{fig}"
                shutil.copyfile(src, dst)
                lines += [f"![{regime} {fig}](figures/results/{dst.name})", ""]
    doc.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/results.yaml")
    parser.add_argument("--out", default="runs/results")
    parser.add_argument("--doc", default="docs/RESULTS.md", help="Markdown file to write")
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--jobs", type=int, default=1, help="regimes run at the same time")
    parser.add_argument(
        "--sweep-regimes",
        nargs="*",
        default=["fixed-small"],
        choices=list(REGIMES),
        help="regimes that also train prune.densities (the others only the headline density)",
    )
    parser.add_argument("overrides", nargs="*", help="extra config overrides for every regime")
    args = parser.parse_args()
    runs = {r: ROOT / args.out / r for r in args.regimes}
    overrides = {
        r: [*([] if r in args.sweep_regimes else ["prune.densities=[]"]), *args.overrides]
        for r in args.regimes
    }
    results = run_regimes(args.config, runs, overrides, args.jobs)
    command = "python benchmarks/results.py " + " ".join(sys.argv[1:])
    doc = ROOT / args.doc
    write_doc(results, runs, command.strip(), doc)
    print(doc)


if __name__ == "__main__":
    main()
