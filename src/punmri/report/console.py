"""The one-screen console summary printed at the end of ``punmri run``, ``eval`` and ``report``."""

from __future__ import annotations

import math

from ..evaluate.summary import replicate_suites
from .markdown import fmt_ci, fmt_num, fmt_spread, method_order


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def summary_text(metrics: dict, id_suite: str = "id") -> str:
    """One row per method: ID PSNR/SSIM, mean PSNR over the other suites, and (for methods
    compared with dense) the paired ID and OOD PSNR differences with 95% CIs, each followed by
    the range over seeds of the per-seed mean differences."""
    summary = metrics.get("summary", {})
    header = [
        *("method", "ID PSNR", "ID SSIM", "OOD PSNR"),
        *("ΔID vs dense", "seeds", "ΔOOD vs dense", "seeds"),
    ]
    rows = [header]
    same = replicate_suites(metrics, id_suite)
    n_ood = 0
    for name in method_order(metrics):
        suites = metrics["methods"][name]["suites"]
        idd = suites.get(id_suite, {})
        ood = [e.get("psnr") for s, e in suites.items() if s != id_suite and s not in same]
        n_ood = max(n_ood, len(ood))
        s = summary.get(name, {})
        rows.append(
            [
                name,
                fmt_num(idd.get("psnr"), 2),
                fmt_num(idd.get("ssim"), 4),
                fmt_num(_mean(ood), 2) if ood else "-",
                fmt_ci(s.get("id_delta_psnr")),
                fmt_spread(s.get("id_delta_psnr_seeds"), sd=False),
                fmt_ci(s.get("ood_delta_psnr")),
                fmt_spread(s.get("ood_delta_psnr_seeds"), sd=False),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    left_out = f" ({', '.join(sorted(same))}: the training distribution, left out)" if same else ""
    note = (
        f"PSNR in dB; OOD = mean over {n_ood} shifted suites{left_out}; Δ = paired difference "
        "to dense "
        "[hierarchical bootstrap 95% CI: seeds and slices resampled]; seeds = min..max over "
        "seeds of each seed's mean difference."
    )
    return "\n".join([*lines, note])
