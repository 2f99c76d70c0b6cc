"""Several processes, one run: the process group of ``torchrun`` and the collectives punmri uses.

``torchrun --nproc_per_node N -m punmri run ...`` starts N processes and describes them in the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
:func:`session` joins them into a process group (NCCL on CUDA, one GPU per local rank; gloo on
the CPU). Without those variables, or with ``WORLD_SIZE=1``, every function here is the identity
of a single process, so library code calls them unconditionally.

How a run divides its work:

- training: ``train.batch_size`` is the global batch of a step; each process computes its equal
  share (:func:`~punmri.data.batches.rank_share`) and DistributedDataParallel (:func:`wrap`)
  averages the gradients, so every process takes the same optimizer step;
- decisions and files: process 0 (the *main* process) decides what exists on disk, computes
  what is computed once (a pruning mask, the CS weight) and writes every output;
  :func:`on_main` shares its result (or its error) with the others, :func:`main_first` lets it
  go first where the others then read what it prepared;
- checks: :func:`check_same` fails on every process with one clear error when a value that must
  agree (a mask digest) differs between processes.

A multi-node run needs a run directory on a file system every node sees: the other processes read
the checkpoints the main process writes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import nn

from ..errors import InputError, SharedError

T = TypeVar("T")

#: Environment variables torchrun sets in every process it starts.
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: How long a process waits in a collective; the others wait this long while the main process
#: searches a mask or tunes the CS weight alone.
TIMEOUT = timedelta(hours=4)


def launched() -> bool:
    """Whether this process was started as one of several (``WORLD_SIZE`` > 1 in the
    environment, as torchrun sets it)."""
    return _env_int("WORLD_SIZE", 1) > 1


def active() -> bool:
    """Whether a process group is initialised."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes of the run (1 without a process group)."""
    return torch.distributed.get_world_size() if active() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return torch.distributed.get_rank() if active() else 0


def is_main() -> bool:
    """Whether this process writes outputs (rank 0, or the only process)."""
    return rank() == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {name}={value!r} is not an integer") from None


def init(device: str = "auto") -> bool:
    """Join the process group that torchrun describes in the environment; a no-op (returning
    False) in a single process or when the group exists.

    Args:
        device: ``train.device``: on CUDA (``auto`` with a GPU, or ``cuda``) each process takes
            the GPU of its ``LOCAL_RANK`` and the group talks NCCL; on the CPU it talks gloo.
            ``cuda:N`` would put every process on one GPU and is refused.
    """
    if active():
        return False
    if not launched():
        return False
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise InputError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} asks for a distributed run, but {missing} "
            "are not set; start distributed runs with torchrun (e.g. `torchrun "
            "--nproc_per_node 4 -m punmri run --config C`)"
        )
    local = _env_int("LOCAL_RANK", 0)
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise InputError(f"train.device={device!r}, but this process sees no CUDA device")
        if ":" in device:
            raise InputError(
                f"train.device={device!r} puts every process on one GPU; under torchrun use "
                "train.device=auto or cuda (process LOCAL_RANK takes GPU LOCAL_RANK)"
            )
        if local >= torch.cuda.device_count():
            raise InputError(
                f"process LOCAL_RANK={local} has no GPU of its own: this node shows "
                f"{torch.cuda.device_count()} GPUs; start at most that many processes per node "
                "(--nproc_per_node)"
            )
        torch.cuda.set_device(local)
    torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return True


def shutdown() -> None:
    """Leave the process group (if any)."""
    if active():
        torch.distributed.destroy_process_group()


@contextmanager
def session(device: str = "auto") -> Iterator[int]:
    """``with session(cfg.train.device) as world:`` joins the process group torchrun describes
    (:func:`init`) for the block and leaves it after; yields the number of processes."""
    started = init(device)
    try:
        yield world_size()
    except BaseException:
        if started:  # no barrier: the others may never arrive (torchrun stops them)
            shutdown()
        raise
    if started:
        barrier()  # no process leaves while another still receives from it
        shutdown()


def device_of_rank(device: torch.device) -> torch.device:
    """``device`` with the GPU index of this process when it names CUDA without an index."""
    if device.type == "cuda" and device.index is None and active():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _comm_device() -> torch.device:
    """Where tensors of collectives live: the current GPU under NCCL, else the CPU."""
    if active() and torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every process arrives (nothing in a single process)."""
    if world_size() > 1:
        torch.distributed.barrier()


def broadcast(value: T) -> T:
    """The main process's ``value`` (any picklable object), on every process."""
    if world_size() == 1:
        return value
    box = [value if is_main() else None]
    torch.distributed.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def gather(value: T) -> list[T]:
    """Every process's ``value`` (picklable), in rank order, on every process."""
    if world_size() == 1:
        return [value]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, value)
    return out


def mean(value: float) -> float:
    """The mean of a float over processes (the same number on every process)."""
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    torch.distributed.all_reduce(t)
    return float(t.item()) / world_size()


def on_main(compute: Callable[[], T]) -> T:
    """``compute()`` on the main process only, its result (picklable) on every process.

    An exception on the main process is raised there and, as a :class:`SharedError` with the
    same message, on the others (so no process waits for a result that never comes).
    """
    return _main_then_others(compute, share=True)


def main_first(compute: Callable[[], T]) -> T:
    """``compute()`` on every process, the main process first (it may prepare files, such as
    data caches, that the others then only read); its error stops every process."""
    return _main_then_others(compute, share=False)


def _main_then_others(compute: Callable[[], T], share: bool) -> T:
    if world_size() == 1:
        return compute()
    if not is_main():
        ok, value = broadcast(None)
        if not ok:
            raise SharedError(value)
        return value if share else compute()
    try:
        value = compute()
    except BaseException as exc:
        message = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        broadcast((False, f"{message} (on process 0)"))
        raise
    broadcast((True, value if share else None))
    return value


def check_same(value: str, what: str) -> None:
    """Raise the same :class:`InputError` on every process when ``value`` differs between them.

    Args:
        value: a short string (a digest) every process must agree on.
        what: what it describes, for the message (e.g. ``"the pruning mask of pun s0"``).
    """
    values = gather(value)
    differing = [r for r, v in enumerate(values) if v != values[0]]
    if differing:
        r = differing[0]
        raise InputError(
            f"{what} differs between processes: process 0 has {values[0][:16]}, process {r} has "
            f"{values[r][:16]}; every process must build the same run (same config, code, data "
            "and punmri version on every node)"
        )


def mask_digest(masks: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of mask names, shapes and bits (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(masks):
        mask = masks[name].detach().to("cpu", torch.bool).contiguous()
        h.update(f"{name}{tuple(mask.shape)}".encode())
        h.update(mask.numpy().tobytes())
    return h.hexdigest()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` for training: wrapped in DistributedDataParallel when there are several
    processes (gradients averaged in the backward pass; the parameters stay those of ``model``,
    so optimizers and hooks on ``model`` act on the wrapped module), else ``model`` itself."""
    if world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (``model`` itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def sync_buffers(model: nn.Module) -> None:
    """Copy the main process's floating-point buffers (BatchNorm running statistics, which each
    process updates from its own share of the batch) into ``model`` on every process."""
    if world_size() == 1:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            torch.distributed.broadcast(buffer.data, src=0)


__all__ = [
    "ENV_VARS",
    "TIMEOUT",
    "SharedError",
    "active",
    "barrier",
    "broadcast",
    "check_same",
    "device_of_rank",
    "gather",
    "init",
    "is_main",
    "launched",
    "main_first",
    "mask_digest",
    "mean",
    "on_main",
    "rank",
    "session",
    "shutdown",
    "sync_buffers",
    "unwrap",
    "wrap",
    "world_size",
]
