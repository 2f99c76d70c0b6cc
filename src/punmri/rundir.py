"""Run directories: created, resumed with the same config, refused with another, never
overwritten silently; and which config entries a resumed run may change."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from .config import RunConfig, load_config, save_config, to_dict
from .errors import InputError


def prepare_run_dir(cfg: RunConfig, out: str | Path, overwrite: bool = False) -> Path:
    """Create ``out`` or reopen it for resuming.

    An existing directory is resumed only when its saved config equals ``cfg``; a directory with
    another config (or foreign files) is refused unless ``overwrite`` deletes it first. A
    directory holding nothing but its config (a run that failed before any stage finished) takes
    the new config.
    """
    out = Path(out)
    saved = out / "config.yaml"
    if out.exists() and overwrite:
        shutil.rmtree(out)
    elif out.exists() and any(p.name != "config.yaml" for p in out.iterdir()):
        if not saved.is_file():
            raise InputError(
                f"output directory {out} exists and is not a punmri run; choose another --out "
                "or pass --overwrite to replace it"
            )
        # Through load_config, so that settings added to punmri since (with their defaults)
        # do not count as a difference.
        previous = to_dict(load_config(saved))
        if without(previous, SELECTION_KEYS) != without(to_dict(cfg), SELECTION_KEYS):
            raise InputError(
                f"run directory {out} holds a run with a different config; resume it with the "
                "same config (methods, seeds, extra densities and evaluation may change), choose "
                "another --out, or pass --overwrite to replace it"
            )
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, saved)
    return out


#: Config entries that only select *which* networks to train, where they run or how to evaluate
#: them: a run may be resumed with other values (finished networks are reused, new ones trained,
#: evaluation redone).
SELECTION_KEYS = (
    ("name",),
    ("methods",),
    ("seeds",),
    ("method_seeds",),
    ("prune", "densities"),
    ("prune", "sweep_methods"),
    ("train", "device"),
    ("train", "threads"),
    ("train", "workers"),
    ("evaluate",),
)


#: Config entries that do not change what evaluation computes (name, where it runs).
EVALUATION_IRRELEVANT_KEYS = (
    ("name",),
    ("train", "device"),
    ("train", "threads"),
    ("train", "workers"),
)


def without(config: dict, keys: Sequence[tuple[str, ...]]) -> dict:
    """A copy of the config dict ``config`` without the entries at the key paths ``keys``."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    for path in keys:
        node = out
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return out


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved config saved in a run directory."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise InputError(f"{run_dir} is not a punmri run directory (no config.yaml)")
    return load_config(path)


__all__ = [
    "EVALUATION_IRRELEVANT_KEYS",
    "SELECTION_KEYS",
    "load_run_config",
    "prepare_run_dir",
    "without",
]
