"""Implementations of the ``punmri`` subcommands (each: arguments -> config -> library call)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..config import load_config
from ..errors import InputError
from ..report.console import summary_text


def _summary(metrics: dict, where: Path) -> None:
    print(summary_text(metrics))
    print(f"\nreport: {where / 'report.md'}  (per-suite tables, figures; also report.html)")


def cmd_run(args: argparse.Namespace, out_dir: Callable) -> int:
    from ..pipeline import run

    cfg = load_config(args.config, args.overrides)
    out = out_dir(args, cfg.name)
    metrics = run(cfg, out, overwrite=args.overwrite, progress=args.progress)
    _summary(metrics, out)
    return 0


def cmd_train(args: argparse.Namespace, out_dir: Callable) -> int:
    from ..pipeline import run

    cfg = load_config(args.config, args.overrides)
    out = out_dir(args, cfg.name)
    run(cfg, out, overwrite=args.overwrite, progress=args.progress, train_only=True)
    print(f"trained models in {out / 'models'}")
    return 0


def cmd_eval(args: argparse.Namespace, out_dir: Callable) -> int:
    from ..pipeline import evaluate_run

    metrics = evaluate_run(
        args.run, args.out, args.data, args.overrides, args.overwrite, args.progress
    )
    _summary(metrics, Path(args.out))
    return 0


def cmd_recon(args: argparse.Namespace, out_dir: Callable) -> int:
    from ..recon import reconstruct_file

    reconstruct_file(args.run, args.input, args.out, method=args.method, overwrite=args.overwrite)
    print(f"wrote {args.out}")
    return 0


def cmd_data(args: argparse.Namespace, out_dir: Callable) -> int:
    from ..data.anatomy import training_splits
    from ..data.sources import load_images

    cfg = load_config(args.config)
    if args.paths:
        images = load_images(args.paths, min_tissue=0.0)
        sets = {"images": images}
    else:
        sets = training_splits(cfg.data)
    for name, s in sets.items():
        first, last = (s.names[0], s.names[-1]) if len(s) else ("-", "-")
        print(
            f"{name:>7}: {len(s):4d} slices of {s.images.shape[1]}x{s.images.shape[2]}, "
            f"range [{s.images.min():.2f}, {s.images.max():.2f}], {first} .. {last}"
        )
    if args.preview:
        from ..report.figures import montage

        stack = np.concatenate([s.images[:: max(1, len(s) // 6)][:6] for s in sets.values()])
        montage(stack, Path(args.preview))
        print(f"preview: {args.preview}")
    return 0


def cmd_prune(args: argparse.Namespace, out_dir: Callable) -> int:
    from ..methods import MethodContext, prune_at_init
    from ..pipeline import load_run_data

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / "masks" / args.method
    if (out / "mask.pt").exists() and not args.overwrite:
        raise InputError(f"{out / 'mask.pt'} exists; pass --overwrite or choose another --out")
    seed = cfg.seeds[0] if args.seed is None else args.seed
    ctx = MethodContext(cfg, out, load_run_data(cfg), progress=True)
    masks = prune_at_init(ctx, args.method, args.density, seed, out)
    print(masks.summary())
    check = masks.metadata["check"]
    print(
        f"untrained-network loss on held-out batches: dense {check['loss_dense']:.4f}, "
        f"mask {check['loss_mask']:.4f}, layer-shuffled control {check['loss_shuffled_mean']:.4f}"
    )
    print(f"mask: {out / 'mask.pt'} (statistics in mask.json)")
    return 0


def cmd_report(args: argparse.Namespace, out_dir: Callable) -> int:
    from ..pipeline import report_run

    metrics = report_run(args.run, progress=args.progress)
    _summary(metrics, Path(args.run))
    return 0


COMMANDS = {
    "prune": cmd_prune,
    "report": cmd_report,
    "run": cmd_run,
    "train": cmd_train,
    "eval": cmd_eval,
    "recon": cmd_recon,
    "data": cmd_data,
}


def dispatch(args: argparse.Namespace, out_dir: Callable) -> int:
    """Run the subcommand named in ``args.command``."""
    if args.command not in COMMANDS:
        raise InputError(f"unknown command {args.command!r}")
    return COMMANDS[args.command](args, out_dir)
