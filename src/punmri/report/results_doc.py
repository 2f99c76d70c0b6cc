"""The generalization document ``docs/RESULTS.md``, assembled from the study's finished runs.

:func:`results_document` composes the Markdown (the question, the verdict table and the
over-fitting lines per regime, an optional hand-written discussion, the setting and its cost,
then the tables of :mod:`punmri.report.regime_tables` and each regime's own tables and figures);
:func:`write_results_doc` writes it with its figures (``figures/results/`` next to the document).
``benchmarks/results.py`` runs the regimes and calls :func:`write_results_doc`. Every number comes
from the finished runs.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..evaluate.summary import replicate_suites
from ..io import write_text_atomic
from .figures import summary_bars
from .markdown import cost_table, training_table
from .regime_tables import (
    batchnorm_tables,
    control_table,
    density_table,
    hard_shift_table,
    mask_table,
    overfitting_lines,
    quality_table,
    regime_map,
    regime_settings,
    seed_table,
    suite_table,
    verdict,
    verdict_table,
)
from .regimes import RegimeRun, pun_contrasts

#: Figures of a regime's run report copied into the document (when the run has them).
REGIME_FIGURES = ("delta_psnr.png", "density.png", "layer_density.png", "training.png")

#: Methods of the regime-map bar chart (those the runs have).
BAR_METHODS = ("pun", "pun-uniform", "dense-narrow", "pun-shuffled", "random", "snip", "imp")

#: Where the document's figures go, relative to the document.
FIGURES = Path("figures") / "results"


def _paths(runs: Mapping[str, RegimeRun], root: Path | None) -> str:
    """The runs' directories as inline code, relative to ``root`` when below it."""
    dirs = [run.run_dir for run in runs.values()]
    shown = [
        p.relative_to(root) if root is not None and p.is_relative_to(root) else p for p in dirs
    ]
    return ", ".join(f"`{p}`" for p in shown)


def _setting(regimes: Mapping[str, RegimeRun]) -> str:
    """The paragraph stating the setting the regimes share (from the first regime's config;
    :func:`~punmri.report.regime_tables.regime_settings` shows what differs)."""
    cfg = next(iter(regimes.values())).config
    d, p, m, t, pr = cfg["data"], cfg["physics"], cfg["model"], cfg["train"], cfg["prune"]
    swept = [r for r in regimes if len(density_table({r: regimes[r]})) > 2]
    finals = [r for r, run in regimes.items() if "final" in run.checkpoints]
    if len(finals) == len(regimes):
        tested = "at its best-validation checkpoint (`NAME`) and at its final step (`NAME~final`)"
    elif finals:
        tested = (
            "at its best-validation checkpoint (`NAME`), and in "
            f"{', '.join(finals)} also at its final step (`NAME~final`)"
        )
    else:
        tested = "at its best-validation checkpoint"
    sweep = f" (PUN also at {pr['densities']} in {', '.join(swept)})" if swept else ""
    return (
        f"Data: `{d['source']}` {d['resolution_mm']} mm {d['view']} slices "
        f"{d['image_size'][0]}x{d['image_size'][1]}, {p['coils']} coils, {p['mask_kind']} "
        f"{p['acceleration']:g}x (SNR per regime below); MoDL K={m['unrolls']}, "
        f"CG={m['cg_iterations']}; Adam lr {t['lr']:g}, batch {t['batch_size']}, validation every "
        f"{t['val_every']} steps; every network is tested {tested}; pruning at density "
        f"{pr['density']:g}{sweep}."
        " Regimes (table below): `fixed` = one undersampling mask, phase and coil set per "
        "training slice drawn once, `fresh` = redrawn for every sample; the training slices are "
        "evenly spaced over the training slab."
    )


def _cost(cost: Mapping[str, Any] | None) -> str:
    """The sentence stating what the study cost: the wall time of the whole results run
    (``cost``: ``{"wall_s", "jobs", "machine"}``, recorded by ``benchmarks/results.py``) and
    where each network's own cost is."""
    where = "Per-network costs are in each regime's cost table below."
    if not cost:
        return where
    return (
        f"Cost: the whole results run took {cost['wall_s'] / 3600:.1f} h of wall time with "
        f"{cost['jobs']} training processes at a time on {cost['machine']} (resumed sessions "
        f"added up). {where}"
    )


def _batchnorm_section(
    regimes: Mapping[str, RegimeRun], ablation: Mapping[str, RegimeRun], root: Path | None
) -> list[str]:
    """The section comparing dense, PUN and random with and without BatchNorm."""
    per_seed, differences = batchnorm_tables(regimes, ablation)
    return [
        "## Dense training without batch normalisation",
        "",
        "The same training with a denoiser without BatchNorm (`model.batchnorm=false`; dense, PUN "
        f"and `random` only; run directories {_paths(ablation, root)}), to test whether the "
        "unstable dense trainings come from batch statistics at batch size 2 in a denoiser shared "
        "by all unrolls. ID / mean OOD PSNR (dB) per seed, in brackets the largest fall of "
        "validation PSNR between consecutive checks (dB):",
        "",
        *per_seed,
        "",
        "Paired differences (same slices and seeds, bootstrap 95% CIs):",
        "",
        *differences,
        "",
    ]


def _replicates(regimes: Mapping[str, RegimeRun]) -> str:
    """A sentence naming the suites that repeat a regime's training distribution, if any."""
    named = [
        f"`{name}` in {label}"
        for label, run in regimes.items()
        for name in sorted(replicate_suites(run.metrics))
    ]
    if not named:
        return ""
    return (
        f" Suites that repeat a regime's training distribution ({', '.join(named)}) are no "
        "shift: they are listed in the regime's per-suite table but left out of every OOD mean."
    )


def _mask_section(regimes: Mapping[str, RegimeRun]) -> list[str]:
    """What the masks keep (:func:`mask_table`), when the runs saved masks."""
    table = mask_table(regimes)
    if not table:
        return []
    return [
        "## What the masks keep",
        "",
        "Kept percentage of each layer (mean over seeds) and the loss of the untrained "
        "network on held-out training batches (the loss PUN's search minimises): when the "
        "mask and its layer-shuffled copies give the same loss, the search has found nothing "
        "beyond its per-layer counts on its own objective (docs/BENCHMARKS.md, section "
        "`search-objective`, compares these losses with the network's loss when every weight "
        "is pruned).",
        "",
        *table,
        "",
    ]


def _regime_section(label: str, run: RegimeRun) -> list[str]:
    """One regime's per-suite table, training and cost tables and its figures (those it has,
    linked under :data:`FIGURES` as ``LABEL_NAME.png``)."""
    lines = [
        f"## Regime `{label}`",
        "",
        "Per-suite difficulty (zero-filled and dense PSNR) and paired PSNR difference to dense:",
        "",
        *suite_table(run),
        "",
        "Training (means over seeds; a final-step validation PSNR below the best is "
        "over-fitting that the best-validation checkpoint avoids):",
        "",
        training_table(run.metrics),
        "",
        "Cost per network (mean over seeds):",
        "",
        cost_table(run.metrics),
        "",
    ]
    for fig in REGIME_FIGURES:
        if (run.run_dir / "figures" / fig).is_file():
            lines += [f"![{label} {fig}]({(FIGURES / f'{label}_{fig}').as_posix()})", ""]
    return lines


def results_document(
    regimes: Mapping[str, RegimeRun],
    command: str,
    discussion: str | None = None,
    ablation: Mapping[str, RegimeRun] | None = None,
    root: Path | None = None,
    cost: Mapping[str, Any] | None = None,
) -> str:
    """The Markdown of ``docs/RESULTS.md`` (figures are not written; see
    :func:`write_results_doc`).

    Args:
        regimes: regime name -> finished run, in the document's order (at least one; the setting
            is read from the first).
        command: the command that generated the document (stated under the title).
        discussion: hand-written Markdown about these numbers, placed under the verdict.
        ablation: regime name (a key of ``regimes``) -> its run without BatchNorm
            (:data:`~punmri.report.regimes.NO_BATCHNORM`).
        root: run directories below it are shown relative to it (the repository root).
        cost: the results run's recorded cost, ``{"wall_s", "jobs", "machine"}``.
    """
    if not regimes:
        raise ValueError("regimes is empty: the document needs at least one finished run")
    contrasts = pun_contrasts(regimes)
    lines = [
        "# Does pruning at initialisation (PUN) generalise better than dense MoDL?",
        "",
        f"Generated by `{command}` from the run directories {_paths(regimes, root)}.",
        "",
        "## Verdict",
        "",
        "PUN minus dense, minus `dense-narrow` (a dense MoDL as narrow as PUN's kept weights) and "
        "minus `pun-shuffled` (PUN's mask shuffled within each layer: its layer-count control), "
        "in distribution (ID) and as the mean over the shifted suites (OOD), at the "
        "best-validation checkpoints: paired mean PSNR differences (dB) with 95% confidence "
        "intervals; *better* / *worse* when the interval excludes 0, else *level*; in brackets "
        "after it, `seeds lo..hi`, the range over the training seeds of each seed's own mean "
        "difference (the seed-to-seed spread; the regime map and the control tables show it "
        "too).",
        "",
        *verdict_table(regimes),
        "",
    ]
    overfit = overfitting_lines(regimes)
    if overfit:
        lines += ["Over-fitting of dense, and the final-step checkpoints:", "", *overfit, ""]
    if ablation:
        nobn = {f"{r} without BatchNorm": run for r, run in ablation.items()}
        lines += [*verdict(nobn, pun_contrasts(nobn)), ""]
    if discussion is not None:
        lines += [discussion.strip(), ""]
    lines += [
        "## Setting",
        "",
        _setting(regimes),
        "",
        *regime_settings(regimes),
        "",
        _cost(cost),
        "",
        "Differences are paired (same slices, same seeds; two methods trained at different "
        "seeds are paired over the seeds both have) mean differences with hierarchical "
        "bootstrap 95% confidence intervals: each replicate resamples the test slices and the "
        "training seeds. OOD is the mean over the shifted suites, each shift weighted equally. "
        "`pun` is the paper's PUN-IT search (one global ranking); `pun-uniform` the per-layer "
        "search with exact layer counts; `dense-narrow` a dense MoDL whose width gives about "
        "PUN's kept weights; `pun-shuffled` PUN's mask shuffled within each layer (the control "
        "that tells whether PUN's choice of weights matters or only its layer allocation); "
        "`random` a uniform per-layer random mask. `NAME~final` is network `NAME` at its final "
        "training step instead of its best-validation checkpoint." + _replicates(regimes),
        "",
    ]
    lines += [
        "## Regime map: difference to dense",
        "",
        *regime_map(regimes),
        "",
        f"![ID and OOD difference to dense per regime]({(FIGURES / 'regimes.png').as_posix()})",
        "",
        "## Only the shifts harder than `id`",
        "",
        "Mean PSNR difference to dense (dB) over the shifted suites whose zero-filled PSNR is "
        "below the `id` suite's:",
        "",
        *hard_shift_table(regimes),
        "",
        "## Seed by seed",
        "",
        "ID / mean OOD PSNR (dB) of each seed's network (with few seeds the intervals above are "
        "too narrow when the seeds disagree; this is how much they do):",
        "",
        *seed_table(regimes),
        "",
        "## PUN against its controls",
        "",
        *control_table(contrasts),
        "",
        *_mask_section(regimes),
        "## How good the reference is",
        "",
        "Mean PSNR (dB) in distribution and over the shifted suites:",
        "",
        *quality_table(regimes),
        "",
    ]
    sweep = density_table(regimes)
    if sweep:
        lines += ["## PUN at other densities", "", *sweep, ""]
    if ablation:
        lines += _batchnorm_section(regimes, ablation, root)
    for label, run in regimes.items():
        lines += _regime_section(label, run)
    return "\n".join(lines) + "\n"


_SECTION = re.compile(r"<!-- BEGIN (\S+) -->.*?<!-- END \1 -->", re.S)


def kept_sections(text: str) -> list[str]:
    """The ``<!-- BEGIN name --> ... <!-- END name -->`` blocks of ``text``: sections of the
    document that other scripts write (``benchmarks/structured_results.py``) and that rewriting
    the regime study keeps."""
    return [m.group(0) for m in _SECTION.finditer(text)]


def write_results_doc(
    regimes: Mapping[str, RegimeRun],
    doc: str | Path,
    command: str,
    discussion: str | None = None,
    ablation: Mapping[str, RegimeRun] | None = None,
    root: Path | None = None,
    cost: Mapping[str, Any] | None = None,
) -> Path:
    """Write :func:`results_document` to ``doc`` and its figures to ``figures/results/`` next to
    it: the regime-map bar chart (``regimes.png``) and each regime's :data:`REGIME_FIGURES`
    (copied as ``REGIME_NAME.png``). Arguments as :func:`results_document`; returns ``doc``."""
    doc = Path(doc)
    text = results_document(regimes, command, discussion, ablation, root, cost)
    if doc.is_file():  # sections other scripts own (e.g. "structured") are carried over
        kept = kept_sections(doc.read_text())
        if kept:
            text = text.rstrip("\n") + "\n\n" + "\n\n".join(kept) + "\n"
    figures = doc.parent / FIGURES
    figures.mkdir(parents=True, exist_ok=True)
    bars = [m for m in BAR_METHODS if any(m in run.summary for run in regimes.values())]
    summary_bars({r: run.summary for r, run in regimes.items()}, bars, figures / "regimes.png")
    for label, run in regimes.items():
        for fig in REGIME_FIGURES:
            src = run.run_dir / "figures" / fig
            if src.is_file():
                shutil.copyfile(src, figures / f"{label}_{fig}")
    write_text_atomic(doc, text)
    return doc


__all__ = [
    "REGIME_FIGURES",
    "RegimeRun",
    "kept_sections",
    "results_document",
    "write_results_doc",
]
