"""The training loop: Adam, LR schedule, clipping, validation, early stopping, exact resume.

A run directory holds ``last.pt`` (full state for resuming), ``best.pt`` (model weights with the
best validation PSNR), ``metrics.jsonl`` (one JSON object per logged event) and, when training has
finished, ``done.json`` (the :class:`TrainResult`). Calling :func:`train` on a directory with
``done.json`` returns the stored result; on one with only ``last.pt`` it resumes, and the resumed
run is bit-identical to an uninterrupted one on CPU (batches are a pure function of the step).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..data.batches import Batch, TrainingStream
from ..evaluate.metrics import psnr
from ..io import write_json_atomic, write_text_atomic
from ..models.modl import autocast_dtype, precision_autocast
from ..pruning import MaskParametrization, current_masks
from . import distributed
from .checkpoint import (
    load_checkpoint,
    load_model_state,
    model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .device import resolve_device
from .losses import get_loss


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate at ``step`` (linear warm-up, then the schedule)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        span = max(cfg.steps - cfg.warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(step - cfg.warmup_steps, span) / span))
    if cfg.schedule == "step":
        return 0.1 ** (int(step >= 0.6 * cfg.steps) + int(step >= 0.85 * cfg.steps))
    return 1.0


@torch.no_grad()
def validate(
    model: nn.Module, val: Sequence[Batch], device: torch.device, precision: str = "fp32"
) -> float:
    """Mean per-slice magnitude PSNR (:func:`~punmri.evaluate.metrics.psnr`) over validation
    batches, the denoiser under the autocast of ``precision`` (as in training).

    In a distributed run every process must call it: batch ``j`` is scored by process
    ``j % world_size`` with the main process's BatchNorm statistics, and the values are averaged
    in batch order (the number a single process computes).
    """
    model.eval()
    distributed.sync_buffers(model)
    world, rank = distributed.world_size(), distributed.rank()
    mine: list[tuple[int, list[float]]] = []
    for j, b in enumerate(val):
        if j % world != rank:
            continue
        b = b.to(device)
        with precision_autocast(precision, device):
            pred = model(b.kspace, b.operator()).cpu()
        pairs = zip(b.target.cpu(), pred, b.names, strict=True)
        mine.append((j, [psnr(t, p, name=n) for t, p, n in pairs]))
    scored = sorted(pair for share in distributed.gather(mine) for pair in share)
    values = [v for _, batch_values in scored for v in batch_values]
    model.train()
    return sum(values) / len(values)


@dataclass
class TrainHooks:
    """Extension points of :func:`train` (pruning uses them; all optional).

    Attributes:
        param_groups: ``model -> optimizer parameter groups`` (default: every trainable param).
        on_optimizer: called once with the new optimizer (e.g. to register a re-zeroing hook).
        regularizer: ``step -> scalar`` added to the loss at every step (e.g. a KL prior).
        after_step: called with the 0-based step after each optimizer step.
    """

    param_groups: Callable[[nn.Module], list[dict]] | None = None
    on_optimizer: Callable[[torch.optim.Optimizer], None] | None = None
    regularizer: Callable[[int], torch.Tensor] | None = None
    after_step: Callable[[int], None] | None = None


@dataclass
class TrainResult:
    """What a finished training run reports (saved as ``done.json``)."""

    steps: int
    best_step: int
    best_val_psnr: float
    final_val_psnr: float
    stopped_early: bool
    wall_s: float
    forward_passes: int  # batches run forward (training and validation)
    backward_passes: int  # batches back-propagated
    history: list[dict] = field(default_factory=list)
    world_size: int = 1  # processes that trained (in the session that finished)
    device: str = ""  # the main process's device in that session


def _write_log(path: Path, history: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(h) + "\n" for h in history))


def train(
    model: nn.Module,
    stream: TrainingStream,
    val: Sequence[Batch],
    cfg: TrainConfig,
    out_dir: str | Path,
    seed: int = 0,
    progress: bool = True,
    desc: str = "train",
    hooks: TrainHooks | None = None,
    checkpoint_every: int | None = None,
    stop_at: int | None = None,
) -> TrainResult:
    """Train ``model`` (called as ``model(kspace, op)``) and keep checkpoints in ``out_dir``.

    Args:
        hooks: extension points (:class:`TrainHooks`).
        checkpoint_every: steps between ``last.pt`` saves (default: every validation).
        stop_at: stop after this step without finishing (for tests of resume); ``done.json`` is
            not written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = out / "done.json"
    if done.is_file():
        last = out / "last.pt"
        load_model_state(model, load_checkpoint(last), last)
        return TrainResult(**json.loads(done.read_text()))
    device = resolve_device(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    model.to(device).train()
    loss_fn = get_loss(cfg.loss)
    hooks = hooks or TrainHooks()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = hooks.param_groups(model) if hooks.param_groups else [{"params": params}]
    optimizer = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    if hooks.on_optimizer is not None:
        hooks.on_optimizer(optimizer)
    # Mixed precision: the forward runs under autocast (MoDL keeps its physics in complex64);
    # fp16 scales the loss against gradient underflow (off: the scaler is a pass-through).
    amp_dtype = autocast_dtype(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    torch.manual_seed(seed)
    step, best, best_step, bad_vals, wall = 0, -math.inf, -1, 0, 0.0
    fwd = bwd = 0
    history: list[dict] = []
    if (out / "last.pt").is_file():
        state = load_checkpoint(out / "last.pt", map_location=device)
        load_model_state(model, state, out / "last.pt")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        if state.get("scaler"):  # fp16: resume with the loss scale reached, not the default
            scaler.load_state_dict(state["scaler"])
        step, best, best_step = state["step"], state["best"], state["best_step"]
        bad_vals, wall, history = state["bad_vals"], state["wall_s"], state["history"]
        fwd, bwd = state["forward_passes"], state["backward_passes"]
    every = checkpoint_every or cfg.val_every
    main = distributed.is_main()
    # Several processes (torchrun): each computes its share of the global batch and DDP averages
    # the gradients; masks must agree, and the main process alone writes files.
    world, rank = distributed.world_size(), distributed.rank()
    if world > 1 and any(isinstance(m, MaskParametrization) for m in model.modules()):
        digest = distributed.mask_digest(current_masks(model))
        distributed.check_same(digest, f"the pruning mask of {desc}")
    net = distributed.wrap(model, device)  # ``model`` itself in a single process

    def checkpoint() -> None:
        if not main:
            return
        save_checkpoint(
            out / "last.pt",
            **model_state(model),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict(),
            rng=rng_state(),
            step=step,
            best=best,
            best_step=best_step,
            bad_vals=bad_vals,
            wall_s=wall,
            history=history,
            forward_passes=fwd,
            backward_passes=bwd,
        )
        _write_log(out / "metrics.jsonl", history)

    stopped_early = False
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc=desc,
        disable=not (progress and main),
        leave=False,
        dynamic_ncols=True,
    )
    running = None
    t0 = time.perf_counter()
    upcoming = stream.loader(step, cfg.steps, cfg.batch_size, cfg.workers, rank, world)
    while step < cfg.steps:
        batch = next(upcoming).to(device)
        with precision_autocast(cfg.precision, device):
            pred = net(batch.kspace, batch.operator())
        loss = loss_fn(pred, batch.target)
        if hooks.regularizer is not None:
            loss = loss + hooks.regularizer(step)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if hooks.after_step is not None:
            hooks.after_step(step)
        fwd += 1
        bwd += 1
        step += 1
        value = distributed.mean(float(loss.detach()))  # the global batch's loss
        if not math.isfinite(value):
            raise FloatingPointError(
                f"training loss became {value} at step {step} ({desc}); lower train.lr or set "
                "train.grad_clip"
            )
        running = value if running is None else 0.9 * running + 0.1 * value
        bar.update(1)
        validate_now = step % cfg.val_every == 0 or step == cfg.steps
        if step % 10 == 0 or validate_now:
            history.append({"step": step, "loss": value, "lr": scheduler.get_last_lr()[0]})
        if validate_now:
            psnr = validate(model, val, device, cfg.precision)
            fwd += len(val)
            history.append({"step": step, "val_psnr": psnr})
            if psnr > best:
                best, best_step, bad_vals = psnr, step, 0
                if main:
                    save_checkpoint(out / "best.pt", **model_state(model), step=step)
            else:
                bad_vals += 1
            bar.set_postfix(loss=f"{running:.4f}", val_psnr=f"{psnr:.2f}")
            if cfg.patience and bad_vals >= cfg.patience:
                stopped_early = True
        if step % every == 0 or step == cfg.steps or stopped_early:
            wall += time.perf_counter() - t0
            t0 = time.perf_counter()
            checkpoint()
        if stopped_early or (stop_at is not None and step >= stop_at):
            break
    bar.close()
    del upcoming  # stops DataLoader workers that were preparing batches past an early stop
    if stop_at is not None and step < cfg.steps and not stopped_early:
        wall += time.perf_counter() - t0
        checkpoint()
        distributed.barrier()  # the others return once the main process's files are written
        stopped = TrainResult(step, best_step, best, math.nan, False, wall, fwd, bwd, history)
        stopped.world_size, stopped.device = world, str(device)
        return stopped
    final_psnr = next((h["val_psnr"] for h in reversed(history) if "val_psnr" in h), math.nan)
    result = TrainResult(step, best_step, best, final_psnr, stopped_early, wall, fwd, bwd, history)
    result.world_size, result.device = world, str(device)
    if main:
        write_json_atomic(done, asdict(result))
    distributed.barrier()  # the others go on to read best.pt once it is written
    return result


def load_weights(model: nn.Module, run_dir: str | Path, which: str = "best") -> nn.Module:
    """Load ``best`` or ``last`` weights of a finished training directory into ``model``."""
    path = Path(run_dir) / f"{which}.pt"
    load_model_state(model, load_checkpoint(path), path)
    return model
