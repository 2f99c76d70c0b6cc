"""Atomic file writing: outputs are written to a temporary file and renamed into place."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Any, mode: str) -> None:
    """Write ``path`` through ``write(fh)`` on a temporary file in the same folder, renamed into
    place (readers never see a partial file); the file gets the usual permissions (umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide outputs from co-workers
        with os.fdopen(fd, mode) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; a file that already holds ``text`` is left untouched
    (so rewriting an unchanged output changes no file, not even its modification time)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == len(text.encode()) and path.read_text() == text:
        return
    atomic_write(path, lambda fh: fh.write(text), "w")


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats by ``None`` (and numpy scalars by Python ones) for strict JSON."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (indent 2, sorted keys, ``nan``/``inf`` -> ``null``)."""
    text = json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_text_atomic(path, text)


def torch_save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    atomic_write(path, lambda fh: torch.save(obj, fh), "wb")
