"""Pruning benchmark -> docs/BENCHMARKS.md section "pruning".

Trains dense MoDL and the pruned methods at several densities on the demo config (one resumable
``punmri run`` in ``runs/bench-pruning``), then tabulates ID PSNR/SSIM, the cost of finding each
mask and of training, and IMP's and PUN-AT's mask-finding cost relative to PUN's.

Usage: ``python benchmarks/pruning.py [--steps N] [--densities 0.2 0.1 ...] [--methods ...]
[--section NAME --out DIR]`` (rerunning continues an interrupted benchmark; finished networks are
loaded, not retrained). ``--section`` writes another section of docs/BENCHMARKS.md, so that a
method can be added beside the others (with its own dense reference) without rerunning them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _docs import machine, punmri_run, write_section

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("dense", "pun", "pun-at", "random", "snip", "synflow", "imp")
DENSITIES = (0.2, 0.1, 0.05, 0.03, 0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--out", default="runs/bench-pruning")
    parser.add_argument("--steps", type=int, default=0, help="override train.steps (0 = config)")
    parser.add_argument("--densities", type=float, nargs="+", default=list(DENSITIES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--section", default="pruning", help="section of docs/BENCHMARKS.md")
    parser.add_argument("overrides", nargs="*", help="further config overrides")
    args = parser.parse_args()
    headline = 0.05 if 0.05 in args.densities else args.densities[0]
    others = [d for d in args.densities if d != headline]
    overrides = [
        f"methods=[{','.join(args.methods)}]",
        f"prune.density={headline}",
        f"prune.densities=[{','.join(map(str, others))}]",
        *([f"train.steps={args.steps}"] if args.steps else []),
        *args.overrides,
    ]
    punmri_run(args.config, args.out, overrides)
    metrics = json.loads((ROOT / args.out / "metrics.json").read_text())
    write_section(args.section, render(metrics, args, overrides, headline))


def _name(method: str, density: float, headline: float) -> str:
    return method if density == headline else f"{method}@{density:g}"


def render(metrics: dict, args: argparse.Namespace, overrides: list[str], headline: float) -> str:
    """The benchmark's Markdown section."""
    m = metrics["methods"]
    dens = sorted(args.densities, reverse=True)
    cfg = metrics["config"]
    command = " ".join(
        [
            "python benchmarks/pruning.py",
            *([] if args.section == "pruning" else [f"--section {args.section}"]),
            *([] if args.out == "runs/bench-pruning" else [f"--out {args.out}"]),
        ]
    )
    title = "Pruning" if args.section == "pruning" else f"Pruning: {', '.join(args.methods)}"
    lines = [
        f"## {title} (`{command}`)",
        "",
        f"Machine: {machine()}. Config `{args.config}` with `{' '.join(overrides)}` "
        f"({cfg['train']['steps']} training steps per network, seeds {cfg['seeds']}). "
        f"ID test suite: {m['dense']['suites']['id']['n']} held-out slices.",
        "",
        "**ID PSNR (dB) / SSIM by kept density** (dense and classical baselines do not prune):",
        "",
        "| method | " + " | ".join(f"{d:g}" for d in dens) + " |",
        "|---" * (len(dens) + 1) + "|",
    ]
    for base in ("zero-filled", "cs-l1", "dense"):
        if base in m:
            e = m[base]["suites"]["id"]
            lines.append(
                f"| {base} | "
                + " | ".join(f"{e['psnr']:.2f} / {e['ssim']:.4f}" for _ in dens)
                + " |"
            )
    for method in args.methods:
        if method == "dense":
            continue
        cells = []
        for d in dens:
            e = m.get(_name(method, d, headline), {}).get("suites", {}).get("id")
            cells.append("-" if e is None else f"{e['psnr']:.2f} / {e['ssim']:.4f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "**Cost per network** (mean over seeds; wall seconds and back-propagated batches; "
        "after-training methods count the dense training they start from as mask cost):",
        "",
        "| method | density | mask search (s) | mask bwd | training (s) | training bwd |",
        "|---|---|---|---|---|---|",
    ]
    for method in args.methods:
        for d in [None] if method == "dense" else dens:
            name = "dense" if d is None else _name(method, d, headline)
            c = m.get(name, {}).get("costs")
            if c is None:
                continue
            lines.append(
                f"| {method} | {'-' if d is None else f'{d:g}'} | {c.get('mask_wall_s', 0):.1f} | "
                f"{c.get('mask_backward', 0):.0f} | {c['train_wall_s']:.1f} | "
                f"{c['train_backward']:.0f} |"
            )
    ratios = []
    for other in ("imp", "pun-at"):
        for d in dens:
            a = m.get(_name(other, d, headline), {}).get("costs", {})
            b = m.get(_name("pun", d, headline), {}).get("costs", {})
            if a.get("mask_wall_s") and b.get("mask_wall_s"):
                ratios.append(
                    f"- {other} / pun mask-finding cost at density {d:g}: "
                    f"{a['mask_wall_s'] / b['mask_wall_s']:.1f}x wall time, "
                    f"{a['mask_backward'] / max(b['mask_backward'], 1):.1f}x backward passes"
                )
    lines += ["", *ratios]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
