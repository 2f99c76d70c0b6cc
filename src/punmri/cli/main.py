"""``punmri`` command line: thin subcommands that parse, build a config and call the library.

Errors a user can fix (bad config key, missing file, corrupt data, existing run directory) are
printed as one line ``punmri: error: ...`` with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (see configs/); defaults when omitted")
    p.add_argument("overrides", nargs="*", help="config overrides as section.key=value")


def _add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show progress bars",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="punmri",
        description="Accelerated MRI reconstruction with pruned unrolled networks (PUN).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="data -> train -> evaluate -> report")
    _add_config_args(p)
    p.add_argument("--out", default=None, help="run directory (default runs/NAME)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    _add_progress(p)

    p = sub.add_parser("train", help="train the configured models only (no evaluation)")
    _add_config_args(p)
    p.add_argument("--out", default=None, help="run directory (default runs/NAME)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    _add_progress(p)

    p = sub.add_parser("prune", help="find a pruning mask of the initial network")
    _add_config_args(p)
    p.add_argument("--method", required=True, help="pun, random, random-erk, magnitude, snip, ...")
    p.add_argument("--density", type=float, required=True, help="kept fraction in (0, 1]")
    p.add_argument("--seed", type=int, default=None, help="initialisation seed (default: seeds[0])")
    p.add_argument("--out", default=None, help="output directory (default runs/masks/METHOD)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing mask")

    p = sub.add_parser("report", help="rewrite the report of an evaluated run")
    p.add_argument("--run", required=True, help="run directory (after `punmri run`)")
    _add_progress(p)

    p = sub.add_parser("eval", help="evaluate a trained run on any image sources")
    p.add_argument("--run", required=True, help="trained run directory")
    p.add_argument("--data", nargs="*", default=[], help="extra sources: files or folders")
    p.add_argument("--out", required=True, help="output directory for metrics and report")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output dir")
    p.add_argument("overrides", nargs="*", help="simulation overrides, e.g. physics.acceleration=8")
    _add_progress(p)

    p = sub.add_parser("recon", help="reconstruct one input with a trained run's model")
    p.add_argument("--run", required=True, help="trained run directory")
    p.add_argument("--input", required=True, help="image (simulated) or fastMRI .h5 k-space")
    p.add_argument("--out", required=True, help="output file: .nii/.nii.gz, .png or .npy")
    p.add_argument("--method", default="dense", help="which trained model to use")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    p = sub.add_parser("data", help="inspect what a data source yields")
    p.add_argument("paths", nargs="*", help="files/folders; none = the configured volume")
    p.add_argument("--config", help="YAML config")
    p.add_argument("--preview", default=None, help="write a PNG montage here")
    return parser


def _out_dir(args: argparse.Namespace, name: str) -> Path:
    return Path(args.out) if args.out else Path("runs") / name


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``punmri`` console script."""
    args = build_parser().parse_args(argv)
    from . import commands

    try:
        return commands.dispatch(args, _out_dir)
    except InputError as exc:
        print(f"punmri: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("punmri: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
