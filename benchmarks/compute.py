"""Compute-at-scale benchmark -> docs/BENCHMARKS.md section "compute".

At the MoDL paper's scale (320x320 images, 16 coils, K=8 unrolls, 10 CG steps, a 5-layer
64-channel ResNet denoiser without BatchNorm, batch 1, random 4x mask; the batch simulated by
``punmri.data.simulate`` from random head phantoms), one training step (forward, backward, Adam
step) measured in fresh processes (two rounds per setting, taking turns):

1. memory and step time of the data-consistency backward variants: ``dc_backward=unrolled``
   (default), ``checkpoint_unrolls``, ``dc_backward=implicit`` and both; the gradients of the
   first step are compared with the default's on the same batch and weights;
2. ``train.precision`` fp32 vs bf16 on the CPU: step time, loss and gradient differences;
3. data parallelism over gloo processes (torchrun, ``punmri.train.distributed``) at a smaller
   size, with the same global batch;
4. with ``--gpu``: the same on CUDA (peak ``torch.cuda.max_memory_allocated``, fp32/bf16/fp16,
   1..N GPUs over NCCL).

Results are kept in ``runs/bench-compute/results.json``; ``--skip-cpu`` reuses the CPU parts
stored there (e.g. to add the GPU part on a GPU machine without redoing the CPU part).

Usage: ``python benchmarks/compute.py [--gpu] [--skip-cpu] [--size 320 --coils 16 ...]``
(about 7 minutes on a free 2-core CPU with the defaults; a paper-scale step takes 5-10 s
there, several times that while other jobs share the cores).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _docs import machine, write_section

from punmri.config import ModelConfig, PhysicsConfig
from punmri.data.batches import collate, rank_share
from punmri.data.phantoms import random_ellipses
from punmri.data.simulate import simulate
from punmri.models import build_model, count_parameters
from punmri.models.modl import precision_autocast
from punmri.train import distributed
from punmri.train.losses import l1_loss

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "runs" / "bench-compute" / "results.json"
#: ``name -> (model.checkpoint_unrolls, model.dc_backward)``; the first is the reference.
VARIANTS: dict[str, tuple[bool, str]] = {
    "unrolled": (False, "unrolled"),
    "checkpoint": (True, "unrolled"),
    "implicit": (False, "implicit"),
    "checkpoint+implicit": (True, "implicit"),
}
#: Parts measured on the CPU (``--skip-cpu`` reuses them from :data:`RESULTS`).
CPU_PARTS = ("variants", "precision", "ddp")
GIB = 2**30


# --------------------------------------------------------------------------- the worker


def _rss() -> int:
    """Resident set size of this process now, in bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _batch(spec: dict, rank: int, world: int):
    """This process's share of the global batch: slice ``i`` is a random head phantom simulated
    with generator ``(0, i)`` (the same in every process and every setting)."""
    size = spec["size"]
    physics = PhysicsConfig(coils=spec["coils"], acceleration=4.0, mask_kind="random")
    first, stop = rank_share(spec["batch"], rank, world)
    samples = []
    for i in range(first, stop):
        rng = np.random.default_rng([0, i])
        samples.append(simulate(random_ellipses((size, size), 8, rng), physics, rng, str(i)))
    return collate(samples)


def _model_config(spec: dict) -> ModelConfig:
    checkpoint, dc_backward = VARIANTS[spec["variant"]]
    return ModelConfig(
        channels=spec["channels"],
        depth=spec["depth"],
        unrolls=spec["unrolls"],
        cg_iterations=spec["cg"],
        batchnorm=False,
        checkpoint_unrolls=checkpoint,
        dc_backward=dc_backward,
    )


def worker(spec: dict) -> None:
    """Train ``spec["warmup"] + spec["repeats"]`` steps of one setting in this fresh process (or
    in each process torchrun started) and write the measurements to ``spec["out"]`` (process
    0); the gradients of the first step go to ``spec["grads"]`` when it is set."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    with distributed.session(spec["device"]) as world:
        rank = distributed.rank()
        device = distributed.device_of_rank(torch.device(spec["device"]))
        cuda = device.type == "cuda"
        batch = _batch(spec, rank, world).to(device)
        op = batch.operator()
        model = build_model(_model_config(spec), seed=0).to(device).train()
        net = distributed.wrap(model, device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler(device.type, enabled=spec["precision"] == "fp16")
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) if cuda else _rss()
        peak_before = _peak_rss()
        load = os.getloadavg()[0]
        times, losses, grads = [], [], None
        for i in range(spec["warmup"] + spec["repeats"]):
            t0 = time.perf_counter()
            with precision_autocast(spec["precision"], device):
                pred = net(batch.kspace, op)
            loss = l1_loss(pred, batch.target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if i == 0 and spec["grads"]:
                grads = {n: p.grad.detach().double().cpu() for n, p in model.named_parameters()}
            scaler.step(optimizer)
            scaler.update()
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
            losses.append(distributed.mean(float(loss.detach())))
        peak = torch.cuda.max_memory_allocated(device) if cuda else _peak_rss()
        per_rank = distributed.gather(times[spec["warmup"] :])
        if distributed.is_main():
            step_times = [max(ts) for ts in zip(*per_rank, strict=True)]  # the slowest process
            record = {
                "world": world,
                "threads": torch.get_num_threads(),
                "device": str(device),
                "step_s": statistics.median(step_times),
                "step_times_s": step_times,
                "warmup_s": times[0],
                "loss": losses[0],
                "memory_before": before,
                "peak_before": peak_before,
                "peak": peak,
                "parameters": count_parameters(model),
                "load": [load, os.getloadavg()[0]],
            }
            Path(spec["out"]).write_text(json.dumps(record))
            if grads is not None:
                torch.save(grads, spec["grads"])


# --------------------------------------------------------------------------- the launcher


def measure(spec: dict, processes: int = 0, threads_env: int = 0) -> dict:
    """Run :func:`worker` for ``spec`` in a fresh subprocess (``processes`` > 0: under torchrun
    with that many processes) and return its record (with the gradients under ``"grads"``)."""
    with tempfile.TemporaryDirectory(prefix="punmri-compute-") as tmp:
        spec = {**spec, "out": str(Path(tmp) / "record.json")}
        if spec.get("grads"):
            spec["grads"] = str(Path(tmp) / "grads.pt")
        command = [sys.executable]
        if processes:
            command += ["-m", "torch.distributed.run", "--standalone"]
            command += ["--nproc_per_node", str(processes)]
        command += [str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
        env = dict(os.environ)
        if threads_env:
            env["OMP_NUM_THREADS"] = str(threads_env)
        label = f"{spec['device']} {spec['variant']} {spec['precision']} x{processes or 1}"
        print(f"[compute] {label} ...", flush=True)
        t0 = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, env=env)
        record = json.loads(Path(spec["out"]).read_text())
        print(
            f"[compute] {label}: {record['step_s']:.2f} s/step, "
            f"{time.perf_counter() - t0:.0f} s in all",
            flush=True,
        )
        if spec.get("grads"):
            record["grads"] = torch.load(spec["grads"])
    return record


def grad_difference(grads: dict, reference: dict) -> tuple[float, float]:
    """Relative differences ``||g_p - r_p|| / ||r_p||`` of two gradient sets (float64): the
    largest over the denoiser's parameter tensors, and that of ``log_lam`` (the data-consistency
    weight, whose gradient depends most on how far CG has converged)."""
    rel = {
        n: float((grads[n] - r).norm() / r.norm().clamp_min(1e-30)) for n, r in reference.items()
    }
    return max(v for n, v in rel.items() if n != "log_lam"), rel.get("log_lam", math.nan)


#: One setting to measure: its key, the worker spec, torchrun processes (0: plain subprocess)
#: and ``OMP_NUM_THREADS`` (0: unset).
Setting = tuple[str, dict, int, int]


def measure_rounds(settings: list[Setting], rounds: int) -> dict[str, dict]:
    """Measure every setting once per round, each time in a fresh process, the order reversed in
    every other round (so that a change of the machine's load does not favour one setting);
    merge the rounds of each: all timed steps (median), the largest peak and increase, every
    load reading. Gradients (``spec["grads"]``) are kept from the first round."""
    runs: dict[str, list[dict]] = {key: [] for key, *_ in settings}
    for r in range(rounds):
        for key, spec, processes, threads in settings if r % 2 == 0 else settings[::-1]:
            spec = {**spec, "grads": spec.get("grads", False) and r == 0}
            runs[key].append(measure(spec, processes, threads))
    merged = {}
    for key, records in runs.items():
        record = dict(records[0])
        record["step_times_s"] = [t for rec in records for t in rec["step_times_s"]]
        record["step_s"] = statistics.median(record["step_times_s"])
        record["increase"] = max(rec["peak"] - rec["memory_before"] for rec in records)
        record["peak"] = max(rec["peak"] for rec in records)
        record["load"] = [v for rec in records for v in rec["load"]]
        record["rounds"] = len(records)
        merged[key] = record
    return merged


def measure_variants(spec: dict, precisions: tuple[str, ...], rounds: int) -> dict:
    """Every backward variant in fp32, and the other ``precisions`` with the default variant;
    gradient and loss differences against the fp32 default."""
    settings: list[Setting] = [
        (name, {**spec, "variant": name, "grads": True}, 0, 0) for name in VARIANTS
    ]
    settings += [
        (p, {**spec, "precision": p, "grads": True}, 0, 0) for p in precisions if p != "fp32"
    ]
    measured = measure_rounds(settings, rounds)
    reference = measured["unrolled"]
    for record in measured.values():
        denoiser, lam = grad_difference(record["grads"], reference["grads"])
        record["grad_rel_diff"], record["lam_grad_rel_diff"] = denoiser, lam
        record["loss_rel_diff"] = abs(record["loss"] - reference["loss"]) / reference["loss"]
    for record in measured.values():
        record.pop("grads")
    return {
        "variants": {name: measured[name] for name in VARIANTS},
        "precision": {p: measured["unrolled" if p == "fp32" else p] for p in precisions},
    }


def measure_ddp(spec: dict, processes: list[int], threads: int, rounds: int) -> dict:
    """Time per step with the same global batch over 1.. processes (torchrun), each process with
    ``threads`` threads; on the CPU also one process with ``max(processes) * threads`` threads
    (the same cores used by intra-op threads instead of processes)."""
    settings: list[Setting] = [
        (f"{n}x{threads}" if threads else str(n), {**spec, "threads": threads}, n, threads)
        for n in processes
    ]
    if spec["device"] == "cpu":
        wide = max(processes) * threads
        settings.append((f"1x{wide}", {**spec, "threads": wide}, 1, wide))
    return measure_rounds(settings, rounds)


# --------------------------------------------------------------------------- the section


def _gb(n: float) -> str:
    return f"{n / GIB:.2f}"


def _diff(x: float) -> str:
    """A relative difference; not finite where an fp16 step overflowed (the scaler skips it)."""
    return f"{x:.1e}" if math.isfinite(x) else "overflow (step skipped by the scaler)"


def _load(record: dict) -> str:
    """The range of the 1-minute load average seen while a setting was measured."""
    return f"{min(record['load']):.1f}-{max(record['load']):.1f}"


def _loads(*parts: dict) -> str:
    """The range of the 1-minute load average seen at the start and end of the measurements."""
    values = [v for part in parts for r in part.values() for v in r["load"]]
    return f"{min(values):.1f}-{max(values):.1f}"


def _times(record: dict) -> str:
    n = len(record["step_times_s"])
    return f"{record['step_s']:.2f} ({n} step{'s' if n > 1 else ''})"


def _setting(s: dict) -> str:
    return (
        f"{s['size']}x{s['size']} images, {s['coils']} coils, K={s['unrolls']} unrolls, "
        f"{s['cg']} CG steps, {s['depth']}-layer {s['channels']}-channel ResNet denoiser "
        f"(no BatchNorm), batch {s['batch']}, random 4x mask"
    )


def _variant_table(part: dict, cuda: bool) -> list[str]:
    memory = "peak allocated (GB) | increase in the steps (GB)"
    if not cuda:
        memory = "peak RSS (GB) | RSS increase in the steps (GB)"
    lines = [
        f"| variant | model settings | {memory} | step time (s, median) | load | "
        "first-step loss | rel. grad diff vs unrolled: denoiser (max) | λ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in part.items():
        checkpoint, dc = VARIANTS[name]
        settings = f"`dc_backward={dc}`" + (", `checkpoint_unrolls=true`" if checkpoint else "")
        lines.append(
            f"| {name} | {settings} | {_gb(r['peak'])} | {_gb(r['increase'])} | "
            f"{_times(r)} | {_load(r)} | {r['loss']:.6f} | "
            f"{_diff(r['grad_rel_diff'])} | {_diff(r['lam_grad_rel_diff'])} |"
        )
    return lines


def _precision_table(part: dict, cuda: bool) -> list[str]:
    memory = "peak allocated (GB)" if cuda else "peak RSS (GB)"
    ref = part["fp32"]["step_s"]
    lines = [
        f"| `train.precision` | step time (s, median) | speed-up vs fp32 | {memory} | load | "
        "first-step loss | rel. loss diff vs fp32 | rel. grad diff vs fp32: denoiser (max) | "
        "λ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in part.items():
        lines.append(
            f"| {name} | {_times(r)} | {ref / r['step_s']:.2f}x | {_gb(r['peak'])} | "
            f"{_load(r)} | {r['loss']:.6f} | {_diff(r['loss_rel_diff'])} | "
            f"{_diff(r['grad_rel_diff'])} | {_diff(r['lam_grad_rel_diff'])} |"
        )
    return lines


def _ddp_table(part: dict, what: str) -> list[str]:
    base = next(r for r in part.values() if r["world"] == 1)
    lines = [
        f"| {what} | per-process batch | time per step (s, median) | load | slices / s | "
        "scaling efficiency |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in part.items():
        batch = r["batch"]
        units = r["world"] * (r["threads"] if r["device"] == "cpu" else 1)
        eff = base["step_s"] / (units * r["step_s"])
        lines.append(
            f"| {name} | {batch // r['world']} | {_times(r)} | {_load(r)} | "
            f"{batch / r['step_s']:.2f} | "
            f"{eff:.2f} |"
        )
    return lines


def _steps_text(spec: dict) -> str:
    """How the steps of a setting were timed."""
    rounds, n, warm = spec["rounds"], spec["repeats"], spec["warmup"]
    each = (
        f"{warm} warm-up step{'s' if warm > 1 else ''}, then {n} timed step{'s' if n > 1 else ''}"
    )
    if rounds == 1:
        return f"one fresh process per setting: {each} (median)"
    return (
        f"{rounds} fresh processes per setting, the settings taking turns (the order reversed "
        f"every other round, against drifts of the machine's load); in each, {each}; the median "
        f"over all {rounds * n}"
    )


def _cpu_lines(cpu: dict) -> list[str]:
    s, v, p = cpu["spec"], cpu["variants"], cpu["precision"]
    ref = v["unrolled"]
    grown = {k: r["increase"] for k, r in v.items()}
    relative = ", ".join(f"{k} {grown[k] / grown['unrolled']:.0%}" for k in v if k != "unrolled")
    loss_diff = max(r["loss_rel_diff"] for r in v.values())
    return [
        f"Machine: {cpu['machine']}; 1-minute load average {_loads(v, p)} during these "
        "measurements (the cores are shared with other jobs, so times carry their noise).",
        "",
        f"**Setting** (the MoDL paper's scale): {_setting(s)}; the batch is simulated by "
        f"`punmri.data.simulate` ({s['coils']} coils, smooth phase, 40 dB noise) from a random "
        f"head phantom; {ref['parameters']:,} parameters; L1 loss, Adam. One training step = "
        f"forward + backward + optimizer step, timed with {ref['threads']} torch threads: "
        f"{_steps_text(s)}. Memory is the process's peak RSS "
        "(`getrusage(RUSAGE_SELF).ru_maxrss`, whole process) and its increase over the RSS just "
        "before the first step (batch and model already built; the larger of the rounds). "
        "Gradients are those of the first step of the first round (same initial weights and "
        "batch in every setting); their difference is `||g_p - g_ref,p|| / ||g_ref,p||` per "
        "parameter tensor `p`: the largest over the denoiser's tensors, and that of λ "
        "(`log_lam`). *load*: the 1-minute load average at the start and end of each round "
        "(lowest-highest).",
        "",
        "### Data-consistency backward variants (CPU, fp32)",
        "",
        *_variant_table(v, cuda=False),
        "",
        f"RSS increase in the steps relative to unrolled: {relative}. The first-step losses "
        f"agree to {_diff(loss_diff)} (relative), so every row computes the same forward "
        "pass. `checkpoint_unrolls` recomputes each unroll in backward, so its gradients equal "
        "the unrolled ones up to rounding (measured: denoiser "
        f"{_diff(v['checkpoint']['grad_rel_diff'])}, λ "
        f"{_diff(v['checkpoint']['lam_grad_rel_diff'])}). `implicit` differentiates the exact "
        "solve of the normal equations, so it equals the unrolled gradient only as far as "
        f"{s['cg']} CG steps have converged (measured: denoiser "
        f"{_diff(v['implicit']['grad_rel_diff'])}, λ {_diff(v['implicit']['lam_grad_rel_diff'])}"
        "): the difference is the truncation of CG, not an error, and it is largest for λ, "
        "whose gradient is the most sensitive to the unconverged residual.",
        "",
        "### Precision (CPU, default variant)",
        "",
        *_precision_table(p, cuda=False),
        "",
        f"CPU: {cpu['bf16_note']}. The FFTs, SENSE operator and CG stay complex64 under every "
        "precision; only the denoiser is autocast (weights stay float32).",
        "",
    ]


def _ddp_lines(ddp: dict) -> list[str]:
    s, t = ddp["spec"], ddp["runs"]
    for r in t.values():
        r["batch"] = s["batch"]
    one, two = t["1x1"], t["2x1"]
    wide = next((k for k in t if k not in ("1x1", "2x1")), None)
    versus = (
        f", and {t[wide]['step_s'] / two['step_s']:.2f}x that of one process with "
        f"{t[wide]['threads']} threads ({wide})"
        if wide
        else ""
    )
    return [
        "### Data parallelism over gloo processes (CPU)",
        "",
        "A direct DDP training loop (`punmri.train.distributed.session` and `wrap`, each "
        "process taking its `rank_share` of the global batch), launched by `python -m "
        "torch.distributed.run --standalone --nproc_per_node N` with `OMP_NUM_THREADS` threads "
        f"per process, at a smaller size so that it finishes: {_setting(s)}. The global batch is "
        f"{s['batch']} in every row (DDP averages the gradients of the shares); it is simulated "
        f"before timing. Time per step: the slowest process; {_steps_text(s)}. 1-minute load "
        f"average {_loads(t)}. **Scaling efficiency** = (throughput / throughput of one "
        "process with one thread) / cores used, i.e. `t_1x1 / (N * t)` with N = processes x "
        "threads (1.00: perfect scaling).",
        "",
        *_ddp_table(t, "processes x threads"),
        "",
        f"Two single-threaded processes give {one['step_s'] / two['step_s']:.2f}x the "
        f"throughput of one (efficiency {one['step_s'] / (2 * two['step_s']):.2f}){versus}. "
        f"This machine has "
        f"{os.cpu_count()} CPU cores shared with other jobs, so this measures the overhead of "
        "DDP (gradient all-reduce over gloo, one model and operator per process) and of the "
        "shared cores, not the speed-up that separate GPUs or nodes would give.",
        "",
    ]


def _gpu_lines(gpu: dict | None) -> list[str]:
    lines = ["### GPU (`python benchmarks/compute.py --gpu`)", ""]
    if gpu is None:
        why = (
            "run with `--gpu`"
            if torch.cuda.is_available()
            else "no CUDA device on the machine that generated this section"
        )
        return [*lines, f"Not measured ({why})."]
    s = gpu["spec"]
    for r in gpu["ddp"].values():
        r["batch"] = gpu["ddp_batch"]
    return [
        *lines,
        f"Machine: {gpu['machine']}.",
        "",
        f"Setting as above ({_setting(s)}), on CUDA. Memory is `torch.cuda.max_memory_allocated` "
        "over the steps, and its increase over `torch.cuda.memory_allocated` just before the "
        f"first step; step times after `torch.cuda.synchronize`: {_steps_text(s)}.",
        "",
        *_variant_table(gpu["variants"], cuda=True),
        "",
        *_precision_table(gpu["precision"], cuda=True),
        "",
        f"1..N GPUs (torchrun, NCCL, one GPU per process), global batch {gpu['ddp_batch']}, "
        "fp32, default variant:",
        "",
        *_ddp_table(gpu["ddp"], "GPUs"),
    ]


def render(results: dict) -> str:
    """The section from the stored results (a part not measured says so)."""
    lines = ["## Compute at scale (`python benchmarks/compute.py`)", ""]
    lines += _cpu_lines(results["cpu"]) if "cpu" in results else ["CPU: not measured.", ""]
    lines += _ddp_lines(results["ddp"]) if "ddp" in results else []
    lines += _gpu_lines(results.get("gpu"))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _bf16_note() -> str:
    """Whether this CPU has native bf16 instructions (Linux ``/proc/cpuinfo``)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "bf16 support of this CPU unknown"
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags.split()]
    if native:
        return f"this CPU has native bf16 instructions ({', '.join(native)})"
    return "this CPU has no native bf16 instructions (bf16 is emulated)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=320, help="image size (square)")
    parser.add_argument("--coils", type=int, default=16)
    parser.add_argument("--unrolls", type=int, default=8)
    parser.add_argument("--cg", type=int, default=10, help="CG steps per unroll")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--depth", type=int, default=5, help="ResNet conv layers")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed CPU steps per setting and round (5-35 s)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per setting")
    parser.add_argument("--ddp-size", type=int, default=96)
    parser.add_argument("--ddp-coils", type=int, default=8)
    parser.add_argument("--ddp-unrolls", type=int, default=4)
    parser.add_argument("--ddp-channels", type=int, default=32)
    parser.add_argument("--ddp-batch", type=int, default=4, help="global batch")
    parser.add_argument("--ddp-repeats", type=int, default=8)
    parser.add_argument("--gpu", action="store_true", help="also measure on CUDA")
    parser.add_argument("--gpus", type=int, default=0, help="most GPUs (0 = all visible)")
    parser.add_argument("--gpu-repeats", type=int, default=10)
    parser.add_argument(
        "--skip-cpu", action="store_true", help=f"reuse the CPU parts stored in {RESULTS}"
    )
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    if min(args.repeats, args.ddp_repeats, args.gpu_repeats, args.rounds) < 1:
        raise SystemExit("--repeats, --ddp-repeats, --gpu-repeats and --rounds must be >= 1")
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: this machine shows no CUDA device (torch.cuda.is_available())")

    spec = {
        "size": args.size,
        "coils": args.coils,
        "unrolls": args.unrolls,
        "cg": args.cg,
        "channels": args.channels,
        "depth": args.depth,
        "batch": args.batch,
        "variant": "unrolled",
        "precision": "fp32",
        "device": "cpu",
        "threads": 0,
        "warmup": 1,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "grads": False,
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if not args.skip_cpu:
        for part in ("cpu", "ddp"):
            results.pop(part, None)
        measured = measure_variants(spec, ("fp32", "bf16"), args.rounds)
        results["cpu"] = {
            "machine": machine(),
            "spec": spec,
            "bf16_note": _bf16_note(),
            **measured,
        }
        ddp_spec = {
            **spec,
            "size": args.ddp_size,
            "coils": args.ddp_coils,
            "unrolls": args.ddp_unrolls,
            "channels": args.ddp_channels,
            "batch": args.ddp_batch,
            "repeats": args.ddp_repeats,
            "warmup": 2,
        }
        results["ddp"] = {"spec": ddp_spec, "runs": measure_ddp(ddp_spec, [1, 2], 1, args.rounds)}
    if args.gpu:
        count = args.gpus or torch.cuda.device_count()
        gpu_spec = {**spec, "device": "cuda", "repeats": args.gpu_repeats}
        measured = measure_variants(gpu_spec, ("fp32", "bf16", "fp16"), args.rounds)
        counts = [n for n in range(1, count + 1) if count % n == 0]
        gpu_ddp = measure_ddp({**gpu_spec, "batch": count}, counts, 0, args.rounds)
        results["gpu"] = {
            "machine": f"{machine()}, {torch.cuda.get_device_name(0)} x{count}",
            "spec": gpu_spec,
            "ddp_batch": count,
            "ddp": gpu_ddp,
            **measured,
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(write_section("compute", render(results)))


if __name__ == "__main__":
    main()
