"""Atomic file writing: outputs are written to a temporary file and renamed into place."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic(path: str | Path, write: Any, mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    _atomic(path, lambda fh: fh.write(text), "w")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (NaN written as ``NaN``)."""
    _atomic(path, lambda fh: json.dump(obj, fh, indent=2, sort_keys=True), "w")


def torch_save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    _atomic(path, lambda fh: torch.save(obj, fh), "wb")
