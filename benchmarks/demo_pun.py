"""PUN demo benchmark -> docs/BENCHMARKS.md section "demo-pun".

Times ``punmri run --config configs/demo-pun.yaml`` from scratch (data, dense + PUN + its
layer-count control, baselines, 17 suites, report; target <= 20 minutes on a 2-core CPU) and
records its summary lines (paired ID and OOD PSNR differences to dense).

Usage: ``python benchmarks/demo_pun.py`` (the run goes to a temporary directory, timed from
scratch).
"""

from __future__ import annotations

from _docs import machine, write_section
from foundation import run_demo

from punmri.report.markdown import fmt_ci

CONFIG = "configs/demo-pun.yaml"


def render(wall: float, metrics: dict) -> str:
    """The section: wall time against the target, ID PSNR and the summary lines."""
    m = metrics["methods"]
    lines = [
        "## PUN demo (`python benchmarks/demo_pun.py`)",
        "",
        f"Machine: {machine()}.",
        "",
        f"**`punmri run --config {CONFIG}`** from scratch (`make demo-pun`): {wall:.0f} s wall "
        f"time ({'meets' if wall <= 1200 else 'MISSES'} the <= 1200 s target); "
        f"{len(metrics['suites'])} suites, one seed.",
        "",
        "| method | ID PSNR (dB) | ID ΔPSNR vs dense | OOD ΔPSNR vs dense | mask (s) | "
        "training (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in m.items():
        s = metrics.get("summary", {}).get(name)
        c = entry.get("costs", {})
        lines.append(
            f"| {name} | {entry['suites']['id']['psnr']:.2f} | "
            f"{fmt_ci(s and s['id_delta_psnr'])} | {fmt_ci(s and s['ood_delta_psnr'])} | "
            f"{c.get('mask_wall_s', 0.0):.0f} | {c.get('train_wall_s', 0.0):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    wall, metrics = run_demo(CONFIG)
    print(write_section("demo-pun", render(wall, metrics)))


if __name__ == "__main__":
    main()
