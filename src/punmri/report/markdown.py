"""The run report: ``report.md`` (paste-ready tables and figures) and a self-contained HTML copy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig
from ..io import write_text_atomic
from ..models import count_parameters
from ..train.device import device_label
from .figures import (
    delta_bars,
    density_curves,
    layer_densities,
    pun_search_traces,
    reconstruction_grid,
    training_curves,
)
from .html import markdown_to_html

BASELINE_ORDER = ("zero-filled", "cs-l1")


def fmt_num(value: Any, digits: int) -> str:
    """``value`` with ``digits`` decimals; ``n/a`` for None or a non-finite value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def method_order(metrics: dict) -> list[str]:
    """Baselines first, then dense, then everything else in config order."""
    names = list(metrics["methods"])
    first = [n for n in (*BASELINE_ORDER, "dense") if n in names]
    return first + [n for n in names if n not in first]


def results_cell(entry: dict | None) -> str:
    """One suite entry as ``PSNR ± std / SSIM`` (``28.12 ± 1.20 / 0.8123``); ``-`` when the
    method was not evaluated on the suite."""
    if entry is None:
        return "-"
    return (
        f"{fmt_num(entry['psnr'], 2)} ± {fmt_num(entry.get('psnr_std'), 2)} / "
        f"{fmt_num(entry['ssim'], 4)}"
    )


def results_table(metrics: dict, suites: Sequence[str]) -> str:
    """Markdown table: a row per suite, a column per method (:func:`method_order`), each cell
    ``PSNR ± std / SSIM`` (mean over slices and seeds; :func:`results_cell`).

    Suites are the long axis (17 in the standard shift set), so they run down the page and the
    table stays as wide as the number of methods.
    """
    names = method_order(metrics)
    lines = ["| suite | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for suite in suites:
        cells = [results_cell(metrics["methods"][n]["suites"].get(suite)) for n in names]
        lines.append(f"| {suite} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


COST_COLUMNS = (
    ("mask_wall_s", "mask search (s)"),
    ("mask_backward", "mask bwd passes"),
    ("train_wall_s", "training (s)"),
    ("train_backward", "training bwd passes"),
)


def cost_table(metrics: dict) -> str:
    """Markdown table of per-method costs (mean per seed): finding the mask, then training.

    After-training methods (``pun-at``, ``magnitude-at``, ``imp``, ``pun-wt``) count the dense
    or joint training they need before their mask exists as mask cost.
    """
    rows = [(n, e["costs"]) for n, e in metrics["methods"].items() if "costs" in e]
    if not rows:
        return ""
    pun = dict(rows).get("pun", {})
    head = [label for _, label in COST_COLUMNS] + ["total (s)", "mask cost / PUN's"]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, c in rows:
        cells = [fmt_num(c.get(k, 0.0), 1 if k.endswith("_s") else 0) for k, _ in COST_COLUMNS]
        cells.append(fmt_num(c.get("mask_wall_s", 0.0) + c.get("train_wall_s", 0.0), 1))
        mask_s = c.get("mask_wall_s", 0.0)
        ratio = mask_s / pun["mask_wall_s"] if pun.get("mask_wall_s") and mask_s else None
        cells.append("-" if ratio is None else f"{ratio:.2f}x")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_ci(e: dict | None, digits: int = 2) -> str:
    """``{"mean", "ci_low", "ci_high"}`` as ``+m [+lo, +hi]``; ``-`` when missing or not finite."""
    if not e or e.get("mean") is None or not math.isfinite(e["mean"]):
        return "-"
    return f"{e['mean']:+.{digits}f} [{e['ci_low']:+.{digits}f}, {e['ci_high']:+.{digits}f}]"


def fmt_spread(e: dict | None, digits: int = 2, sd: bool = True) -> str:
    """A seed spread (:func:`punmri.evaluate.statistics.seed_spread`: the per-seed mean
    differences) as ``+lo..+hi (sd s)``; ``-`` when missing, with one seed or not finite."""
    keys = ("min", "max", "std") if sd else ("min", "max")
    if not e or (e.get("n") or 0) < 2:
        return "-"
    if not all(isinstance(e.get(k), int | float) and math.isfinite(e[k]) for k in keys):
        return "-"
    text = f"{e['min']:+.{digits}f}..{e['max']:+.{digits}f}"
    return f"{text} (sd {e['std']:.{digits}f})" if sd else text


def delta_table(metrics: dict, suites: Sequence[str]) -> str:
    """Markdown table: method x suite paired PSNR difference to dense with 95% CI, plus each
    suite's difficulty (zero-filled and dense PSNR) and what shifted."""
    info = metrics.get("suites", {})
    head = "| suite | shift | zero-filled PSNR | dense PSNR | "
    names = [n for n in method_order(metrics) if n != "dense"]
    lines = [head + " | ".join(names) + " |", "|---" * (4 + len(names)) + "|"]
    for suite in suites:
        i = info.get(suite, {})
        cells = [
            fmt_ci(metrics["methods"][n]["suites"].get(suite, {}).get("delta_psnr")) for n in names
        ]
        lines.append(
            f"| {suite} | {i.get('description', '')} | {fmt_num(i.get('zero-filled_psnr'), 2)} | "
            f"{fmt_num(i.get('dense_psnr'), 2)} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def summary_table(metrics: dict) -> str:
    """One line per method: ID and mean OOD paired differences to dense (PSNR, SSIM), 95% CIs,
    each followed by its seed-to-seed spread (range and sd of the per-seed mean differences)."""
    summary = metrics.get("summary", {})
    if not summary:
        return ""
    keys = (
        ("id_delta_psnr", 2),
        ("ood_delta_psnr", 2),
        ("id_delta_ssim", 4),
        ("ood_delta_ssim", 4),
    )
    lines = [
        "| method | ID ΔPSNR (dB) | ID seeds | OOD ΔPSNR (dB) | OOD seeds | ID ΔSSIM | ID seeds | "
        "OOD ΔSSIM | OOD seeds |",
        "|---" * 9 + "|",
    ]
    for name in method_order(metrics):
        s = summary.get(name)
        if s is None:
            continue
        cells = [
            f"{fmt_ci(s.get(key), digits)} | {fmt_spread(s.get(f'{key}_seeds'), digits)}"
            for key, digits in keys
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def lesion_table(metrics: dict, suites: Sequence[str]) -> str:
    """Markdown table of the lesion-region metrics of every suite that has them: ROI PSNR, ROI
    SSIM and relative lesion-contrast error (lower is better), per method."""
    rows = []
    for suite in suites:
        for name in method_order(metrics):
            e = metrics["methods"][name]["suites"].get(suite, {})
            if "roi_psnr" in e:
                rows.append(
                    f"| {suite} | {name} | {fmt_num(e['roi_psnr'], 2)} | "
                    f"{fmt_num(e.get('roi_ssim'), 4)} | "
                    f"{fmt_num(e.get('lesion_contrast_error'), 3)} |"
                )
    if not rows:
        return ""
    head = "| suite | method | ROI PSNR (dB) | ROI SSIM | lesion contrast error |"
    return "\n".join([head, "|---|---|---|---|---|", *rows])


def training_table(metrics: dict) -> str:
    """Markdown table: per trained method, steps run, best step and the best and final
    checkpoints' validation PSNR (means over seeds), and how many seeds stopped early."""
    rows = []
    for name in method_order(metrics):
        t = metrics["methods"][name].get("training")
        if not t:
            continue
        mean = {k: float(np.mean(t[k])) for k in ("steps", "best_step", "best_val_psnr")}
        final = float(np.mean(t["final_val_psnr"]))
        rows.append(
            f"| {name} | {mean['steps']:.0f} | {mean['best_step']:.0f} | "
            f"{fmt_num(mean['best_val_psnr'], 2)} | {fmt_num(final, 2)} | "
            f"{sum(t['stopped_early'])}/{len(t['stopped_early'])} |"
        )
    if not rows:
        return ""
    head = (
        "| method | steps | best step | best val PSNR (dB) | final val PSNR (dB) | stopped early |"
    )
    return "\n".join([head, "|---|---|---|---|---|---|", *rows])


def margins(metrics: dict, suite: str = "id") -> list[str]:
    """Sentences stating the dense network's PSNR margin over the classical baselines."""
    methods = metrics["methods"]
    if "dense" not in methods or suite not in methods["dense"]["suites"]:
        return []
    dense = methods["dense"]["suites"][suite]["psnr"]
    out = []
    for base in BASELINE_ORDER:
        if base in methods and suite in methods[base]["suites"]:
            diff = dense - methods[base]["suites"][suite]["psnr"]
            out.append(f"- dense MoDL vs {base} on `{suite}`: {diff:+.2f} dB PSNR")
    return out


def one_subject_note(cfg: RunConfig) -> str:
    """A sentence saying that the slices come from one subject (one volume), for the setup (the
    statistics section refers to it); ``""`` for measured k-space (``data.source: fastmri``,
    many volumes)."""
    source = cfg.data.source
    if source == "fastmri":
        return ""
    what = {
        "colin27": "the `colin27` T1 head (27 scans of one person, averaged)",
        "phantom": "one procedural head phantom",
    }.get(source, f"the volume `{source}`")
    return (
        f"All slices come from one subject: the training, validation and test slabs and every "
        f"suite cut from them or from the other views are slices of {what}. They are not "
        "independent subjects, so the intervals describe this head (and these training seeds), "
        "not a population of subjects."
    )


def setup_section(cfg: RunConfig, data: Any, n_params: int) -> str:
    """The experimental setup in a few lines."""
    d, p, m, t = cfg.data, cfg.physics, cfg.model, cfg.train
    splits = data.splits
    snr = "noiseless" if p.snr_db is None else f"SNR {p.snr_db:g} dB"
    regime = "fresh per sample" if p.fresh else "fixed per slice"
    if d.source == "fastmri":
        accelerations = "/".join(f"{a:g}" for a in p.accelerations or (p.acceleration,))
        fractions = "/".join(f"{c:g}" for c in p.center_fractions or (p.center_fraction,))
        data_lines = [
            f"- Data: measured multi-coil k-space (fastMRI format) in `{d.root}`, at native "
            f"resolution (readout oversampling removed, ESPIRiT maps); train/val/test: "
            f"{len(data.train_source(0))}/{len(data.val)}/{len(data.suites[0])} slices.",
            f"- Sampling: retrospective fastMRI `{p.mask_kind}` masks at {accelerations}x "
            f"(centre {fractions}), {'redrawn every epoch' if p.fresh else 'fixed per slice'} in "
            "training, one fixed mask per test volume.",
        ]
    else:
        data_lines = [
            f"- Data: `{d.source}` {d.view} slices at {d.resolution_mm:g} mm, "
            f"{d.image_size[0]}x{d.image_size[1]} pixels; train/val/test slabs of "
            f"{len(splits['train'])}/{len(splits['val'])}/{len(splits['test'])} slices "
            f"(gap {d.slab_gap} slices).",
            f"- Physics: {p.coils} simulated coils, `{p.mask_kind}` sampling at "
            f"{p.acceleration:g}x (centre {p.center_fraction:g}), {snr}, smooth random phase; "
            f"simulation {regime}.",
            f"- Subjects: {one_subject_note(cfg)}",
        ]
    return "\n".join(
        [
            *data_lines,
            f"- Model: MoDL, {m.unrolls} unrolls, {m.cg_iterations} CG steps, `{m.denoiser}` "
            f"denoiser (width {m.channels}, depth {m.depth}, "
            f"{'shared' if m.shared else 'one per unroll'}), {n_params:,} parameters.",
            f"- Training: Adam lr {t.lr:g}, {t.loss} loss, {t.schedule} schedule, batch "
            f"{t.batch_size}, up to {t.steps} steps, best validation-PSNR checkpoint; "
            f"seeds {list(cfg.seeds)}.",
            f"- Device: {device_label(t.device)}, for mask searches, training and evaluation.",
            "- Metrics: magnitude PSNR/SSIM/NMSE per slice, data range = slice maximum of the "
            "reference (fastMRI convention), SSIM 7x7 window; mean ± std over slices and seeds.",
        ]
    )


def mask_section(trained: Sequence[Any], density: float, figures: Path) -> list[str]:
    """Per-layer densities of the masks and, for masks from a PUN search, its traces and the
    untrained-network loss check against layer-shuffled controls (first seed only)."""
    first = [t for t in trained if t.masks is not None and t.spec.seed == trained[0].spec.seed]
    if not first:
        return []
    layer_densities({t.spec.name: t.masks for t in first}, figures / "layer_density.png")
    parts = [
        "Per-layer kept fraction of each mask:",
        "",
        "![layers](figures/layer_density.png)",
        "",
    ]
    searched = [t for t in first if "pun_history" in t.masks.metadata]
    if searched:
        traces = {
            t.spec.name: (
                t.masks.metadata["pun_history"],
                t.masks.metadata["pun"]["probability_histogram"],
            )
            for t in searched
        }
        pun_search_traces(traces, density, figures / "pun_search.png")
        parts += ["PUN mask search: loss of the untrained network on held-out batches", ""]
        for t in searched:
            c = t.masks.metadata.get("check", {})
            if c:
                parts.append(
                    f"- `{t.spec.name}`: {c['loss_mask']:.4f} under the mask, "
                    f"{c['loss_shuffled_mean']:.4f} under layer-shuffled controls, "
                    f"{c['loss_dense']:.4f} dense"
                )
        parts += ["", "![PUN search](figures/pun_search.png)", ""]
    return parts


def write_report(
    run_dir: Path,
    cfg: RunConfig,
    metrics: dict,
    data: Any,
    images: dict[tuple[str, str], np.ndarray],
    trained: Sequence[Any],
) -> Path:
    """Write ``report.md``, ``report.html`` and ``figures/`` into ``run_dir``."""
    figures = run_dir / "figures"
    suites = [s.name for s in data.suites]
    parts = [f"# punmri report: {cfg.name}", "", "## Setup", ""]
    n_params = count_parameters(trained[0].model) if trained else 0
    parts += [setup_section(cfg, data, n_params), "", "## Results", ""]
    parts += [
        "PSNR (dB) ± std over slices / SSIM, a row per test suite, a column per method:",
        "",
        results_table(metrics, suites),
        "",
    ]
    if metrics.get("volumes"):
        parts += [
            "Per volume, as fastMRI evaluates (PSNR and NMSE over the volume, SSIM the mean over "
            "its slices, data range = the volume's maximum; the reconstruction's magnitude is "
            "centre-cropped to the stored RSS reference), mean ± std over volumes / SSIM:",
            "",
            results_table({"methods": metrics["volumes"]}, suites),
            "",
        ]
    parts += margins(metrics)
    if metrics.get("summary"):
        parts += [
            "",
            "## Differences to dense (paired over the same slices and seeds)",
            "",
            "Mean difference with a hierarchical bootstrap 95% confidence interval: each "
            "replicate resamples the training seeds and the test slices (the same slices for "
            "every seed, and for the mean over shifts the same slice indices in every suite "
            "re-simulated from the test slab). Beside it, *seeds*: the range (and sd) over "
            "seeds of each seed's own mean difference. With few seeds the interval is too "
            "narrow when seeds disagree (with 3 seeds it holds the true difference in at most "
            "75% of studies), so read the two together. OOD = mean over the shifted suites, each "
            "weighted equally. A shift easier than `id` (higher zero-filled PSNR) is no evidence "
            "of robustness.",
            *(
                ["", "The intervals describe one subject's slices (see Setup), not a population."]
                if one_subject_note(cfg)
                else []
            ),
            "",
            summary_table(metrics),
            "",
            delta_table(metrics, suites),
            "",
        ]
        bars = [n for n in method_order(metrics) if n not in ("dense", *BASELINE_ORDER)]
        if bars:
            delta_bars(metrics, bars, suites, figures / "delta_psnr.png")
            parts += ["![PSNR difference to dense per suite](figures/delta_psnr.png)", ""]
        if density_curves(metrics, figures / "density.png"):
            parts += ["![PSNR against density](figures/density.png)", ""]
    lesions = lesion_table(metrics, suites)
    if lesions:
        parts += [
            "",
            "## Lesion regions",
            "",
            "Metrics on the inserted lesions only (ROI PSNR over lesion pixels, SSIM on the "
            "lesion's padded bounding box, relative error of the lesion-to-surround contrast):",
            "",
            lesions,
            "",
        ]
    training = training_table(metrics)
    if training:
        parts += [
            "",
            "## Training",
            "",
            "Test metrics use the best-validation checkpoint; the final checkpoint's validation "
            "PSNR shows how much over-fitting early stopping avoided (means over seeds):",
            "",
            training,
            "",
        ]
    costs = cost_table(metrics)
    if costs:
        parts += ["", "## Cost", "", costs]
    parts += ["", "## Figures", ""]
    for suite in data.suites:
        recons = {m: img for (m, s), img in images.items() if s == suite.name}
        if not recons:
            continue
        n = min(len(v) for v in recons.values())
        targets = np.stack([smp.target for smp in suite.samples[:n]])
        path = reconstruction_grid(
            targets, recons, figures / f"recon_{suite.name}.png", title=f"suite: {suite.name}"
        )
        parts += [f"![reconstructions, {suite.name}](figures/{path.name})", ""]
    parts += mask_section(trained, cfg.prune.density, figures)
    histories = {f"{t.spec.name} s{t.spec.seed}": t.result.history for t in trained}
    if histories:
        training_curves(histories, figures / "training.png")
        parts += ["![training curves](figures/training.png)", ""]
    if metrics.get("wall_s") is not None:
        parts += ["", f"Total wall time: {metrics['wall_s']:.0f} s.", ""]
    text = "\n".join(parts)
    write_text_atomic(run_dir / "report.md", text)
    write_text_atomic(run_dir / "report.html", markdown_to_html(text, run_dir, cfg.name))
    return run_dir / "report.md"
