"""Structured (channel-level) PUN contest -> docs/RESULTS.md section "structured".

Trains the networks of ``configs/structured.yaml`` into the resumable run directory
``runs/structured`` (with ``--jobs N``, N ``punmri train --only`` processes share the unfinished
networks, one thread each), evaluates them with ``punmri run``, then:

1. times every architecture's inference (per slice, batch 1, no autograd) side by side in one
   process, interleaving the networks' repeats, and counts its parameters and FLOPs
   (``torch.utils.flop_counter``: convolutions and matrix products; FFTs count zero);
2. writes the quality/speed table (ID and mean-OOD PSNR against latency, per method and kept
   channel fraction), the paired contrasts of ``pun-channel`` with ``dense-narrow``,
   ``random-channel``, ``norm-channel``, ``snip-channel`` and ``dense`` (hierarchical bootstrap over
   seeds and slices, 95% CIs, seed spread), and the Pareto figure
   ``docs/figures/results/structured_pareto.png``.

Usage: ``python benchmarks/structured_results.py [--jobs 2] [--from-runs] [--out DIR]``
(about 1.5 hours on a free 2-core CPU with ``--jobs 2``; finished networks are kept).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from _docs import in_parallel, machine, punmri_run, write_section
from torch.utils.flop_counter import FlopCounterMode

from punmri.config import load_config
from punmri.data.batches import collate
from punmri.evaluate.statistics import split_seed
from punmri.io import write_json_atomic
from punmri.models import count_parameters
from punmri.pipeline import load_run_data, load_trained, model_specs
from punmri.report.regimes import RegimeRun, paired_summary, psnr_by_network, significance
from punmri.rundir import load_run_config

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "structured.yaml"
DOC = ROOT / "docs" / "RESULTS.md"
#: Hand-written discussion of the current numbers, placed under the answer when present.
DISCUSSION = ROOT / "benchmarks" / "structured_discussion.md"
#: The Pareto figure, relative to the document's folder.
FIGURE = Path("figures") / "results" / "structured_pareto.png"
#: The contests of pun-channel at each fraction: (other method, what it controls for).
CONTRASTS = [
    ("dense-narrow", "same widths, fresh initialisation: does the choice of channels matter?"),
    ("random-channel", "same widths, random channels of the same initial network"),
    ("norm-channel", "filter norm at initialisation"),
    ("snip-channel", "SNIP summed per channel"),
    ("dense", "the full network"),
]


def train_networks(config: Path, overrides: list[str], out: Path, jobs: int) -> None:
    """Train every unfinished network of the config, ``jobs`` processes at a time."""
    cfg = load_config(config, overrides)
    todo = [
        f"{s.name}:{s.seed}"
        for s in model_specs(cfg)
        if not (s.directory(out) / "costs.json").is_file()
    ]
    if not todo:
        return
    groups = [todo[i::jobs] for i in range(jobs) if todo[i::jobs]]
    threads = "train.threads=1" if jobs > 1 else "train.threads=2"

    def train_group(i: int, group: list[str]) -> None:
        if i:  # let the first process create the run directory
            while not (out / "config.yaml").is_file():
                time.sleep(2)
        log = out.parent / f"{out.name}.train{i}.log"
        only = ["--only", ",".join(group)]
        punmri_run(config, out, [*overrides, threads], log=log, command="train", args=only)

    in_parallel(lambda group: train_group(*group), list(enumerate(groups)), len(groups))


def _architectures(run: RegimeRun, cfg) -> dict[str, torch.nn.Module]:
    """One trained network (seed 0) per architecture: dense and each kept fraction (the channel
    methods at one fraction share their widths, so ``dense-narrow`` stands for them)."""
    out: dict[str, torch.nn.Module] = {}
    for spec in model_specs(cfg):
        if spec.seed != cfg.seeds[0]:
            continue
        key = "dense" if spec.method == "dense" else f"{spec.density:g}"
        if key not in out:
            out[key] = load_trained(cfg, spec, run.run_dir).model.eval()
    return out


def measure_speed(run: RegimeRun, cfg, repeats: int) -> dict[str, dict[str, float]]:
    """Per architecture: parameters, GFLOPs per slice and median inference latency (ms), the
    networks timed in turn, repeat by repeat, in this process."""
    torch.set_num_threads(1)  # steadier beside other jobs (benchmarks/structured.py)
    data = load_run_data(cfg)
    sample = collate(data.suites[0].samples[:1])
    y, op = sample.kspace, sample.operator()
    models = _architectures(run, cfg)
    times: dict[str, list[float]] = {k: [] for k in models}
    info: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for key, model in models.items():
            counter = FlopCounterMode(display=False)
            with counter:
                model(y, op)
            info[key] = {
                "parameters": float(count_parameters(model)),
                "gflops": counter.get_total_flops() / 1e9,
            }
            model(y, op)  # warm-up
        for _ in range(repeats):
            for key, model in models.items():
                t0 = time.perf_counter()
                model(y, op)
                times[key].append(time.perf_counter() - t0)
    for key in models:
        info[key]["latency_ms"] = 1e3 * statistics.median(times[key])
        info[key]["speedup"] = statistics.median(times["dense"]) / statistics.median(times[key])
    return info


def _ci(entry: dict | None) -> str:
    if not entry:
        return "n/a"
    mark = {1: " (+)", -1: " (-)", 0: ""}[significance(entry)]
    return f"{entry['mean']:+.2f} [{entry['ci_low']:+.2f}, {entry['ci_high']:+.2f}]{mark}"


def _spread(entry: dict | None) -> str:
    if not entry:
        return ""
    return ", ".join(f"{v:+.2f}" for v in entry["values"])


def quality_rows(run: RegimeRun, cfg, speed: dict) -> list[str]:
    """The quality/speed table: one row per method and fraction."""
    headline = cfg.prune.channel_density
    per = psnr_by_network(run.records)
    names = sorted({m for m, _ in per}, key=lambda n: (n not in ("zero-filled", "cs-l1"), n))
    rows = [
        "| network | channels kept | parameters | GFLOPs/slice | latency (ms) | speed-up | "
        "ID PSNR (dB) | mean OOD PSNR (dB) | ID vs dense | OOD vs dense |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name in names:
        seeds = [s for m, s in per if m == name]
        id_psnr = statistics.mean(statistics.mean(per[(name, s)]["id"]) for s in seeds)
        ood_psnr = statistics.mean(statistics.mean(per[(name, s)]["ood"]) for s in seeds)
        if name in ("zero-filled", "cs-l1"):
            rows.append(f"| {name} | | | | | | {id_psnr:.2f} | {ood_psnr:.2f} | | |")
            continue
        key = "dense" if name == "dense" else name.partition("@")[2] or f"{headline:g}"
        s = speed.get(key, {})
        kept = "100%" if name == "dense" else f"{float(key):.1%}"
        line = (
            None if name == "dense" else paired_summary(run.records, name, "dense", run.test_seed)
        )
        rows.append(
            f"| {name} | {kept} | {s.get('parameters', float('nan')):,.0f} | "
            f"{s.get('gflops', float('nan')):.2f} | {s.get('latency_ms', float('nan')):.1f} | "
            f"{s.get('speedup', float('nan')):.2f}x | {id_psnr:.2f} | {ood_psnr:.2f} | "
            f"{_ci(line and line['id_delta_psnr'])} | {_ci(line and line['ood_delta_psnr'])} |"
        )
    return rows


def contrast_rows(run: RegimeRun, cfg) -> tuple[list[str], list[dict]]:
    """Paired contrasts of pun-channel with each control at each fraction it was trained at."""
    names = {split_seed(r.method)[0] for r in run.records}
    fractions = [cfg.prune.channel_density, *cfg.prune.channel_densities]
    rows = [
        "| fraction | pun-channel minus | ID ΔPSNR [95% CI] | seeds (ID) | mean OOD ΔPSNR [95% CI] "
        "| seeds (OOD) |",
        "|---:|---|---|---|---|---|",
    ]
    found = []
    for fraction in fractions:
        suffix = "" if fraction == cfg.prune.channel_density else f"@{fraction:g}"
        pun = f"pun-channel{suffix}"
        if pun not in names:
            continue
        for other, _ in CONTRASTS:
            ref = other if other == "dense" else f"{other}{suffix}"
            if ref not in names:
                continue
            line = paired_summary(run.records, pun, ref, run.test_seed)
            if line is None:
                continue
            found.append({"fraction": fraction, "reference": other, **line})
            rows.append(
                f"| {fraction:g} | {ref} | {_ci(line['id_delta_psnr'])} | "
                f"{_spread(line.get('id_delta_psnr_seeds'))} | {_ci(line['ood_delta_psnr'])} | "
                f"{_spread(line.get('ood_delta_psnr_seeds'))} |"
            )
    return rows, found


def pareto_figure(run: RegimeRun, cfg, speed: dict, path: Path) -> Path:
    """ID and mean-OOD PSNR against inference latency, one line per method over fractions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = psnr_by_network(run.records)
    headline = f"{cfg.prune.channel_density:g}"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    methods = sorted(
        {split_seed(m)[0].partition("@")[0] for m, _ in per} - {"zero-filled", "cs-l1"}
    )
    for ax, part in zip(axes, ("id", "ood"), strict=True):
        for method in methods:
            points = []
            for (name, seed), values in per.items():
                base, _, frac = name.partition("@")
                if base != method:
                    continue
                key = "dense" if method == "dense" else frac or headline
                points.append((key, seed, statistics.mean(values[part])))
            by_key: dict[str, list[float]] = {}
            for key, _, value in points:
                by_key.setdefault(key, []).append(value)
            # connect a method's networks from the widest to the narrowest
            order = sorted(by_key, key=lambda k: -1.0 if k == "dense" else -float(k))
            xs = [speed[k]["latency_ms"] for k in order]
            ys = [statistics.mean(by_key[k]) for k in order]
            ax.plot(xs, ys, marker="o", label=method)
            if method == "pun-channel":
                for k, x, y in zip(order, xs, ys, strict=True):
                    ax.annotate(
                        f"{float(k):.1%}",
                        (x, y),
                        fontsize=7,
                        xytext=(4, 4),
                        textcoords="offset points",
                    )
        ax.set_xlabel("inference latency per slice (ms, one CPU thread)")
        ax.set_ylabel(f"{'ID' if part == 'id' else 'mean OOD'} PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def verdict_lines(found: list[dict]) -> list[str]:
    """One sentence per (fraction, reference): better, worse or not distinguishable."""
    words = {1: "better than", -1: "worse than", 0: "not distinguishable from"}
    out = []
    for f in found:
        i, o = significance(f["id_delta_psnr"]), significance(f["ood_delta_psnr"])
        out.append(
            f"- {f['fraction']:.1%} of channels: pun-channel is {words[i]} {f['reference']} in "
            f"distribution ({f['id_delta_psnr']['mean']:+.2f} dB) and {words[o]} it out of "
            f"distribution ({f['ood_delta_psnr']['mean']:+.2f} dB)."
        )
    return out


def network_hours(run: RegimeRun, cfg) -> float:
    """Wall hours of every network's mask search and training (``costs.json``), summed."""
    total = 0.0
    for spec in model_specs(cfg):
        costs = json.loads((spec.directory(run.run_dir) / "costs.json").read_text())
        total += costs.get("train_wall_s", 0.0) + costs.get("mask_wall_s", 0.0)
    return total / 3600


def section(run: RegimeRun, cfg, speed: dict, doc: Path) -> str:
    quality = quality_rows(run, cfg, speed)
    contrasts, found = contrast_rows(run, cfg)
    pareto_figure(run, cfg, speed, doc.parent / FIGURE)
    n_test = len({r.slice_name for r in run.records if r.suite == "id"})
    lines = [
        "## Structured PUN: channel-level pruning at initialisation, compacted",
        "",
        f"Generated by `python benchmarks/structured_results.py --jobs 2` from `{CONFIG.name}` "
        f"(run directory `runs/{run.run_dir.name}`; {machine()}).",
        "",
        f"Setting: {cfg.data.image_size[0]}x{cfg.data.image_size[1]} Colin27 slices at "
        f"{cfg.data.resolution_mm:g} mm, {cfg.physics.coils} coils, {cfg.physics.acceleration:g}x "
        f"{cfg.physics.mask_kind} sampling, fresh physics per sample; MoDL with a "
        f"{cfg.model.depth}-layer {cfg.model.channels}-channel ResNet denoiser (no "
        f"normalisation), K={cfg.model.unrolls}, {cfg.model.cg_iterations} CG steps; "
        f"{cfg.train.steps} training steps, best-validation checkpoint; seeds "
        f"{list(cfg.seeds)}; {n_test} test slices per suite, all from one subject; OOD = mean "
        f"over the {len(cfg.evaluate.suites) - 1} shifted suites. "
        "Every channel method keeps the same fraction of the channels of every layer "
        "(`prune.channel_allocation: uniform`), so at one fraction they all train the same "
        "compact architecture and differ only in which channels (and initial values) they "
        "keep; `dense-narrow` has those widths and a fresh initialisation. The compact "
        "network is what trains and what is timed (no masks).",
        "",
        "Latency: one slice (batch 1), no autograd, one CPU thread, median of interleaved repeats "
        "in one process; FLOPs from `torch.utils.flop_counter` (convolutions; the FFTs and CG "
        "arithmetic of data consistency count zero there, so GFLOPs understate the fixed cost).",
        "",
        *quality,
        "",
        "Paired differences (same slices and seeds; hierarchical bootstrap over seeds, then "
        "slices; OOD resamples slices jointly across suites). (+)/(-): the 95% CI excludes 0.",
        "",
        *contrasts,
        "",
        "### Answer",
        "",
        *verdict_lines(found),
        "",
        *([DISCUSSION.read_text().strip(), ""] if DISCUSSION.is_file() else []),
        f"![quality against latency]({FIGURE.as_posix()})",
    ]
    lines += [
        "",
        f"Cost: {network_hours(run, cfg):.1f} h of network searches and training summed over "
        f"the {len(model_specs(cfg))} networks (two at a time with `--jobs 2`), plus evaluation.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--out", default=str(ROOT / "runs" / "structured"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20, help="latency repeats per network")
    parser.add_argument("--from-runs", action="store_true", help="only rebuild the section")
    parser.add_argument("--doc", default=str(DOC), help="document to write the section into")
    parser.add_argument("overrides", nargs="*", help="config overrides (section.key=value)")
    args = parser.parse_args()
    out, config = Path(args.out), Path(args.config)
    if not args.from_runs:
        train_networks(config, args.overrides, out, args.jobs)
        log = out.parent / f"{out.name}.eval.log"
        punmri_run(config, out, [*args.overrides, "train.threads=2"], log=log)
    run = RegimeRun.load(out)
    cfg = load_run_config(out)
    speed = measure_speed(run, cfg, args.repeats)
    write_json_atomic(out / "structured_results.json", {"speed": speed})
    doc = Path(args.doc)
    write_section("structured", section(run, cfg, speed, doc), doc)
    print(f"wrote {args.doc} (section structured)", file=sys.stderr)


if __name__ == "__main__":
    main()
