"""Generalization results -> docs/RESULTS.md (and docs/figures/results/).

Trains ``configs/results.yaml`` once per training regime (:data:`punmri.report.regimes.REGIMES`;
by default the grid :data:`~punmri.report.regimes.GRID`: ``fixed-tiny-noisy``, where dense MoDL
over-fits, ``fresh-full``, where it should not, and ``fresh-full-didn``) into resumable
``punmri run`` directories ``runs/results/REGIME``, then writes the document with
:func:`punmri.report.results_doc.write_results_doc`: the verdict table (PUN minus dense,
``dense-narrow`` and ``pun-shuffled``, ID and OOD, 95% CIs) and the over-fitting lines at the top,
the regime map, seed, control and quality tables, each regime's per-suite table and the figures.

Scheduling: each regime's unfinished networks are split by seed into ``punmri train --only``
jobs (networks that depend on each other, ``pun-shuffled`` on PUN's mask and ``imp`` on dense,
share a seed), run ``--jobs`` at a time (:func:`run_tasks`), regime by regime in the grid's
order and each regime's largest first, with ``cores / jobs`` threads each and their output in
``runs/results/REGIME.sS.log``; as soon as a regime's networks are trained it is evaluated by a
plain ``punmri run`` (``runs/results/REGIME.log``) while the next regimes train, so the first
regimes' numbers are ready before the last ones. Every stage resumes: finished networks are
kept, an interrupted training continues from its last checkpoint and a complete evaluation is
not redone, so the same command continues after a kill. The wall time of every session is added
up in ``runs/results/cost.json`` (updated each minute) and stated in the document.

Optional: ``--sweep-regimes`` also trains ``prune.densities``; ``--batchnorm-regimes`` retrains
dense, PUN and random without BatchNorm (``runs/results/REGIME-nobn``) for the earlier BatchNorm
grid (``model.norm=batch model.init_output_gain=1``).

Usage: ``python benchmarks/results.py [--regimes R ...] [--jobs N] [--config FILE] [overrides]``;
``--from-runs`` trains nothing and only rebuilds the reports and the document from finished runs;
``--doc-only`` only rewrites the document from the runs' ``metrics.json``;
``--plan`` lists what is left to train.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from _docs import Task, machine, punmri_run, run_tasks

from punmri.config import RunConfig, load_config
from punmri.errors import InputError
from punmri.io import write_json_atomic
from punmri.pipeline import model_specs, report_run
from punmri.report.regimes import GRID, NO_BATCHNORM, NO_BATCHNORM_METHODS, REGIMES, RegimeRun
from punmri.report.results_doc import write_results_doc
from punmri.rundir import prepare_run_dir

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Job:
    """One ``punmri train --only`` process: the unfinished networks of one seed of one run.

    Attributes:
        run: the run's label (a regime, or ``REGIME-nobn``).
        out: its run directory.
        seed: the seed of every network of the job.
        networks: ``NAME:SEED`` entries for ``--only``.
        weight: its expected cost in optimizer steps (:func:`network_steps` of its networks), to
            start the largest jobs first.
    """

    run: str
    out: Path
    seed: int
    networks: tuple[str, ...]
    weight: int


def network_steps(cfg: RunConfig, method: str) -> int:
    """The optimizer steps of one ``method`` network: its training, plus the mask search of
    ``pun``/``pun-uniform`` or the pruning rounds IMP trains beyond the seed's dense network."""
    p = cfg.prune
    extra = {"pun": p.pun.steps, "pun-uniform": p.pun_uniform.steps}.get(method, 0)
    if method == "imp":
        extra = (p.imp_rounds - 1) * (p.imp_round_steps or cfg.train.steps)
    return cfg.train.steps + extra


def training_jobs(
    config: str | Path, runs: Mapping[str, Path], overrides: Mapping[str, list[str]]
) -> list[Job]:
    """The jobs that train every unfinished network of ``runs`` (a network is finished when its
    ``costs.json`` exists), one per run and seed, largest :attr:`Job.weight` first."""
    jobs = []
    for label, out in runs.items():
        cfg = load_config(config, overrides[label])
        by_seed: dict[int, list] = {}
        for spec in model_specs(cfg):
            if not (spec.directory(out) / "costs.json").is_file():
                by_seed.setdefault(spec.seed, []).append(spec)
        for seed, specs in by_seed.items():
            weight = sum(network_steps(cfg, s.method) for s in specs)
            names = tuple(f"{s.name}:{s.seed}" for s in specs)
            jobs.append(Job(label, out, seed, names, weight))
    return sorted(jobs, key=lambda j: -j.weight)


def print_plan(jobs: list[Job], cost_path: Path) -> None:
    """The jobs still to run, largest first, and the wall time spent so far (``--plan``)."""
    for job in jobs:
        print(f"{job.run:18s} seed {job.seed}  {job.weight:6d} steps  {' '.join(job.networks)}")
    steps = sum(job.weight for job in jobs)
    spent = CostLog.read(cost_path).get("wall_s", 0.0) / 3600
    print(f"{len(jobs)} jobs, {steps} optimizer steps to go; {spent:.1f} h spent so far")


class CostLog:
    """The wall time of every session of the results run, in ``path`` (``cost.json``):
    ``{"sessions": [seconds, ...], "wall_s": their sum, "jobs", "machine"}``. The current
    session's entry is rewritten every ``every`` seconds while :meth:`running`, so a killed
    session keeps all but its last minute."""

    def __init__(self, path: Path, jobs: int, every: float = 60.0) -> None:
        self.path, self.jobs, self.every = path, jobs, every
        self.previous = self.read(path).get("sessions", []) if path.is_file() else []
        self.start = time.monotonic()

    @staticmethod
    def read(path: Path) -> dict[str, Any]:
        """The recorded cost (empty when none was recorded)."""
        return json.loads(path.read_text()) if path.is_file() else {}

    def write(self) -> dict[str, Any]:
        """Record the sessions so far, this one up to now; returns the record."""
        sessions = [*self.previous, time.monotonic() - self.start]
        record = {
            "sessions": sessions,
            "wall_s": sum(sessions),
            "jobs": self.jobs,
            "machine": machine(),
        }
        write_json_atomic(self.path, record)
        return record

    def running(self) -> threading.Event:
        """Start rewriting the record every :attr:`every` seconds until the returned event is
        set."""
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(self.every):
                self.write()

        threading.Thread(target=tick, daemon=True).start()
        return stop


def train_and_evaluate(
    config: str, runs: Mapping[str, Path], overrides: Mapping[str, list[str]], jobs: int
) -> dict[str, dict]:
    """Train every network of ``runs`` (:func:`training_jobs`, ``jobs`` at a time) and evaluate
    each run as soon as its own networks are trained, while the later runs train (runs in
    ``runs`` order, each run's jobs largest first, an evaluation ahead of any training that
    can wait); returns each run's metrics."""
    for label, out in runs.items():  # created once here, so parallel jobs find it ready
        prepare_run_dir(load_config(config, overrides[label]), out)

    def train(job: Job) -> None:
        log = job.out.parent / f"{job.out.name}.s{job.seed}.log"
        only = ["--only", ",".join(job.networks)]
        punmri_run(config, job.out, overrides[job.run], log=log, command="train", args=only)

    def evaluate(label: str) -> dict:
        out = runs[label]
        punmri_run(config, out, overrides[label], log=out.parent / f"{out.name}.log")
        return json.loads((out / "metrics.json").read_text())

    trainings = training_jobs(config, runs, overrides)  # largest first
    tasks = []
    for label in runs:
        mine = [j for j in trainings if j.run == label]
        names = [f"train {j.run} seed {j.seed}" for j in mine]
        after = frozenset(names)
        tasks.append(Task(f"evaluate {label}", lambda label=label: evaluate(label), after))
        tasks += [Task(n, lambda j=j: train(j)) for n, j in zip(names, mine, strict=True)]
    done = run_tasks(tasks, jobs)
    return {label: done[f"evaluate {label}"] for label in runs}


def finished_metrics(run_dir: Path) -> dict:
    """The ``metrics.json`` of an evaluated run (for ``--doc-only``)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise InputError(
            f"{path} does not exist: {run_dir} is not evaluated yet; run "
            "`python benchmarks/results.py` (without --doc-only) to finish it"
        )
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/results.yaml")
    parser.add_argument("--out", default="runs/results")
    parser.add_argument("--doc", default="docs/RESULTS.md", help="Markdown file to write")
    parser.add_argument(
        "--discussion",
        default=None,
        help="hand-written interpretation of these runs' numbers, included under the verdict "
        "(benchmarks/results_discussion.md discusses the current grid, "
        "benchmarks/results_discussion_batchnorm.md the earlier BatchNorm grid)",
    )
    parser.add_argument("--regimes", nargs="+", default=list(GRID), choices=list(REGIMES))
    parser.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    parser.add_argument(
        "--sweep-regimes",
        nargs="*",
        default=[],
        choices=list(REGIMES),
        help="regimes that also train prune.densities (the others only the headline density)",
    )
    parser.add_argument(
        "--batchnorm-regimes",
        nargs="*",
        default=[],
        choices=list(REGIMES),
        help=f"regimes also trained without BatchNorm ({', '.join(NO_BATCHNORM_METHODS)}) "
        "into OUT/REGIME-nobn (for the BatchNorm grid: model.norm=batch model.init_output_gain=1)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--from-runs",
        action="store_true",
        help="train nothing: rebuild each regime's metrics and report from its per-slice results "
        "(`punmri report`) and write the document",
    )
    mode.add_argument(
        "--doc-only",
        action="store_true",
        help="train and evaluate nothing, rewrite no report: write the document from each "
        "regime's metrics.json as it is (seconds; e.g. after editing the discussion)",
    )
    mode.add_argument(
        "--plan",
        action="store_true",
        help="train nothing: list the unfinished networks, one line per job (regime, seed, "
        "networks, optimizer steps), and exit",
    )
    parser.add_argument("overrides", nargs="*", help="extra config overrides for every regime")
    args = parser.parse_args()
    if args.batchnorm_regimes and load_config(args.config, args.overrides).model.norm == "none":
        parser.error(
            "--batchnorm-regimes retrains without BatchNorm, but the grid has model.norm none "
            "already; add the overrides model.norm=batch model.init_output_gain=1 (the BatchNorm "
            "grid) or drop --batchnorm-regimes"
        )
    root = ROOT / args.out
    runs = {r: root / r for r in args.regimes}
    overrides = {
        r: [*REGIMES[r], *([] if r in args.sweep_regimes else ["prune.densities=[]"])]
        for r in args.regimes
    }
    overrides = {r: [*o, *args.overrides] for r, o in overrides.items()}
    ablation = {r: root / f"{r}-nobn" for r in args.batchnorm_regimes if r in runs}
    every = {**runs, **{f"{r}-nobn": out for r, out in ablation.items()}}
    overrides.update({f"{r}-nobn": [*REGIMES[r], *args.overrides, *NO_BATCHNORM] for r in ablation})
    threads = f"train.threads={max(1, (os.cpu_count() or 1) // max(1, args.jobs))}"
    overrides = {r: [*o, f"name=results-{every[r].name}", threads] for r, o in overrides.items()}
    cost_path = root / "cost.json"
    if args.plan:
        print_plan(training_jobs(args.config, every, overrides), cost_path)
        return
    if args.doc_only or args.from_runs:
        read = finished_metrics if args.doc_only else partial(report_run, progress=False)
        done = {r: read(out) for r, out in every.items()}
        cost = CostLog.read(cost_path)
    else:
        log = CostLog(cost_path, args.jobs)
        stop = log.running()
        try:
            done = train_and_evaluate(args.config, every, overrides, args.jobs)
        finally:
            stop.set()
            cost = log.write()
    doc = write_results_doc(
        {r: RegimeRun.load(out, done[r]) for r, out in runs.items()},
        ROOT / args.doc,
        ("python benchmarks/results.py " + " ".join(sys.argv[1:])).strip(),
        Path(args.discussion).read_text() if args.discussion else None,
        {r: RegimeRun.load(out) for r, out in ablation.items()},
        root=ROOT,
        cost=cost or None,
    )
    print(doc)


if __name__ == "__main__":
    main()
