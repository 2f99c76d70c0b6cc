"""Measured k-space pipeline benchmark -> docs/BENCHMARKS.md section "data-pipeline".

Writes a synthetic fastMRI-format folder (:func:`punmri.data.synth.synthesize_fastmri`, phantom
anatomy, 320x320 recon, W = 368, 16 coils by default) in a temporary directory and measures:

1. ``prepare_folder`` throughput from scratch with 1 and 2 worker processes (separate caches),
   a second (resumed, nothing to do) call, one ESPIRiT call alone, and the preparation of a
   folder holding ``--copies`` symlinked copies of every file (which also checks that prepare
   follows symlinks);
2. ``DataLoader`` throughput (``batch_size=1``, ``collate``) over the prepared slices for 0, 1 and
   2 loader workers, against the rate at which a MoDL training step (forward + backward + clipped
   Adam, timed in a fresh process) consumes slices;
3. peak RSS of three passes over the base folder and over the ``--copies``-times larger folder,
   each in a fresh process with a 0-worker DataLoader (a streaming dataset needs about the same),
   with glibc's default allocator, and as controls with one open HDF5 file and with a fixed
   ``MALLOC_MMAP_THRESHOLD_``.

The defaults finish in about 10 minutes on an otherwise idle 2-core CPU; ESPIRiT inside prepare
takes most of it.

Usage: ``python benchmarks/data_pipeline.py [--volumes 2] [--slices 1] [--coils 16] [--copies 4]
[--batch 1] [--repeats 3] [--epochs 3] [--keep DIR]`` (data goes to a temporary directory that is
deleted at the end unless ``--keep`` names a folder to use instead).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _docs import machine, write_section
from torch.utils.data import DataLoader

from punmri.config import load_config
from punmri.data.batches import collate
from punmri.data.kspace_dataset import KSpaceDataset
from punmri.data.prepare import calibration_width, prepare_folder
from punmri.data.synth import synthesize_fastmri
from punmri.models import build_model, count_parameters
from punmri.physics.coils import espirit_maps
from punmri.train.losses import get_loss

RECON_SIZE = (320, 320)
"""Reconstruction matrix of the synthetic files (fastMRI brain)."""

WIDTH = 368
"""Phase-encode columns W of the synthetic k-space."""

MODEL = (
    "model.denoiser=resnet",
    "model.channels=32",
    "model.depth=5",
    "model.unrolls=5",
    "model.cg_iterations=8",
)
"""Overrides of the timed MoDL (the demo's network)."""

LOADER_WORKERS = (0, 1, 2)
"""DataLoader worker counts timed."""

MIB = 1024.0**2


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its waited-for children (s)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``(fn(), wall seconds, CPU seconds of this process and its children)``."""
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, _cpu_seconds() - cpu0


def _load() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def _max_rss_mib() -> float:
    """Peak resident set size of this process (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a newly spawned Python process (no inherited heap; ``ru_maxrss`` does
    start at the parent's peak)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def replicate(src: Path, dst: Path, copies: int) -> int:
    """Symlink every ``*.h5`` file below ``src`` into ``dst/copy<k>/`` (same relative path) for
    ``k < copies``; returns the number of links made."""
    made = 0
    for path in sorted(src.rglob("*.h5")):
        rel = path.relative_to(src)
        if any(part.startswith(".") for part in rel.parts):
            continue
        for k in range(copies):
            link = dst / f"copy{k}" / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path.resolve())
            made += 1
    return made


# --------------------------------------------------------------------------------------------
# 1. prepare
# --------------------------------------------------------------------------------------------


def time_prepare(folder: Path, cache: Path, workers: int, label: str) -> tuple[dict, Any]:
    """Wall and CPU time of one ``prepare_folder`` call (from scratch when ``cache`` is new),
    and the index it returned."""
    load = _load()
    index, wall, cpu = _measure(
        lambda: prepare_folder(folder, cache=cache, workers=workers, progress=False)
    )
    row = {
        "label": label,
        "files": len(index.files),
        "slices": index.slices,
        "workers": workers,
        "wall_s": wall,
        "cpu_s": cpu,
        "load": load,
    }
    return row, index


def time_espirit(index: Any) -> dict:
    """One ESPIRiT call on the fully sampled, de-oversampled k-space of the first cached slice,
    with the calibration width prepare uses."""
    import h5py

    with h5py.File(index.cache_path(index.files[0]), "r") as fh:
        kspace = np.asarray(fh["kspace"][0], dtype=np.complex64)
    calib = calibration_width(np.any(kspace != 0, axis=(0, 1)))
    _, wall, cpu = _measure(lambda: espirit_maps(kspace, calib_width=calib))
    return {"wall_s": wall, "cpu_s": cpu, "calib": calib, "shape": list(kspace.shape)}


# --------------------------------------------------------------------------------------------
# 2. DataLoader and training step
# --------------------------------------------------------------------------------------------


def time_loader(folder: Path, cache: Path, workers: int, epochs: int) -> dict:
    """Items/s of ``epochs`` passes (a new iterator per epoch, as training makes) through a
    ``DataLoader(batch_size=1, num_workers=workers, collate_fn=collate)``; worker start-up is
    included."""
    dataset = KSpaceDataset(folder, cache=cache)
    loader = DataLoader(
        dataset, batch_size=1, shuffle=False, num_workers=workers, collate_fn=collate
    )
    load = _load()

    def passes() -> int:
        n = 0
        for epoch in range(epochs):
            dataset.set_epoch(epoch)
            for batch in loader:
                n += len(batch)
        return n

    items, wall, cpu = _measure(passes)
    dataset.close()
    return {"workers": workers, "items": items, "wall_s": wall, "cpu_s": cpu, "load": load}


def _step_child(folder: str, cache: str, batch: int, overrides: list[str], repeats: int) -> dict:
    """Training-step times of MoDL on one collated batch (run in a fresh process)."""
    dataset = KSpaceDataset(folder, cache=cache)
    data = collate([dataset[i % len(dataset)] for i in range(batch)])
    dataset.close()
    cfg = load_config(None, overrides).model
    model = build_model(cfg, 0).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    loss_fn = get_loss("l1")

    def step() -> None:
        loss = loss_fn(model(data.kspace, data.operator()), data.target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    step()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "times": times,
        "params": count_parameters(model),
        "model": (
            f"{cfg.denoiser} {cfg.channels}ch x{cfg.depth}, K={cfg.unrolls}, "
            f"CG={cfg.cg_iterations}, norm={cfg.norm}"
        ),
        "shape": list(data.kspace.shape),
        "peak_rss_mib": _max_rss_mib(),
        "threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------------------------
# 3. peak RSS
# --------------------------------------------------------------------------------------------


def _rss_mib() -> float:
    """Current resident set size of this process (Linux ``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


def _hwm_mib() -> float:
    """Peak RSS of this process's address space since it began or since
    :func:`_reset_peak_rss` (``VmHWM`` of ``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("/proc/self/status has no VmHWM line")


def _reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0: ``5`` written to
    ``/proc/self/clear_refs``); False where that is not allowed. ``ru_maxrss`` is not reset
    when exited threads or ``exec`` already recorded a higher peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _rss_child(folder: str, cache: str, max_open_files: int, passes: int) -> dict:
    """RSS around ``passes`` passes over the dataset with a 0-worker DataLoader (run in a fresh
    process): current RSS and ``ru_maxrss`` before the first pass, the peak after each pass
    (``VmHWM``, reset just before the first pass, so that the transient peak of the imports
    does not hide it) and ``ru_maxrss`` at the end."""
    dataset = KSpaceDataset(folder, cache=cache, max_open_files=max_open_files)
    before, maxrss_before = _rss_mib(), _max_rss_mib()
    reset = _reset_peak_rss()
    loader = DataLoader(dataset, batch_size=1, num_workers=0, collate_fn=collate)
    items, peaks = 0, []
    for _ in range(passes):
        for batch in loader:
            items += len(batch)
        peaks.append(_hwm_mib() if reset else _max_rss_mib())
    return {
        "items": items // passes,
        "files": len(dataset.files),
        "max_open_files": max_open_files,
        "rss_before_mib": before,
        "maxrss_before_mib": maxrss_before,
        "maxrss_mib": _max_rss_mib(),
        "peaks_mib": peaks,
        "reset": reset,
    }


@contextlib.contextmanager
def _environ(name: str, value: str | None) -> Iterator[None]:
    """``os.environ[name] = value`` (unset for None) inside the block; processes spawned there
    inherit it."""
    saved = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


RSS_PASSES = 3
"""Passes over the dataset per RSS row (later passes show whether memory keeps growing)."""

MMAP_THRESHOLD = "131072"
"""``MALLOC_MMAP_THRESHOLD_`` of the control rows: glibc's initial threshold (128 KiB), fixed
(setting it turns off the dynamic threshold that lets freed large arrays stay on the heap)."""


def measure_rss(base: Path, base_cache: Path, many: Path, many_cache: Path, copies: int) -> list:
    """RSS rows: base and ``copies``x folder with glibc's default allocator and 16 open files
    (what a user gets), then controls: one open file, and a fixed mmap threshold."""
    rows = [{"parent_maxrss_mib": _max_rss_mib()}]
    for label, folder, cache, open_files, threshold in (
        ("base", base, base_cache, 16, None),
        (f"{copies}x", many, many_cache, 16, None),
        (f"{copies}x", many, many_cache, 1, None),
        ("base", base, base_cache, 16, MMAP_THRESHOLD),
        (f"{copies}x", many, many_cache, 16, MMAP_THRESHOLD),
    ):
        with _environ("MALLOC_MMAP_THRESHOLD_", threshold):
            row = _in_fresh_process(_rss_child, str(folder), str(cache), open_files, RSS_PASSES)
        rows.append({"label": label, "threshold": threshold, **row})
        print("rss", rows[-1], flush=True)
    return rows


# --------------------------------------------------------------------------------------------
# The run and its section
# --------------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, work: Path) -> dict:
    """Every measurement of the section, in a work folder (see the module docstring)."""
    res: dict[str, Any] = {"args": vars(args), "load_start": _load(), "loads": []}
    base, many = work / "base", work / f"x{args.copies}"
    summary, wall, _ = _measure(
        lambda: synthesize_fastmri(
            base,
            volumes=args.volumes,
            slices=args.slices,
            coils=args.coils,
            source="phantom",
            recon_size=RECON_SIZE,
            width=WIDTH,
            splits=(args.volumes, 0, 0),
            progress=False,
        )
    )
    res["synth"] = {
        "wall_s": wall,
        "kspace_shape": list(summary.kspace_shape),
        "file_mib": statistics.mean(p.stat().st_size for p in base.rglob("*.h5")) / MIB,
    }
    print(f"synthesized {args.volumes} files in {wall:.1f} s", flush=True)

    prep = []
    for workers in (1, 2):
        prep.append(time_prepare(base, work / f"cache-w{workers}", workers, "base")[0])
        print(prep[-1], flush=True)
    row, index = time_prepare(base, work / "cache-w1", 1, "base, resumed (nothing to do)")
    prep.append(row)
    links = replicate(base, many, args.copies)
    prep.append(time_prepare(many, work / "cache-many", 2, f"{args.copies}x (symlinks)")[0])
    print(prep[-2:], flush=True)
    if prep[-1]["files"] != links:
        raise SystemExit(
            f"prepare found {prep[-1]['files']} of the {links} symlinked files in {many}; it does "
            "not follow symlinks"
        )
    res["prepare"] = prep
    res["loads"].append(_load())
    res["espirit"] = time_espirit(index)
    print("espirit", res["espirit"], flush=True)

    res["loader"] = []
    for workers in LOADER_WORKERS:
        res["loader"].append(time_loader(many, work / "cache-many", workers, args.epochs))
        print(res["loader"][-1], flush=True)
    res["loads"].append(_load())
    res["step"] = _in_fresh_process(
        _step_child, str(many), str(work / "cache-many"), args.batch, list(args.model), args.repeats
    )
    print("step", res["step"], flush=True)
    res["loads"].append(_load())

    res["rss"] = measure_rss(base, work / "cache-w1", many, work / "cache-many", args.copies)
    res["loads"].append(_load())
    return res


def _command(a: dict) -> str:
    """The command line that regenerates the section with the sizes of ``a`` (the flags)."""
    flags = " ".join(
        f"--{key} {a[key]}"
        for key in ("volumes", "slices", "coils", "copies", "batch", "repeats", "epochs")
    )
    if tuple(a["model"]) != MODEL:
        flags += " --model " + " ".join(a["model"])
    return f"python benchmarks/data_pipeline.py {flags}"


def _item_mib(coils: int) -> float:
    """Size of one served item: k-space and maps (C, h, W) complex64, target (h, W) complex64,
    mask (h, W) float32, RSS reference (crop) float32."""
    h, w = RECON_SIZE[0], WIDTH
    return (2 * coils * h * w * 8 + h * w * 8 + h * w * 4 + RECON_SIZE[0] * RECON_SIZE[1] * 4) / MIB


def _span(values: list[float]) -> str:
    """``"a"`` or ``"a-b"``: the range of ``values``, rounded to integers."""
    low, high = f"{min(values):.0f}", f"{max(values):.0f}"
    return low if low == high else f"{low}-{high}"


def render(res: dict) -> str:
    """The section: machine, sizes, the three tables and conclusions computed from them."""
    a = res["args"]
    cores = os.cpu_count() or 1
    load_start, loads = res["load_start"], res["loads"]
    lines = [
        "## Measured k-space pipeline (`python benchmarks/data_pipeline.py`)",
        "",
        f"Machine: {machine()}.",
        "",
        f"Command (regenerates this section; data in a temporary folder): `{_command(a)}`.",
    ]
    if load_start >= 0.5:
        lines += [
            "",
            f"**The machine was shared**: the 1-minute load average was {load_start:.2f} on "
            f"{cores} cores before this script did any work (other jobs were running), and "
            f"{min(loads):.2f}-{max(loads):.2f} between its phases (this script adds up to 1 "
            "for serial parts, 2 with two workers). Wall times are pessimistic; the CPU-time "
            "columns are less affected.",
        ]
    else:
        lines += [
            "",
            f"1-minute load average before the run: {load_start:.2f} on {cores} cores (idle); "
            f"between phases {min(loads):.2f}-{max(loads):.2f}.",
        ]
    s = res["synth"]
    slices, coils, h_enc, width = s["kspace_shape"]
    item = _item_mib(a["coils"])
    lines += [
        "",
        f"**Data**: `synthesize_fastmri(source='phantom', volumes={a['volumes']}, "
        f"slices={a['slices']}, coils={a['coils']}, recon_size={RECON_SIZE}, width={WIDTH})` "
        f"({s['wall_s']:.1f} s): {a['volumes']} files of k-space {tuple(s['kspace_shape'])} "
        f"complex64 ({s['file_mib']:.1f} MiB each, 2x readout oversampling). Prepared slices are "
        f"({coils}, {h_enc // 2}, {width}); one served item (k-space, maps, target, mask, RSS) "
        f"is {item:.1f} MiB. The {a['copies']}x folder holds {a['copies']} symlinked copies of "
        "every file (its own cache). Files were just written, so reads come from the page "
        "cache.",
        "",
        "**1. `prepare_folder(folder, cache=..., workers=w, progress=False)`** (fresh cache per "
        "row except the resumed one; CPU = this process plus its worker processes):",
        "",
        "| folder | files | slices | workers | wall (s) | CPU (s) | slices/s | wall s/slice | "
        "CPU s/slice |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in res["prepare"]:
        if "resumed" in p["label"]:  # nothing prepared: per-slice rates do not apply
            rates = "- | - | -"
        else:
            rates = (
                f"{p['slices'] / p['wall_s']:.3f} | {p['wall_s'] / p['slices']:.1f} | "
                f"{p['cpu_s'] / p['slices']:.1f}"
            )
        lines.append(
            f"| {p['label']} | {p['files']} | {p['slices']} | {p['workers']} | "
            f"{p['wall_s']:.2f} | {p['cpu_s']:.1f} | {rates} |"
        )
    e = res["espirit"]
    one, two, resumed, many = res["prepare"]
    speedup = (two["slices"] / two["wall_s"]) / (one["slices"] / one["wall_s"])
    best = max(res["prepare"][i]["slices"] / res["prepare"][i]["wall_s"] for i in (0, 1, 3))
    cpu_slice = min(res["prepare"][i]["cpu_s"] / res["prepare"][i]["slices"] for i in (0, 1, 3))
    lines += [
        "",
        f"ESPIRiT alone (`espirit_maps`, one slice {tuple(e['shape'])}, calibration width "
        f"{e['calib']}): {e['wall_s']:.1f} s wall, {e['cpu_s']:.1f} s CPU.",
        "",
        f"- One ESPIRiT call uses {e['cpu_s']:.1f} CPU s, {e['cpu_s'] / cpu_slice:.0%} of the "
        f"lowest CPU time per prepared slice ({cpu_slice:.1f} s; CPU times too vary with the "
        "load)"
        + (
            ", so map estimation, not I/O, sets the preparation rate."
            if e["cpu_s"] >= 0.5 * cpu_slice
            else "; the rest (reading, FFTs, writing) costs more than the maps."
        ),
        f"- Two workers prepare {speedup:.2f}x as fast as one on the base folder ({two['files']} "
        f"files; ideal {min(2, two['files'], cores)}x), using {two['cpu_s']:.1f} CPU s against "
        f"{one['cpu_s']:.1f}; their CPU/wall ratio was "
        f"{two['cpu_s'] / two['wall_s']:.2f} (2 = two cores busy)"
        + (", so they did not get a second core." if two["cpu_s"] / two["wall_s"] < 1.5 else "."),
        f"- A resumed call with nothing to do takes {resumed['wall_s'] * 1000:.1f} ms.",
        f"- prepare follows symlinks: the {a['copies']}x folder's {many['files']} links were all "
        f"prepared ({many['slices']} slices).",
        f"- At the best measured rate ({best:.3f} slices/s) preparing 10,000 slices "
        f"(about 625 brain volumes of 16 slices) would take {10_000 / best / 3600:.1f} h here; "
        f"at the measured {cpu_slice:.1f} CPU s per slice that is "
        f"{10_000 * cpu_slice / 3600:.1f} CPU hours ({10_000 * cpu_slice / cores / 3600:.1f} h "
        f"on {cores} free cores).",
    ]

    st = res["step"]
    step_s = statistics.median(st["times"])
    need = a["batch"] / step_s
    lines += [
        "",
        f"**2. DataLoader vs training step.** Training step = MoDL "
        f"({st['model']}, {st['params']:,} parameters) forward + L1 loss + backward + gradient "
        f"clipping + Adam on one collated batch {tuple(st['shape'])} (B={a['batch']}), in a fresh "
        f"process with {st['threads']} torch threads: median {step_s:.2f} s of "
        f"{len(st['times'])} after one warm-up "
        f"({', '.join(f'{t:.2f}' for t in st['times'])} s; peak RSS of that process "
        f"{st['peak_rss_mib'] / 1024:.2f} GiB), i.e. it consumes {need:.3f} items/s. Loader = "
        f"`DataLoader(KSpaceDataset({a['copies']}x folder), batch_size=1, num_workers=w, "
        f"collate_fn=collate)` over its {res['loader'][0]['items'] // a['epochs']} items, "
        f"passes: {a['epochs']}, a new iterator per pass (worker start-up included), timed "
        "alone:",
        "",
        "| workers | items | wall (s) | items/s | CPU s/item | 1-min load | keeps up "
        f"(>= {need:.3f} items/s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["loader"]:
        rate = r["items"] / r["wall_s"]
        lines.append(
            f"| {r['workers']} | {r['items']} | {r['wall_s']:.2f} | {rate:.2f} | "
            f"{r['cpu_s'] / r['items']:.3f} | {r['load']:.2f} | "
            f"{'yes' if rate >= need else 'NO'} ({rate / need:.0f}x) |"
        )
    rates = {r["workers"]: r["items"] / r["wall_s"] for r in res["loader"]}
    slowest = min(rates, key=rates.get)
    keeps = all(rate >= need for rate in rates.values())
    serial = a["batch"] / rates[0]
    cpu_item = max(r["cpu_s"] / r["items"] for r in res["loader"] if r["workers"] > 0)
    lines += [
        "",
        (
            f"- The loader keeps up with every worker count: even the slowest "
            f"(w={slowest}, {rates[slowest]:.2f} items/s) delivers {rates[slowest] / need:.0f}x "
            "what the training step consumes, so data loading is not the bottleneck at this "
            "size."
            if keeps
            else "- The loader does NOT keep up with "
            + ", ".join(f"w={w}" for w, r in rates.items() if r < need)
            + ": the training step consumes items faster than they arrive."
        ),
        f"- With 0 workers loading is not overlapped with training and adds "
        f"{serial:.3f} s ({serial / step_s:.1%}) to each step; with workers it overlaps but "
        f"takes up to {cpu_item:.3f} CPU s per item from the {cores} cores the step also uses "
        f"({cpu_item * a['batch'] / step_s:.1%} of the step time).",
    ]

    parent_maxrss = res["rss"][0]["parent_maxrss_mib"]
    rows = res["rss"][1:]
    by = {(r["label"], r["max_open_files"], r["threshold"]): r for r in rows}
    many_label = f"{a['copies']}x"
    base_rss, many_rss = by["base", 16, None], by[many_label, 16, None]
    one_file = by[many_label, 1, None]
    base_fixed, many_fixed = by["base", 16, MMAP_THRESHOLD], by[many_label, 16, MMAP_THRESHOLD]

    def grew(r: dict) -> float:
        """Peak of the first pass above the RSS before it."""
        return r["peaks_mib"][0] - r["rss_before_mib"]

    held = (many_rss["items"] - base_rss["items"]) * item
    growth = grew(many_rss) - grew(base_rss)
    growth_fixed = grew(many_fixed) - grew(base_fixed)
    per_file = growth / max(many_rss["files"] - base_rss["files"], 1)
    reset = all(r["reset"] for r in rows)
    lines += [
        "",
        f"**3. Peak RSS** of {RSS_PASSES} passes through `DataLoader(KSpaceDataset(folder, "
        "max_open_files=m), batch_size=1, num_workers=0, collate_fn=collate)`, each row in a "
        "fresh spawned process. RSS before = current RSS after the imports and building the "
        "dataset (`/proc/self/statm`); "
        + (
            "pass peaks = `VmHWM` of `/proc/self/status`, reset to the current RSS just "
            "before the first pass by writing 5 to `/proc/self/clear_refs`"
            if reset
            else "the peak could NOT be reset, so pass peaks are `ru_maxrss` and include "
            "the imports' transient peak"
        )
        + "; `ru_maxrss` (whole process life) is shown too. The first two rows are what a user "
        "gets (glibc's default allocator, default `max_open_files=16`); the others are "
        f"controls: one open file, and `MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}` (fixed, so "
        "large freed arrays go back to the OS).",
        "",
        "| folder | files | items/pass | m | malloc | RSS before (MiB) | peak after passes "
        "1, 2, ... (MiB) | pass 1 peak - RSS before (MiB) | `ru_maxrss` before / after (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        malloc = "default" if r["threshold"] is None else f"threshold {r['threshold']}"
        lines.append(
            f"| {r['label']} | {r['files']} | {r['items']} | {r['max_open_files']} | {malloc} | "
            f"{r['rss_before_mib']:.0f} | {', '.join(f'{v:.0f}' for v in r['peaks_mib'])} | "
            f"{grew(r):+.0f} | {r['maxrss_before_mib']:.0f} / {r['maxrss_mib']:.0f} |"
        )
    extra = many_rss["items"] - base_rss["items"]
    default_rows = [r for r in rows if r["threshold"] is None]
    fixed_rows = [r for r in rows if r["threshold"] is not None]

    def rises(group: list[dict]) -> str:
        """Peak rise from the second to the last pass of each row of ``group``."""
        return ", ".join(
            f"{r['label']} m={r['max_open_files']} {r['peaks_mib'][-1] - r['peaks_mib'][1]:+.0f}"
            for r in group
        )

    fixed_settles = all(r["peaks_mib"][-1] - r["peaks_mib"][0] < 0.5 * item for r in fixed_rows)
    lines += [
        "",
        f"- Default settings: {a['copies']}x the items changes the first-pass peak by "
        f"{growth:+.0f} MiB, against {held:.0f} MiB if the {extra} extra items of {item:.1f} "
        "MiB were held: "
        + (
            "about equal, the process's memory does not grow with the dataset."
            if abs(growth) < 0.25 * held
            else f"memory grows with the amount read ({per_file:+.0f} MiB, "
            f"{per_file / item:.1f} items' worth, per extra file of {a['slices']} slice(s))."
        ),
        f"- With a fixed mmap threshold the {a['copies']}x and base first-pass peaks differ by "
        f"{growth_fixed:+.0f} MiB and later passes raise them by at most "
        f"{max(r['peaks_mib'][-1] - r['peaks_mib'][0] for r in fixed_rows):.0f} MiB"
        + (
            ": the dataset itself streams (it holds no items); the default rows' extra memory "
            "is freed arrays that glibc's heap keeps."
            if abs(growth_fixed) < 0.25 * held and fixed_settles
            else ": memory grows even with a fixed mmap threshold, so the dataset or its HDF5 "
            "files hold data."
        ),
        f"- From the second to the last pass the peaks rise by {rises(default_rows)} MiB "
        f"(fixed threshold: {rises(fixed_rows)} MiB).",
        f"- With one open file (m=1) the {a['copies']}x first pass peaks {grew(one_file):+.0f} "
        f"MiB above its start (m=16: {grew(many_rss):+.0f} MiB, base: {grew(base_rss):+.0f} MiB)"
        + (
            ": fewer open HDF5 files let glibc keep less."
            if grew(one_file) < grew(many_rss) - 0.25 * held
            else ": the number of open files makes no clear difference."
        ),
        f"- `MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}` lowers the {a['copies']}x first-pass "
        f"growth from {grew(many_rss):+.0f} to {grew(many_fixed):+.0f} MiB (its speed cost is "
        "not measured here).",
        f"- `ru_maxrss` of every child starts at {_span([r['maxrss_before_mib'] for r in rows])} "
        "MiB although its current RSS is "
        f"{max(r['rss_before_mib'] for r in rows):.0f} MiB or less; the spawning parent's own "
        f"peak was {parent_maxrss:.0f} MiB"
        + (
            ", the same: a spawned child inherits its parent's `ru_maxrss` through `exec`, "
            "which is why the pass peaks use `VmHWM`."
            if abs(min(r["maxrss_before_mib"] for r in rows) - parent_maxrss) < 1
            else "."
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=2, help="synthetic files (>= 2)")
    parser.add_argument("--slices", type=int, default=1, help="slices per file")
    parser.add_argument("--coils", type=int, default=16, help="receiver coils")
    parser.add_argument("--copies", type=int, default=4, help="size of the larger folder")
    parser.add_argument("--batch", type=int, default=1, help="training-step batch size")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps")
    parser.add_argument("--epochs", type=int, default=3, help="loader passes per worker count")
    parser.add_argument(
        "--model", nargs="+", default=list(MODEL), help="model overrides (key=value)"
    )
    parser.add_argument("--keep", type=Path, help="work folder to use and keep (must not exist)")
    args = parser.parse_args()
    if args.volumes < 2:
        parser.error("--volumes must be >= 2 (two workers prepare files in parallel)")
    work = args.keep if args.keep else Path(tempfile.mkdtemp(prefix="punmri-data-pipeline-"))
    if args.keep:
        work.mkdir(parents=True)
    try:
        res = measure(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    res["args"].pop("keep")
    print(json.dumps(res))
    print(write_section("data-pipeline", render(res)))


if __name__ == "__main__":
    main()
