"""Per-slice result records, their CSV file, the aggregate JSON and a console table.

Output contract of an evaluation run:

* ``slices.csv``: one row per (method, suite, slice) with columns ``method, suite, slice, psnr,
  ssim, nmse`` followed by the extra metrics of any record (sorted by name; an empty cell means the
  record has no such extra). Floats are written with ``repr`` so they read back bit-exactly
  (``nan`` and ``inf`` included).
* the aggregate (:func:`aggregate`)::

      {"methods": {METHOD: {"suites": {SUITE: {
          "psnr": mean, "ssim": mean, "nmse": mean,
          "psnr_std": std, "ssim_std": std, "n": count[, "n_failed": k]}}}}}

  Means and (population, ``ddof=0``) standard deviations ignore ``nan`` values; ``n`` counts every
  slice, and ``n_failed`` (present only when ``k > 0``) counts the slices with a ``nan`` in any of
  psnr/ssim/nmse (e.g. a diverged model). A statistic with no finite-or-infinite value left is
  ``nan``. Extra per-slice metrics (e.g. ``roi_psnr`` of lesion suites) add their mean under
  their own name.

Files are written atomically: to ``PATH.tmp`` first, then moved over ``PATH`` with ``os.replace``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import write_text_atomic

METRICS: tuple[str, ...] = ("psnr", "ssim", "nmse")
_KEY_COLUMNS: tuple[str, ...] = ("method", "suite", "slice")
_DECIMALS = {"psnr": 2, "ssim": 4, "nmse": 4}


@dataclass(frozen=True)
class SliceRecord:
    """Metrics of one reconstructed slice.

    Attributes:
        method: reconstruction method name (e.g. ``zero-filled``, ``cs-l1``, a model name).
        suite: evaluation suite (e.g. a dataset/acceleration combination).
        slice_name: unique slice identifier within the suite (CSV column ``slice``).
        psnr: PSNR in dB; ssim: SSIM in [-1, 1]; nmse: normalised MSE (``nan`` = failed).
        extra: further named float metrics (e.g. ROI metrics, timings in seconds).
    """

    method: str
    suite: str
    slice_name: str
    psnr: float
    ssim: float
    nmse: float
    extra: dict[str, float] = field(default_factory=dict)


def write_slice_csv(records: Iterable[SliceRecord], path: str | os.PathLike[str]) -> None:
    """Write ``records`` to a CSV at ``path`` atomically (format in the module docstring)."""
    records = list(records)
    extras = sorted({k for r in records for k in r.extra})
    clash = set(extras) & (set(_KEY_COLUMNS) | set(METRICS))
    if clash:
        raise InputError(f"extra metric names {sorted(clash)} clash with the fixed CSV columns")

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*_KEY_COLUMNS, *METRICS, *extras])
    for r in records:
        row = [r.method, r.suite, r.slice_name, repr(float(r.psnr)), repr(float(r.ssim))]
        row += [repr(float(r.nmse))]
        row += [repr(float(r.extra[k])) if k in r.extra else "" for k in extras]
        writer.writerow(row)
    write_text_atomic(path, buf.getvalue())


def _parse_float(text: str, path: Path, line: int, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"{path}: line {line}, column {column!r}: expected a number, got {text!r}"
        ) from None


def read_slice_csv(path: str | os.PathLike[str]) -> list[SliceRecord]:
    """Read records written by :func:`write_slice_csv`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"slice results file {path} does not exist")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        required = [*_KEY_COLUMNS, *METRICS]
        if header is None or header[: len(required)] != required:
            raise InputError(
                f"{path}: expected a CSV header starting with {','.join(required)}; got {header}"
            )
        extras = header[len(required) :]
        records = []
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise InputError(
                    f"{path}: line {line} has {len(row)} fields, expected {len(header)}"
                )
            values = [
                _parse_float(v, path, line, c) for v, c in zip(row[3:6], METRICS, strict=True)
            ]
            extra = {
                k: _parse_float(v, path, line, k)
                for k, v in zip(extras, row[6:], strict=True)
                if v != ""
            }
            records.append(SliceRecord(row[0], row[1], row[2], *values, extra=extra))
    return records


def _stats(values: list[float]) -> tuple[float, float]:
    """nan-ignoring (mean, population std); ``(nan, nan)`` when no value is left."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return float("nan"), float("nan")
    if not np.isfinite(arr).all():  # an exact slice (psnr = inf) makes the mean inf
        return float(arr.mean()), float("nan")
    return float(arr.mean()), float(arr.std())


def aggregate(records: Iterable[SliceRecord]) -> dict[str, Any]:
    """Per-method, per-suite means over slices (structure and nan policy in the module doc)."""
    groups: dict[str, dict[str, list[SliceRecord]]] = {}
    for r in records:
        groups.setdefault(r.method, {}).setdefault(r.suite, []).append(r)
    methods: dict[str, Any] = {}
    for method, suites in groups.items():
        out: dict[str, Any] = {}
        for suite, recs in suites.items():
            entry: dict[str, Any] = {"n": len(recs)}
            for metric in METRICS:
                mean, std = _stats([getattr(r, metric) for r in recs])
                entry[metric] = mean
                if metric != "nmse":
                    entry[f"{metric}_std"] = std
            extras = sorted({k for r in recs for k in r.extra})
            for metric in extras:
                entry[metric] = _stats([r.extra.get(metric, math.nan) for r in recs])[0]
            failed = sum(any(math.isnan(getattr(r, m)) for m in METRICS) for r in recs)
            if failed:
                entry["n_failed"] = failed
            out[suite] = entry
        methods[method] = {"suites": out}
    return {"methods": methods}


def format_table(aggregate_dict: Mapping[str, Any], metric: str = "psnr") -> str:
    """A method x suite text table of the mean ``metric`` for the console.

    PSNR has 2 decimals, SSIM and NMSE 4; ``-`` marks a missing (method, suite) pair and ``*`` a
    cell with failed (``nan``) slices. Rows and columns keep first-appearance order.
    """
    if metric not in METRICS:
        raise InputError(f"table metric must be one of {list(METRICS)}, got {metric!r}")
    methods = aggregate_dict.get("methods")
    if not isinstance(methods, Mapping):
        raise InputError("format_table needs the output of aggregate(): a dict with 'methods'")
    suites: list[str] = []
    for m in methods.values():
        for s in m["suites"]:
            if s not in suites:
                suites.append(s)
    rows = [[metric.upper(), *suites]]
    any_failed = False
    for name, m in methods.items():
        row = [name]
        for s in suites:
            entry = m["suites"].get(s)
            if entry is None:
                row.append("-")
                continue
            value = entry.get(metric)
            cell = "nan" if value is None else f"{value:.{_DECIMALS[metric]}f}"
            if entry.get("n_failed", 0):
                cell += "*"
                any_failed = True
            row.append(cell)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if any_failed:
        lines.append("* some slices failed (nan); the mean ignores them")
    return "\n".join(lines)
