"""Foundation benchmark -> docs/BENCHMARKS.md section "foundation".

1. Wall time of ``punmri run --config configs/demo.yaml`` from scratch (data, training, baselines,
   report) and its ID test metrics: dense MoDL vs zero-filled and CS-L1.
2. Training-step and per-slice inference time of MoDL at demo and full sizes.
3. Framework overhead: punmri's MoDL training step vs a minimal hand-written MoDL doing the same
   work (same CNN, same CG count).

Usage: ``python benchmarks/foundation.py [--skip-demo | --skip-steps] [--repeats N]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _docs import machine, punmri_run, write_section
from torch import nn

from punmri.config import load_config
from punmri.data.batches import TrainingStream
from punmri.data.phantoms import phantom_volume
from punmri.data.volumes import slice_volume
from punmri.models import build_model, count_parameters

ROOT = Path(__file__).resolve().parent.parent


def run_demo(config: str = "configs/demo.yaml") -> tuple[float, dict]:
    """Time ``punmri run --config CONFIG`` end to end in a fresh directory."""
    out = Path(tempfile.mkdtemp(prefix="punmri-demo-")) / "run"
    t0 = time.perf_counter()
    punmri_run(ROOT / config, out, [], quiet=True)
    wall = time.perf_counter() - t0
    metrics = json.loads((out / "metrics.json").read_text())
    shutil.rmtree(out.parent)
    return wall, metrics


def _batch(cfg, batch_size: int):
    h, w = cfg.data.image_size
    vol = phantom_volume((8, h, w), np.random.default_rng(0))
    images = slice_volume(vol, "sagittal")[:, :h, :w]
    images = np.stack([np.pad(i, ((0, h - i.shape[0]), (0, w - i.shape[1]))) for i in images])
    stream = TrainingStream.simulated(
        images, [str(i) for i in range(len(images))], cfg.physics, 0, False
    )
    return stream.batch(0, batch_size)


def _times(fn, repeats: int, warmup: int = 2) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _time(fn, repeats: int, warmup: int = 2) -> float:
    return statistics.median(_times(fn, repeats, warmup))


class MinimalMoDL(nn.Module):
    """A minimal hand-written MoDL: plain conv stack, plain CG, plain FFTs.

    With ``fold_shifts=False`` the centred FFTs are written the usual way (ifftshift, fft2,
    fftshift); with ``fold_shifts=True`` the shifts are folded into checkerboard-modulated maps
    and mask, the arithmetic punmri's ``SenseOperator`` does for even image sizes.
    """

    def __init__(
        self,
        channels: int,
        layers: int,
        unrolls: int,
        cg_iters: int,
        lam: float,
        fold_shifts: bool,
        batchnorm: bool = False,
    ):
        super().__init__()
        mods: list[nn.Module] = []
        cin = 2
        for _ in range(layers - 1):
            mods.append(nn.Conv2d(cin, channels, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                mods.append(nn.BatchNorm2d(channels))
            mods.append(nn.ReLU())
            cin = channels
        mods.append(nn.Conv2d(cin, 2, 3, padding=1))
        self.cnn = nn.Sequential(*mods)
        self.log_lam = nn.Parameter(torch.tensor(float(np.log(lam))))
        self.unrolls, self.cg_iters, self.fold_shifts = unrolls, cg_iters, fold_shifts

    def forward(self, y, maps, mask):
        dims = (-2, -1)
        mask = mask[:, None]
        if self.fold_shifts:
            h, w = maps.shape[-2:]
            c = (1 - 2 * ((torch.arange(h)[:, None] + torch.arange(w)) % 2)).float()
            maps = maps * c
            signed = mask * c * (-1.0) ** (h // 2 + w // 2)
            rhs0 = (maps.conj() * torch.fft.ifft2(signed * y, norm="ortho")).sum(1)

            def normal(x):
                k = mask * torch.fft.fft2(maps * x[:, None], norm="ortho")
                return (maps.conj() * torch.fft.ifft2(k, norm="ortho")).sum(1)
        else:

            def fwd(x):
                k = torch.fft.fft2(torch.fft.ifftshift(maps * x[:, None], dim=dims), norm="ortho")
                return mask * torch.fft.fftshift(k, dim=dims)

            def adj(k):
                img = torch.fft.ifft2(torch.fft.ifftshift(mask * k, dim=dims), norm="ortho")
                return (maps.conj() * torch.fft.fftshift(img, dim=dims)).sum(1)

            def normal(x):
                return adj(fwd(x))

            rhs0 = adj(y)
        lam = self.log_lam.exp()
        x = rhs0
        for _ in range(self.unrolls):
            t = torch.view_as_real(x).permute(0, 3, 1, 2)
            z = x + torch.view_as_complex(self.cnn(t).permute(0, 2, 3, 1).contiguous())
            b = rhs0 + lam * z
            xk = z
            r = b - (normal(xk) + lam * xk)
            p = r
            rs = (r.conj() * r).real.sum((1, 2))
            for _ in range(self.cg_iters):
                ap = normal(p) + lam * p
                alpha = rs / (p.conj() * ap).real.sum((1, 2))
                xk = xk + alpha[:, None, None] * p
                r = r - alpha[:, None, None] * ap
                rs_new = (r.conj() * r).real.sum((1, 2))
                p = r + (rs_new / rs)[:, None, None] * p
                rs = rs_new
            x = xk
        return x


#: The models timed against each other: punmri's MoDL and the minimal one without / with the
#: FFT shifts folded into maps and mask.
MODELS = ("punmri", "minimal", "minimal-folded")


def _step_fn(cfg_path: str, which: str):
    """A training step (forward + backward + Adam on one batch of the config's size) of
    punmri's MoDL (``which="punmri"``) or of :class:`MinimalMoDL` (``"minimal"``,
    ``"minimal-folded"``, starting from punmri's initial CNN weights), and the model."""
    cfg = load_config(ROOT / cfg_path)
    m = cfg.model
    batch = _batch(cfg, cfg.train.batch_size)
    punmri_model = build_model(m, seed=0)
    if which == "punmri":
        model = punmri_model
        op = batch.operator()
        call = lambda: model(batch.kspace, op)  # noqa: E731
    else:
        fold = which == "minimal-folded"
        bn = m.norm == "batch"
        model = MinimalMoDL(m.channels, m.depth, m.unrolls, m.cg_iterations, m.lam, fold, bn)
        model.cnn.load_state_dict(punmri_model.denoiser.body.state_dict())
        call = lambda: model(batch.kspace, batch.maps, batch.mask)  # noqa: E731
    opt = torch.optim.Adam(model.parameters(), 1e-4)

    def step() -> None:
        loss = (call() - batch.target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step, model, batch, cfg


def _step_times_in_process(cfg_path: str, which: str, repeats: int) -> list[float]:
    """Step times of one model in this (fresh) process, after two warm-up steps."""
    step, *_ = _step_fn(cfg_path, which)
    return _times(step, repeats)


def isolated_step_times(cfg_path: str, processes: int, repeats: int) -> dict[str, list[float]]:
    """Step times of each of :data:`MODELS`, each in its own fresh processes (rotating which
    runs first), so that none inherits another's allocator state."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out: dict[str, list[float]] = {which: [] for which in MODELS}
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for i in range(processes):
            for which in MODELS[i % len(MODELS) :] + MODELS[: i % len(MODELS)]:
                out[which] += pool.apply(_step_times_in_process, (cfg_path, which, repeats))
    return out


def check_same_work(cfg_path: str) -> None:
    """Fail unless every model of :data:`MODELS` reconstructs the same image from one batch (the
    timings compare equal work)."""
    outputs = {}
    for which in MODELS:
        _, model, batch, _ = _step_fn(cfg_path, which)
        with torch.no_grad():
            args = (batch.operator(),) if which == "punmri" else (batch.maps, batch.mask)
            outputs[which] = model(batch.kspace, *args)
    ref = outputs["punmri"]
    for which, out in outputs.items():
        err = float((out - ref).abs().max() / ref.abs().max())
        if err > 1e-4:
            raise SystemExit(f"{which} differs from punmri's MoDL by {err:.1e} (relative)")


def step_and_inference(cfg_path: str, processes: int, repeats: int) -> dict:
    """Median training-step time of each of :data:`MODELS` (each measured in fresh processes),
    punmri's per-slice inference time, and the setting."""
    check_same_work(cfg_path)
    times = isolated_step_times(cfg_path, processes, repeats)
    _, model, batch, cfg = _step_fn(cfg_path, "punmri")
    m = cfg.model
    model.eval()
    with torch.no_grad():
        op1 = type(batch.operator())(batch.maps[:1], batch.mask[:1])
        infer = _time(lambda: model(batch.kspace[:1], op1), 5)
    return {
        "params": count_parameters(model),
        "size": f"{cfg.data.image_size[0]}x{cfg.data.image_size[1]}, {cfg.physics.coils} coils",
        "model": f"{m.denoiser} {m.channels}ch x{m.depth}, K={m.unrolls}, CG={m.cg_iterations}",
        "batch": cfg.train.batch_size,
        "step_s": {which: statistics.median(t) for which, t in times.items()},
        "n": len(times["punmri"]),
        "infer_s": infer,
    }


def previous_demo_rows() -> list[str]:
    """The demo part of the current "foundation" section of docs/BENCHMARKS.md (if any)."""
    from _docs import DOC

    text = DOC.read_text() if DOC.is_file() else ""
    start, end = text.find("**Demo**"), text.find("**MoDL step")
    return text[start:end].rstrip().splitlines() + [""] if 0 <= start < end else []


def previous_step_rows() -> list[str]:
    """The step-time part of the current "foundation" section of docs/BENCHMARKS.md (if any)."""
    from _docs import DOC

    text = DOC.read_text() if DOC.is_file() else ""
    start, end = text.find("**MoDL step"), text.find("<!-- END foundation -->")
    return text[start:end].rstrip().splitlines() if 0 <= start < end else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip-demo", action="store_true", help="keep the demo rows already in the doc"
    )
    parser.add_argument(
        "--skip-steps", action="store_true", help="keep the step-time rows already in the doc"
    )
    parser.add_argument("--processes", type=int, default=4, help="fresh processes per model")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per process")
    args = parser.parse_args()
    lines = [
        "## Foundation (`python benchmarks/foundation.py`)",
        "",
        f"Machine: {machine()}.",
        "",
    ]
    if args.skip_demo:
        lines += previous_demo_rows()
    else:
        wall, metrics = run_demo()
        id_ = {k: v["suites"]["id"] for k, v in metrics["methods"].items()}
        dense, zf, cs = (id_[k]["psnr"] for k in ("dense", "zero-filled", "cs-l1"))
        lines += [
            f"**Demo** (`punmri run --config configs/demo.yaml`, from scratch): "
            f"{wall:.0f} s wall time (target <= 600 s).",
            "",
            "| method | ID PSNR (dB) | ID SSIM | n |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {k} | {v['psnr']:.2f} ± {v['psnr_std']:.2f} | {v['ssim']:.4f} | {v['n']} |"
            for k, v in id_.items()
        ]
        verdict_zf = "meets" if dense - zf >= 4 else "MISSES"
        verdict_cs = "meets" if dense - cs >= 1.5 else "MISSES"
        lines += [
            "",
            f"- dense - zero-filled: {dense - zf:+.2f} dB ({verdict_zf} the >= 4 dB target)",
            f"- dense - CS-L1: {dense - cs:+.2f} dB ({verdict_cs} the >= 1.5 dB target)",
            "",
        ]
        if args.skip_steps:
            print(write_section("foundation", "\n".join([*lines, *previous_step_rows()])))
            return
        # keep the demo figures even if the timing part below fails
        write_section("foundation", "\n".join([*lines, "(step timings: being measured)"]))
    lines += [
        "**MoDL step and inference time** (training step = forward + backward + Adam on one "
        "batch, median of n steps measured in fresh processes, each model in its own processes, "
        "rotating the order, after two warm-up steps; inference = one slice, no autograd). The "
        "*minimal* columns are a hand-written MoDL in this script with the same CNN (same "
        "initial weights) and CG count: *shifted* writes the centred FFTs the usual way "
        "(ifftshift, fft2, fftshift), *folded* folds the shifts into checkerboard-modulated maps "
        "and mask as punmri's `SenseOperator` does. punmri must not be slower than either; the "
        "difference to *folded* is the framework's own overhead.",
        "",
        "| config | image | model | params | batch | n | step (s) | minimal, shifted (s) | "
        "minimal, folded (s) | vs shifted | vs folded | inference / slice (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cfg_path in ("configs/demo.yaml", "configs/full.yaml"):
        r = step_and_inference(cfg_path, args.processes, args.repeats)
        t = r["step_s"]
        lines.append(
            f"| `{cfg_path}` | {r['size']} | {r['model']} | {r['params']:,} | {r['batch']} | "
            f"{r['n']} | {t['punmri']:.3f} | {t['minimal']:.3f} | {t['minimal-folded']:.3f} | "
            f"{t['punmri'] / t['minimal'] - 1:+.1%} | {t['punmri'] / t['minimal-folded'] - 1:+.1%} "
            f"| {r['infer_s']:.3f} |"
        )
    print(write_section("foundation", "\n".join(lines)))


if __name__ == "__main__":
    main()
