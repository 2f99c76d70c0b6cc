"""What PUN's search objective sees -> docs/BENCHMARKS.md section "search-objective".

PUN-IT picks its mask by the training loss of the *untrained* network under the mask
(PAPER.md). Every mask of the results grid is checked against layer-shuffled copies of itself
(``mask.json``: the same loss, to four decimals, in the grid so far). This benchmark asks why: for
every mask the grid saved (``runs/results/REGIME/models/METHOD/seedS/mask.pt``; ``pun``,
``pun-uniform``, ``random``, ``snip``) it computes, on the held-out batches of that check, the
untrained network's loss dense, under the mask, and with *every* prunable weight pruned (the
denoiser reduced to its biases, so MoDL keeps only its data-consistency steps). When the masked
loss equals the all-pruned one, any mask that silences the denoiser is optimal for the search,
and the search cannot tell one such mask from another.

Reads the grid's runs (no training; about a minute per regime on 2 cores); run it after
``python benchmarks/results.py`` (it uses the masks present then).

Usage: ``python benchmarks/search_objective.py [--runs runs/results]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from _docs import machine, write_section

from punmri.config import load_config
from punmri.methods import REINIT_OFFSET, MethodContext, check_batches, untrained_loss
from punmri.pipeline import load_run_data
from punmri.pruning import Masks
from punmri.report.regime_tables import MASK_METHODS
from punmri.report.regimes import GRID

ROOT = Path(__file__).resolve().parent.parent


#: Layer-shuffled copies of each mask evaluated with rescaled weights.
SHUFFLES = 3


def regime_losses(run_dir: Path) -> dict[str, dict[str, list[float]]]:
    """Per mask method of ``run_dir``: the losses ``dense``, ``mask``, ``pruned`` (every weight
    pruned) and ``rescaled`` (the mask with its kept weights scaled by 1/sqrt(layer density)) of
    each seed that has a mask, in seed order, and ``rescaled_shuffled`` (:data:`SHUFFLES`
    layer-shuffled copies of each, rescaled)."""
    cfg = load_config(run_dir / "config.yaml")
    ctx = MethodContext(cfg, run_dir, load_run_data(cfg), progress=False)
    per_seed: dict[int, tuple[list, float, float]] = {}
    out: dict[str, dict[str, list[float]]] = {}
    for method in MASK_METHODS:
        for path in sorted((run_dir / "models" / method).glob("seed*/mask.pt")):
            seed = int(path.parent.name.removeprefix("seed"))
            masks = Masks.load(path)
            if seed not in per_seed:
                data = check_batches(ctx, seed)
                silent = masks.emptied()
                dense = untrained_loss(ctx, seed, None, data)
                per_seed[seed] = (data, dense, untrained_loss(ctx, seed, silent, data))
            data, dense, pruned = per_seed[seed]
            keys = ("dense", "mask", "pruned", "rescaled", "rescaled_shuffled")
            entry = out.setdefault(method, {k: [] for k in keys})
            entry["dense"].append(dense)
            entry["mask"].append(untrained_loss(ctx, seed, masks, data))
            entry["pruned"].append(pruned)
            entry["rescaled"].append(untrained_loss(ctx, seed, masks, data, rescale=True))
            gen = torch.Generator().manual_seed(seed + REINIT_OFFSET)
            shuffled = [masks.shuffled_within_layers(gen) for _ in range(SHUFFLES)]
            entry["rescaled_shuffled"] += [
                untrained_loss(ctx, seed, m, data, rescale=True) for m in shuffled
            ]
    return out


def table(losses: dict[str, dict[str, dict[str, list[float]]]]) -> list[str]:
    """Markdown rows: regime, mask, seeds, mean losses, and the largest relative difference
    between the masked and the all-pruned loss over the seeds."""
    lines = [
        "| regime | mask | seeds | loss dense | loss under the mask | loss, every weight pruned "
        "| largest gap mask vs pruned (relative) | rescaled: mask | rescaled: layer-shuffled "
        "(min-max) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for regime, per_method in losses.items():
        for method, entry in per_method.items():
            mask, pruned = np.array(entry["mask"]), np.array(entry["pruned"])
            gap = float(np.max(np.abs(mask - pruned) / pruned))
            cells = [
                regime,
                f"`{method}`",
                str(len(mask)),
                f"{np.mean(entry['dense']):.5f}",
                f"{mask.mean():.5f}",
                f"{pruned.mean():.5f}",
                f"{100 * gap:.2f}%",
                f"{np.mean(entry['rescaled']):.4f}",
                f"{min(entry['rescaled_shuffled']):.4f}-{max(entry['rescaled_shuffled']):.4f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/results")
    parser.add_argument("--regimes", nargs="+", default=list(GRID))
    args = parser.parse_args()
    root = ROOT / args.runs
    losses = {}
    for regime in args.regimes:
        if (root / regime / "config.yaml").is_file():
            losses[regime] = regime_losses(root / regime)
    if not any(losses.values()):
        raise SystemExit(f"no masks under {root}: run python benchmarks/results.py first")
    body = "\n".join(
        [
            "## What PUN's search objective sees "
            f"(`{' '.join(['python benchmarks/search_objective.py', *sys.argv[1:]])}`)",
            "",
            f"Machine: {machine()}. The masks of the results grid (`{args.runs}`) at their "
            "seeds so far; losses are the untrained network's training loss on the held-out "
            "batches of the mask check (means over seeds); *every weight pruned* keeps no "
            "weight of the denoiser (only its biases). *Rescaled*: each layer's kept weights "
            "multiplied by 1/sqrt(its kept fraction) (the signal-propagation scaling of Lee et "
            "al. 2020), the mask itself and "
            f"{SHUFFLES} layer-shuffled copies per seed (min-max over all of them).",
            "",
            *table(losses),
        ]
    )
    print(body)
    write_section("search-objective", body)


if __name__ == "__main__":
    main()
