"""Report figures (matplotlib, Agg backend): reconstruction grids and training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def reconstruction_grid(
    targets: np.ndarray,
    recons: dict[str, np.ndarray],
    path: Path,
    title: str = "",
    error_scale: float | None = None,
) -> Path:
    """Grid of magnitude images: rows = slices; columns = target then each method, with a second
    row per slice of absolute error maps on one shared scale (default: 99th percentile of all
    errors).

    Args:
        targets: complex or magnitude ``(N, H, W)``.
        recons: method -> ``(N, H, W)`` reconstructions in the same order.
    """
    n = targets.shape[0]
    names = list(recons)
    cols = 1 + len(names)
    mags = {k: np.abs(v) for k, v in recons.items()}
    tmag = np.abs(targets)
    errors = {k: np.abs(v - tmag) for k, v in mags.items()}
    if error_scale is None:
        error_scale = float(np.percentile(np.concatenate([e.ravel() for e in errors.values()]), 99))
    fig, axes = plt.subplots(2 * n, cols, figsize=(1.7 * cols, 3.4 * n), squeeze=False)
    for i in range(n):
        vmax = float(tmag[i].max())
        axes[2 * i, 0].imshow(tmag[i], cmap="gray", vmin=0, vmax=vmax)
        axes[2 * i, 0].set_title("reference", fontsize=8)
        for j, name in enumerate(names, start=1):
            axes[2 * i, j].imshow(mags[name][i], cmap="gray", vmin=0, vmax=vmax)
            axes[2 * i, j].set_title(name, fontsize=8)
            axes[2 * i + 1, j].imshow(errors[name][i], cmap="inferno", vmin=0, vmax=error_scale)
        axes[2 * i + 1, 0].text(
            0.5, 0.5, f"|error|\n0..{error_scale:.3f}", ha="center", va="center", fontsize=8
        )
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.spines[:].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def training_curves(histories: dict[str, Sequence[dict]], path: Path) -> Path:
    """Training loss and validation PSNR against step for each trained model."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, history in histories.items():
        steps = [h["step"] for h in history if "loss" in h]
        losses = [h["loss"] for h in history if "loss" in h]
        (line,) = ax_loss.plot(steps, losses, lw=1, label=name)
        vsteps = [h["step"] for h in history if "val_psnr" in h]
        vals = [h["val_psnr"] for h in history if "val_psnr" in h]
        ax_val.plot(vsteps, vals, "o-", ms=3, lw=1, color=line.get_color(), label=name)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_val.set_xlabel("step")
    ax_val.set_ylabel("validation PSNR (dB)")
    ax_val.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def montage(images: np.ndarray, path: Path, columns: int = 6) -> Path:
    """A grid of magnitude images ``(N, H, W)`` (each scaled to its own maximum)."""
    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image in zip(axes.ravel(), images, strict=False):
        ax.imshow(np.abs(image), cmap="gray")
    fig.tight_layout()
    return _save(fig, path)


def layer_densities(masks: dict[str, Any], path: Path) -> Path:
    """Per-layer kept fraction of each method's mask (x: prunable tensors in name order).

    Args:
        masks: method name -> :class:`~punmri.pruning.Masks` (or any name -> bool-tensor mapping).
    """
    fig, ax = plt.subplots(figsize=(9, 3.2))
    names: list[str] = []
    for method, m in masks.items():
        names = sorted(m)
        dens = [float(m[n].float().mean()) for n in names]
        ax.plot(range(len(names)), dens, "o-", ms=3, lw=1, label=method)
    ax.set_xticks(range(len(names)))
    short = [n.removesuffix(".weight").removeprefix("denoiser.") for n in names]
    ax.set_xticklabels(short, fontsize=6, rotation=60)
    ax.set_yscale("log")
    ax.set_ylabel("kept fraction")
    ax.set_xlabel("prunable tensor")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return _save(fig, path)


def _ci_bars(ax: plt.Axes, labels: Sequence[str], series: dict[str, list[dict | None]]) -> None:
    """Grouped bars of ``{"mean", "ci_low", "ci_high"}`` entries with CI whiskers: one group per
    label, one bar per series (``None`` = no bar)."""
    width = 0.8 / max(len(series), 1)
    for i, (name, entries) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        means = [e["mean"] if e else np.nan for e in entries]
        low = [e["mean"] - e["ci_low"] if e else 0 for e in entries]
        high = [e["ci_high"] - e["mean"] if e else 0 for e in entries]
        ax.bar(xs, means, width, yerr=[low, high], capsize=2, label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(labels)))


def delta_bars(metrics: dict, methods: Sequence[str], suites: Sequence[str], path: Path) -> Path:
    """Paired PSNR difference to dense per suite (bars) with bootstrap 95% CI whiskers."""
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(suites) * max(1, len(methods)) ** 0.5), 3.4))
    series = {
        m: [metrics["methods"][m]["suites"].get(s, {}).get("delta_psnr") for s in suites]
        for m in methods
    }
    _ci_bars(ax, suites, series)
    ax.set_xticklabels(suites, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("PSNR - dense PSNR (dB)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return _save(fig, path)


def density_curves(metrics: dict, path: Path) -> Path | None:
    """PSNR against kept density per method: in distribution and mean over shifted suites."""
    summary = metrics.get("summary", {})
    curves: dict[str, list[tuple[float, float, float]]] = {}
    for name, entry in metrics["methods"].items():
        if "density" not in entry or name not in summary:
            continue
        base = name.split("@")[0]
        id_psnr = entry["suites"]["id"]["psnr"]
        ood = summary[name]["ood_delta_psnr"]["mean"]
        curves.setdefault(base, []).append((entry["density"], id_psnr, ood))
    if not any(len(c) > 1 for c in curves.values()):
        return None
    fig, (ax_id, ax_ood) = plt.subplots(1, 2, figsize=(9, 3.2))
    for base, points in sorted(curves.items()):
        points.sort()
        d = [p[0] for p in points]
        ax_id.plot(d, [p[1] for p in points], "o-", ms=3, label=base)
        ax_ood.plot(d, [p[2] for p in points], "o-", ms=3, label=base)
    dense = metrics["methods"].get("dense", {}).get("suites", {}).get("id", {}).get("psnr")
    if dense is not None:
        ax_id.axhline(dense, color="k", lw=0.8, ls="--", label="dense")
    has_ood = any(np.isfinite(p[2]) for points in curves.values() for p in points)
    for ax in (ax_id, ax_ood) if has_ood else (ax_id,):
        ax.set_xscale("log")
        ax.set_xlabel("kept density")
    if has_ood:
        ax_ood.axhline(0, color="k", lw=0.8, ls="--")
    ax_id.set_ylabel("ID PSNR (dB)")
    ax_ood.set_ylabel("mean OOD PSNR - dense (dB)")
    ax_id.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def pun_search_traces(
    searches: dict[str, tuple[Sequence[dict], dict]], density: float, path: Path
) -> Path:
    """PUN search diagnostics: expected density and loss against step, final keep-probability
    histogram.

    Args:
        searches: label -> (logged history of the search, probability histogram
            ``{"edges", "counts"}``), as stored in the mask metadata.
        density: the target density (dashed line).
    """
    fig, (ax_d, ax_l, ax_h) = plt.subplots(1, 3, figsize=(13, 3.4))
    for name, (history, histogram) in searches.items():
        steps = [e["step"] for e in history]
        ax_d.plot(steps, [e["expected_density"] for e in history], label=name)
        ax_l.plot(steps, [e["recon"] for e in history], label=name)
        counts = [max(c, 0.5) for c in histogram["counts"]]
        ax_h.stairs(counts, histogram["edges"], label=name)
    ax_d.axhline(density, color="k", lw=0.8, ls="--")
    ax_d.set(xlabel="search step", ylabel="expected density (mean p)")
    ax_l.set(xlabel="search step", ylabel="reconstruction loss (sampled mask)", yscale="log")
    ax_h.set(xlabel="keep probability p", ylabel="weights", yscale="log")
    ax_h.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def summary_bars(summaries: dict[str, dict[str, dict]], methods: Sequence[str], path: Path) -> Path:
    """ID and mean-OOD paired PSNR difference to dense (bars, bootstrap 95% CI whiskers) per
    method, for several groups of runs (e.g. training regimes): ``summaries[group][method]`` is a
    ``metrics.json`` summary line."""
    groups = list(summaries)
    fig, axes = plt.subplots(1, 2, figsize=(max(7, 1.6 * len(groups) * 2), 3.4), sharey=True)
    panels = (("id_delta_psnr", "in distribution"), ("ood_delta_psnr", "mean over shifts"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        series = {m: [summaries[g].get(m, {}).get(key) for g in groups] for m in methods}
        _ci_bars(ax, groups, series)
        ax.set_xticklabels(groups, fontsize=8)
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("PSNR - dense PSNR (dB)")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, path)
