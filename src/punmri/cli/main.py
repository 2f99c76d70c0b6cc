"""``punmri`` command line: thin subcommands that parse, build a config and call the library.

Errors a user can fix (bad config key, missing file, corrupt data, existing run directory) are
printed as one line ``punmri: error: ...`` with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError, SharedError


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


def _add_only(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="METHOD:SEED",
        help="train only these networks of the config (e.g. dense:0, pun@0.03:1; repeat or "
        "comma-separate) and exit without evaluating; a later plain run evaluates them",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="punmri",
        description="Accelerated MRI reconstruction with pruned unrolled networks (PUN).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    for name, text in (
        ("run", "data -> train -> evaluate -> report"),
        ("train", "train the configured models only (no evaluation)"),
    ):
        p = sub.add_parser(name, help=text)
        _add_config_args(p)
        p.add_argument("--out", default=None, help="run directory (default runs/NAME)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
        _add_only(p)
        _add_progress(p)

    p = sub.add_parser("prune", help="find a pruning mask of the initial network")
    _add_config_args(p)
    p.add_argument(
        "--method",
        required=True,
        help="pun, pun-uniform, random, random-erk, magnitude, snip, grasp, synflow, or a "
        "channel-level method: pun-channel, random-channel, norm-channel, snip-channel",
    )
    p.add_argument(
        "--density",
        type=float,
        required=True,
        help="kept fraction in (0, 1] of the weights (of the feature channels for *-channel)",
    )
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

    p = sub.add_parser(
        "export",
        help="write a trained model as a TorchScript program that needs only torch",
        description="Write the trained network METHOD of a run as a self-contained TorchScript "
        "program OUT (physics included: program(kspace, maps, mask) -> complex image, loadable "
        "with torch.jit.load alone) and its settings as OUT.json. The program reconstructs one "
        "image size H x W only (the run's data.image_size, or --shape); batch size and coil "
        "count are free.",
    )
    p.add_argument("--run", required=True, help="trained run directory")
    p.add_argument("--method", required=True, help="trained model as reported: dense, pun@0.1, ...")
    p.add_argument("--seed", type=int, default=None, help="which seed's model (default: seeds[0])")
    p.add_argument("--out", required=True, help="output program, e.g. model.pt (+ model.pt.json)")
    p.add_argument(
        "--shape",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="image size the program accepts (default: data.image_size; fastMRI runs: required)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    p = sub.add_parser(
        "data", help="describe, synthesize or prepare data (punmri data {describe,synth,prepare})"
    )
    verbs = p.add_subparsers(dest="data_command", required=True)
    q = verbs.add_parser("describe", help="what a source yields (the default verb)")
    q.add_argument("paths", nargs="*", help="files/folders; none = the configured volume")
    q.add_argument("--config", help="YAML config")
    q.add_argument("--preview", default=None, help="write a PNG montage here")
    q = verbs.add_parser("synth", help="write a fastMRI-format multi-coil dataset (offline)")
    q.add_argument("--out", required=True, help="output folder (gets train/ val/ test/)")
    q.add_argument("--volumes", type=int, default=6, help="subjects over the three splits")
    q.add_argument("--slices", type=int, default=8, help="slices per volume")
    q.add_argument("--coils", type=int, default=8, help="receive coils")
    q.add_argument("--source", default="colin27", help="colin27, phantom, or NIfTI path(s)")
    q.add_argument("--size", type=int, default=320, help="recon size (square), e.g. 320")
    q.add_argument("--width", type=int, default=None, help="k-space width W (default 1.15*size)")
    q.add_argument("--seed", type=int, default=0, help="seed of subjects, coils and noise")
    q.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    _add_progress(q)
    q = verbs.add_parser("prepare", help="validate fastMRI files, cache coil maps and an index")
    q.add_argument("folder", help="folder of fastMRI .h5 files (searched recursively)")
    q.add_argument("--cache", default=None, help="cache folder (default FOLDER/.punmri-cache)")
    q.add_argument("--workers", type=int, default=1, help="parallel processes")
    q.add_argument("--skip-bad", action="store_true", help="list and skip unreadable files")
    _add_progress(q)
    return parser


#: Verbs of ``punmri data``; any other first argument means ``describe`` (``punmri data FILE``).
DATA_VERBS = ("describe", "synth", "prepare")


def _with_data_verb(argv: Sequence[str]) -> list[str]:
    """``punmri data PATHS ...`` as ``punmri data describe PATHS ...`` (the verb is optional)."""
    args = list(argv)
    if args[:1] == ["data"] and (len(args) == 1 or args[1] not in (*DATA_VERBS, "-h", "--help")):
        args.insert(1, "describe")
    return args


def _out_dir(args: argparse.Namespace, name: str) -> Path:
    return Path(args.out) if args.out else Path("runs") / name


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``punmri`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(_with_data_verb(argv))
    from . import commands

    try:
        return commands.dispatch(args, _out_dir)
    except SharedError:  # the main process's error, which it prints itself
        return 2
    except InputError as exc:
        print(f"punmri: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("punmri: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
