"""PUN mask-search tuning -> docs/BENCHMARKS.md section "pun-search" and docs/figures/.

For each setting of the search of ``--method`` (``pun-uniform``, the per-layer search, by
default: ``prune.pun_uniform.*`` overrides; or ``pun``, the paper's global PUN-IT preset:
``prune.pun.*``), find the PUN mask of the freshly
initialised demo MoDL and compare the *untrained* network's loss on held-out training batches
under (a) the dense weights, (b) the PUN mask and (c) layer-shuffled PUN masks (random masks
with PUN's per-layer counts: the fair control). The search learns something beyond the per-layer
allocation only if (b) is clearly below (c).

Usage::

    python benchmarks/pun_search.py --density 0.05 \
        --setting "steps=300" --setting "steps=300,lr=0.05,tau1=0.1" ...

Each setting's result is cached in ``runs/bench-pun-search/`` (resumable).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import time
from pathlib import Path

from _docs import machine, write_section  # noqa: E402

from punmri.config import load_config  # noqa: E402
from punmri.methods import MethodContext, find_method_mask, mask_check  # noqa: E402
from punmri.models import build_model  # noqa: E402
from punmri.pipeline import load_run_data  # noqa: E402
from punmri.report.figures import pun_search_traces  # noqa: E402
from punmri.specs import ModelSpec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "runs" / "bench-pun-search"
DEFAULT_SETTINGS = ("steps=300",)


#: ``--method`` -> the config section of its search.
SECTIONS = {"pun-uniform": "pun_uniform", "pun": "pun"}


def resolved_search(cfg, density: float, method: str) -> dict:
    """The search settings that matter, with the effective initial probability."""
    pun = dataclasses.asdict(getattr(cfg.prune, SECTIONS[method]))
    pun["init_prob"] = pun["init_prob"] if pun["init_prob"] is not None else density
    for key in ("log_every", "eval_batches"):
        pun.pop(key)
    if method == "pun":
        return {**pun, "allocation": "global", "guard": cfg.prune.pun_guard}
    return {**pun, "allocation": cfg.prune.pun_allocation}


def label(resolved: dict, density: float, method: str) -> str:
    """The settings that differ from the package defaults."""
    default = resolved_search(load_config(None, [f"prune.density={density}"]), density, method)
    diff = [
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in resolved.items()
        if default.get(k) != v
    ]
    return ", ".join(diff) or "defaults"


def run_setting(
    config: str, density: float, seed: int, setting: str, extra: list[str], method: str
) -> dict:
    """Search one mask and check it; cached by (config, density, seed, resolved settings)."""
    section = SECTIONS[method]
    overrides = [
        kv if "." in kv.split("=")[0] else f"prune.{section}.{kv}"
        for kv in setting.split(",")
        if kv
    ] + extra
    cfg = load_config(ROOT / config, [*overrides, f"prune.density={density}"])
    resolved = resolved_search(cfg, density, method)
    blob = json.dumps([config, density, seed, resolved], sort_keys=True)
    path = CACHE / f"{hashlib.sha1(blob.encode()).hexdigest()[:12]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    data = load_run_data(cfg)
    ctx = MethodContext(cfg, CACHE, data, progress=False)
    spec = ModelSpec(method, seed, density, density)
    model = build_model(cfg.model, seed)
    t0 = time.perf_counter()
    masks = find_method_mask(ctx, spec, model, method, None)
    search_s = time.perf_counter() - t0
    check = mask_check(ctx, spec, masks)
    out = {
        "resolved": resolved,
        "method": method,
        "density": density,
        "seed": seed,
        "search_s": search_s,
        "check": check,
        "history": masks.metadata["pun_history"],
        "histogram": masks.metadata["pun"]["probability_histogram"],
        "layers": masks.layer_stats(),
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def figure(results: list[dict], path: Path) -> Path:
    """Expected density and search loss traces, and final probability histograms."""
    searches = {
        label(r["resolved"], r["density"], r["method"]): (r["history"], r["histogram"])
        for r in results
    }
    return pun_search_traces(searches, results[0]["density"], path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--method", choices=sorted(SECTIONS), default="pun-uniform")
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--setting",
        action="append",
        help="comma list of PunSearchConfig k=v (dotted keys are full config overrides)",
    )
    parser.add_argument("--extra", action="append", default=[], help="other config overrides")
    args = parser.parse_args()
    settings = args.setting or list(DEFAULT_SETTINGS)
    results = [
        run_setting(args.config, args.density, args.seed, s, args.extra, args.method)
        for s in settings
    ]
    lines = [
        "## PUN mask search (`python benchmarks/pun_search.py`)",
        "",
        f"Machine: {machine()}. Search `{args.method}`"
        f"{' (per-layer counts, KL averaged)' if args.method == 'pun-uniform' else ''}; "
        f"config `{args.config}`, density {args.density}, seed {args.seed}."
        " Loss = training loss of the *untrained* MoDL on "
        "held-out training batches; control = PUN mask shuffled within each layer (same "
        "per-layer counts), mean ± std over shuffles. Margin = (control - PUN) / std. "
        "An (almost) empty output layer `denoiser.body.12.weight` makes the denoiser a (nearly) "
        "constant map that training cannot repair (layer collapse) and makes the layer-shuffled "
        "controls (nearly) identical. Search times are wall times; some rows ran beside other "
        "jobs on the 2 cores.",
        "",
        "| settings (vs defaults) | search (s) | final E[density] | sparsest layer | loss dense | "
        "loss PUN | loss control | margin | PUN beats control |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r["check"]
        std = statistics.pstdev(c["loss_shuffled"])
        margin = (c["loss_shuffled_mean"] - c["loss_mask"]) / std if std > 0 else float("nan")
        low = min(r["layers"], key=lambda x: (x["kept"] / x["total"], x["name"]))
        lines.append(
            f"| {label(r['resolved'], r['density'], r['method'])} | {r['search_s']:.0f} | "
            f"{r['history'][-1]['expected_density']:.3f} | "
            f"`{low['name']}` {low['kept']}/{low['total']} | "
            f"{c['loss_dense']:.4f} | {c['loss_mask']:.4f} | {c['loss_shuffled_mean']:.4f} ± "
            f"{std:.4f} | {margin:+.1f} | {'yes' if margin > 2 else 'no'} |"
        )
    fig = figure(results, ROOT / "docs" / "figures" / "pun_search.png")
    lines += ["", f"![PUN search traces]({fig.relative_to(ROOT / 'docs')})"]
    print(write_section("pun-search", "\n".join(lines)))


if __name__ == "__main__":
    main()
