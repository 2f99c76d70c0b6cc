"""Implementations of the ``punmri`` subcommands (each: arguments -> config -> library call)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..config import load_config
from ..errors import InputError
from ..report.console import summary_text


def _summary(metrics: dict, where: Path) -> None:
    print(summary_text(metrics))
    print(f"\nreport: {where / 'report.md'}  (per-suite tables, figures; also report.html)")


def _trained(out: Path, only: list[str]) -> None:
    which = f"networks {', '.join(only)}" if only else "models"
    print(f"trained {which} in {out / 'models'}")
    if only:
        print("evaluate them with a plain `punmri run` on the same config and --out")


def cmd_run(args: argparse.Namespace, out_dir: Callable) -> int:
    from ..pipeline import run
    from ..train import distributed

    cfg = load_config(args.config, args.overrides)
    out = out_dir(args, cfg.name)
    with distributed.session(cfg.train.device):  # several processes under torchrun
        metrics = run(cfg, out, args.overwrite, args.progress, only=args.only)
        if not distributed.is_main():
            return 0
    if args.only:
        _trained(out, args.only)
    else:
        _summary(metrics, out)
    return 0


def cmd_train(args: argparse.Namespace, out_dir: Callable) -> int:
    from ..pipeline import run
    from ..train import distributed

    cfg = load_config(args.config, args.overrides)
    out = out_dir(args, cfg.name)
    with distributed.session(cfg.train.device):
        run(cfg, out, args.overwrite, args.progress, train_only=True, only=args.only)
        if not distributed.is_main():
            return 0
    _trained(out, args.only)
    return 0


def cmd_eval(args: argparse.Namespace, out_dir: Callable) -> int:
    from ..pipeline import evaluate_run, load_run_config
    from ..train import distributed

    device = load_run_config(args.run).train.device
    with distributed.session(device):
        metrics = evaluate_run(
            args.run, args.out, args.data, args.overrides, args.overwrite, args.progress
        )
        if not distributed.is_main():
            return 0
    _summary(metrics, Path(args.out))
    return 0


def cmd_recon(args: argparse.Namespace, out_dir: Callable) -> int:
    from ..recon import reconstruct_file

    reconstruct_file(args.run, args.input, args.out, method=args.method, overwrite=args.overwrite)
    print(f"wrote {args.out}")
    return 0


def cmd_export(args: argparse.Namespace, out_dir: Callable) -> int:
    from ..export import export_model

    shape = tuple(args.shape) if args.shape else None
    info = export_model(args.run, args.method, args.seed, args.out, args.overwrite, shape)
    h, w = info["image_size"]
    print(
        f"wrote {args.out} ({info['method']} seed {info['seed']}, TorchScript for {h}x{w} "
        f"images) and {args.out}.json"
    )
    return 0


def cmd_data(args: argparse.Namespace, out_dir: Callable) -> int:
    verbs = {"describe": _data_describe, "synth": _data_synth, "prepare": _data_prepare}
    return verbs[args.data_command](args)


def _data_synth(args: argparse.Namespace) -> int:
    from ..data.synth import synthesize_fastmri

    width = args.width or 2 * round(0.575 * args.size)
    summary = synthesize_fastmri(
        args.out,
        volumes=args.volumes,
        slices=args.slices,
        coils=args.coils,
        source=args.source,
        recon_size=(args.size, args.size),
        width=width,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    counts = ", ".join(f"{split} {len(files)}" for split, files in summary.files.items())
    print(
        f"wrote {sum(len(f) for f in summary.files.values())} files ({counts}) of k-space "
        f"{tuple(summary.kspace_shape)}, targets {tuple(summary.recon_size)}, into "
        f"{summary.out} in {summary.seconds:.1f} s"
    )
    return 0


def _data_prepare(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare_folder

    index = prepare_folder(
        args.folder,
        cache=args.cache,
        workers=args.workers,
        skip_bad=args.skip_bad,
        progress=args.progress,
    )
    print(
        f"prepared {len(index.files)} files ({index.slices} slices) of {args.folder} into "
        f"{index.cache}"
    )
    for bad in index.bad:
        print(f"  skipped {bad.file}: {bad.error}")
    return 0


def _kspace_files(path: Path) -> list[Path]:
    """The fastMRI files a path names: an ``.h5`` file, or the ``.h5`` files below a folder that
    ``punmri data prepare`` would prepare (:func:`~punmri.data.prepare.source_files`)."""
    from ..data.prepare import source_files

    if path.is_file():
        return [path] if path.suffix in (".h5", ".hdf5") else []
    return [path / f for f in source_files(path)] if path.is_dir() else []


def _describe_kspace(path: Path) -> None:
    """Print what a fastMRI file or folder holds, and whether the folder is prepared."""
    from ..data.measured import describe_kspace_file
    from ..data.prepare import load_index

    for f in _kspace_files(path):
        print(describe_kspace_file(f))
    if path.is_dir():
        try:
            index = load_index(path)
            print(f"prepared: {len(index.files)} files, {index.slices} slices in {index.cache}")
        except InputError as exc:
            print(f"not prepared for training ({exc})")


def _data_describe(args: argparse.Namespace) -> int:
    from ..data.anatomy import training_splits
    from ..data.sources import load_images

    cfg = load_config(args.config)
    kspace = [p for p in args.paths if _kspace_files(Path(p))]
    for path in kspace:
        _describe_kspace(Path(path))
    images_paths = [p for p in args.paths if p not in kspace]
    if images_paths:
        sets = {"images": load_images(images_paths, min_tissue=0.0)}
    elif kspace:
        return 0
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
    from ..methods import CHANNEL_METHODS, MethodContext, mask_file, prune_at_init
    from ..pipeline import load_run_data

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / "masks" / args.method
    target = out / mask_file(args.method)
    if target.exists() and not args.overwrite:
        raise InputError(f"{target} exists; pass --overwrite or choose another --out")
    seed = cfg.seeds[0] if args.seed is None else args.seed
    ctx = MethodContext(cfg, out, load_run_data(cfg), progress=True)
    masks = prune_at_init(ctx, args.method, args.density, seed, out)
    print(masks.summary())
    check = masks.metadata["check"]
    control = (
        "random channels of the same widths"
        if args.method in CHANNEL_METHODS
        else "layer-shuffled control"
    )
    pruned = check.get("loss_pruned")
    print(
        f"untrained-network loss on held-out batches: dense {check['loss_dense']:.4f}, "
        f"mask {check['loss_mask']:.4f}, {control} {check['loss_shuffled_mean']:.4f}"
        + ("" if pruned is None else f", every weight pruned {pruned:.4f}")
    )
    if "parameters" in masks.metadata:
        n = masks.metadata["parameters"]
        print(
            f"compact network: {n['compact']:,} parameters "
            f"({n['compact'] / n['dense']:.1%} of the dense {n['dense']:,})"
        )
    print(f"mask: {target} (statistics in {target.with_suffix('.json').name})")
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
    "export": cmd_export,
    "data": cmd_data,
}


#: Commands that run as several processes under torchrun (the others refuse to).
DISTRIBUTED = ("run", "train", "eval")


def dispatch(args: argparse.Namespace, out_dir: Callable) -> int:
    """Run the subcommand named in ``args.command``."""
    if args.command not in COMMANDS:
        raise InputError(f"unknown command {args.command!r}")
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and args.command not in DISTRIBUTED:
        raise InputError(
            f"punmri {args.command} runs as one process; start it without torchrun (only "
            f"{', '.join(DISTRIBUTED)} run distributed)"
        )
    return COMMANDS[args.command](args, out_dir)
