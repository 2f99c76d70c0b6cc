"""Generalization results -> docs/RESULTS.md (and docs/figures/results/).

Runs ``configs/results.yaml`` once per training regime (resumable ``punmri run`` directories in
``runs/results/REGIME``), then writes the document with :func:`punmri.report.results_doc.
write_results_doc`: the regime map (ID and mean OOD PSNR difference to dense, with bootstrap 95%
CIs, per method), each regime's per-suite table with suite difficulty, and the figures. Regimes
(:data:`punmri.report.regimes.REGIMES`): simulation *fixed* per training slice vs *fresh* per
sample, and the full training slab vs a small training set. In the ``--batchnorm-regimes``
(default fixed-full and fresh-small) dense, PUN and random are also trained without BatchNorm
(``runs/results/REGIME-nobn``) and compared with the main runs.

Usage: ``python benchmarks/results.py [--regimes fixed-small ...] [--jobs N] [--config FILE]
[overrides]``; with ``--jobs N`` the regimes run N at a time, each with ``cores / N`` threads and
its output in ``runs/results/REGIME.log``; ``--from-runs`` only rebuilds the reports and the
document from finished runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _docs import punmri_run

from punmri.pipeline import report_run
from punmri.report.regimes import NO_BATCHNORM, NO_BATCHNORM_METHODS, REGIMES, RegimeRun
from punmri.report.results_doc import write_results_doc

ROOT = Path(__file__).resolve().parent.parent


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
    discussion = ROOT / args.discussion
    doc = write_results_doc(
        {r: RegimeRun.load(out, done[r]) for r, out in runs.items()},
        ROOT / args.doc,
        ("python benchmarks/results.py " + " ".join(sys.argv[1:])).strip(),
        discussion.read_text() if discussion.is_file() else None,
        {r: RegimeRun.load(out) for r, out in ablation.items()},
        root=ROOT,
    )
    print(doc)


if __name__ == "__main__":
    main()
