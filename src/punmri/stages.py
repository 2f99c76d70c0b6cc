"""Stage bookkeeping: a stage is skipped when a marker records the fingerprint of its inputs.

A fingerprint is a SHA-256 digest of everything a stage's outputs depend on (settings as JSON,
input files by content or by size and modification time). A stage writes its marker last, after
all its outputs, so a stage interrupted half-way is never taken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .io import write_json_atomic

_CHUNK = 1 << 20


def file_digest(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def source_stamp(path: str | Path) -> list[Any]:
    """``[path, size, mtime_ns]`` of a file, or of every file below a directory (sorted): enough to
    notice a changed input source without reading it. A missing path stamps as ``[path, None]``."""
    p = Path(path).resolve()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return [str(p), [source_stamp(f) for f in files]]
    if not p.is_file():
        return [str(p), None]
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def fingerprint(settings: Mapping[str, Any], files: Iterable[str | Path] = ()) -> str:
    """Digest of ``settings`` (JSON-serialisable) and of the contents of ``files`` (in order)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for f in files:
        h.update(str(Path(f).name).encode())
        h.update(file_digest(f).encode())
    return h.hexdigest()


def stage_is_current(marker: str | Path, digest: str, outputs: Sequence[str | Path] = ()) -> bool:
    """Whether ``marker`` records ``digest`` and every file of ``outputs`` exists."""
    marker = Path(marker)
    if not marker.is_file() or not all(Path(o).is_file() for o in outputs):
        return False
    try:
        return json.loads(marker.read_text()).get("fingerprint") == digest
    except (json.JSONDecodeError, AttributeError):
        return False


def mark_stage_done(marker: str | Path, digest: str, **extra: Any) -> None:
    """Record (atomically) that the stage with inputs ``digest`` has written all its outputs."""
    write_json_atomic(marker, {"fingerprint": digest, **extra})


__all__ = ["file_digest", "fingerprint", "mark_stage_done", "source_stamp", "stage_is_current"]
