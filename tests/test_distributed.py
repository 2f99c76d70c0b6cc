"""Distributed runs (torchrun, CPU gloo): global batches split over processes, masks shared and
verified, main-process-only outputs, resume with another number of processes, ``--only``.

One two-process launch (the module fixture) runs every multi-process scenario; this file is its
worker script too (``python -m torch.distributed.run ... tests/test_distributed.py OUT TINY``).
The comparisons with one process use ``model.batchnorm=false``: BatchNorm normalises each
process's share of the batch with that share's own statistics, so with it two processes do not
compute the single process's gradients.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from punmri.config import load_config
from punmri.data.batches import TrainingStream, batches, fixed_samples, rank_share
from punmri.data.phantoms import random_ellipses
from punmri.errors import InputError
from punmri.models import build_model
from punmri.pruning import Masks, apply, prunable_targets, register_optimizer_hook
from punmri.pruning.targets import owner, raw_tensor
from punmri.train import TrainHooks, train
from punmri.train.checkpoint import load_checkpoint

#: Settings of the two-process trainings (added to the tests' TINY config).
NO_BATCHNORM = ["model.batchnorm=false", "train.batch_size=4"]
#: Slices of the extra test suite: more than one evaluation batch, so both processes score some.
EXTRA_SLICES = 12


def _tiny() -> list[str]:
    """The tests' TINY overrides (imported here: as torchrun's worker script this file has no
    package to import them from, and receives them as an argument)."""
    from .conftest import TINY

    return list(TINY)


def _images(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([random_ellipses((24, 20), 5, rng) for _ in range(n)]).astype(np.float32)


def _stream_and_val(cfg):
    images = _images()
    names = [str(i) for i in range(len(images))]
    stream = TrainingStream.simulated(images, names, cfg.physics, 0, cfg.train.augment)
    return stream, batches(fixed_samples(images[:2], names[:2], cfg.physics, 7, "val"), 2)


def _masked_model(cfg, generator_seed: int = 1):
    """The seed-0 network under a random half-density mask (drawn from ``generator_seed``)."""
    model = build_model(cfg.model, 0)
    gen = torch.Generator().manual_seed(generator_seed)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    masks = Masks({n: torch.rand(shapes[n], generator=gen) < 0.5 for n in prunable_targets(model)})
    apply(model, masks)
    raw = [raw_tensor(*owner(model, name)) for name in masks]
    hooks = TrainHooks(
        on_optimizer=lambda opt: register_optimizer_hook(opt, model),
        # a pull on every stored entry, pruned ones too: only the hook keeps those at zero
        regularizer=lambda step: 1e-3 * sum(t.sum() for t in raw),
    )
    return model, masks, hooks


def _train_masked(cfg, directory: Path, generator_seed: int = 1, **kwargs):
    stream, val = _stream_and_val(cfg)
    model, masks, hooks = _masked_model(cfg, generator_seed)
    train(model, stream, val, cfg.train, directory, progress=False, hooks=hooks, **kwargs)
    return model, masks


def _raw_pruned_nonzero(model, masks) -> int:
    """Pruned entries of the raw (stored, unmasked) weights that are not exactly zero."""
    return sum(int((raw_tensor(*owner(model, n))[~m] != 0).sum()) for n, m in masks.items())


def _max_difference(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


# --------------------------------------------------------------------------- the worker


def _worker(out: Path, tiny: list[str]) -> None:
    """Every scenario, in each of the two processes torchrun starts."""
    import runpy

    import punmri.methods
    from punmri.pruning import MaskParametrization, current_masks
    from punmri.train import distributed

    run_dir = out / "run"
    record: dict = {"writes": [], "mask_digests": []}

    def audit(event: str, args: tuple) -> None:  # every file this process creates or replaces
        if event == "open" and args[2] is not None:
            path = args[0] if args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) else None
        elif event in ("os.rename", "os.replace"):
            path = args[1]
        else:
            return
        if isinstance(path, (str, bytes, os.PathLike)) and str(run_dir) in os.fsdecode(path):
            record["writes"].append(os.fsdecode(path))

    sys.addaudithook(audit)
    real_train = punmri.methods.train

    def spy_train(model, *args, **kwargs):
        if any(isinstance(m, MaskParametrization) for m in model.modules()):
            record["mask_digests"].append(distributed.mask_digest(current_masks(model)))
        return real_train(model, *args, **kwargs)

    punmri.methods.train = spy_train
    with distributed.session("cpu") as world:
        rank = distributed.rank()
        assert world == 2
        cfg = load_config(None, [*tiny, *NO_BATCHNORM])
        model, masks = _train_masked(cfg, out / "full")
        record["raw_pruned_nonzero"] = _raw_pruned_nonzero(model, masks)
        _train_masked(cfg, out / "part", stop_at=3, checkpoint_every=1)
        try:  # masks that differ between the processes stop both, with one message
            _train_masked(cfg, out / "mismatch", generator_seed=10 + rank)
        except InputError as exc:
            (out / f"mismatch{rank}.txt").write_text(str(exc))
        sys.argv = [
            "punmri",
            "run",
            "--out",
            str(run_dir),
            "--no-progress",
            *tiny,
            "methods=[dense,random]",
            f"data.paths=[{out / 'extra.npy'}]",
        ]
        try:  # the command line, as `torchrun -m punmri run ...` starts it
            runpy.run_module("punmri", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            record["exit"] = exc.code
    (out / f"rank{rank}.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    """The output folder of one two-process launch of :func:`_worker`."""
    out = tmp_path_factory.mktemp("distributed")
    np.save(out / "extra.npy", _images(EXTRA_SLICES, seed=3))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    command += ["2", __file__, str(out), json.dumps(_tiny())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    (out / "torchrun.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    return out


# --------------------------------------------------------------------------- tests


def test_rank_shares_make_up_the_global_batch(tiny_config):
    stream, _ = _stream_and_val(tiny_config)
    whole = stream.batch(5, 4)
    shares = [stream.batch(5, 4, rank, 2) for rank in range(2)]
    assert [len(s) for s in shares] == [2, 2]
    assert sum((s.names for s in shares), []) == whole.names
    assert torch.equal(torch.cat([s.kspace for s in shares]), whole.kspace)
    ahead = list(stream.loader(5, 6, 4, workers=0, rank=1, world=2))[0]
    assert torch.equal(ahead.kspace, shares[1].kspace)
    assert rank_share(6, 2, 3) == (4, 6)
    with pytest.raises(InputError, match="train.batch_size=3 .* does not divide by 2"):
        stream.loader(0, 4, 3, rank=0, world=2)


def test_evaluation_shares_cut_at_batches_and_volumes():
    from punmri.evaluate.runner import EVAL_BATCH
    from punmri.evaluate.shared import cut_points, share_of

    plain = [SimpleNamespace(extras={}) for _ in range(20)]
    assert cut_points(plain) == list(range(0, 20, EVAL_BATCH)) == [0, 8, 16]
    assert [share_of([0, 8, 16], 20, r, 2) for r in range(2)] == [(0, 8), (8, 20)]
    volumes = [SimpleNamespace(extras={"volume": v}) for v in "aaabbbbbcc"]
    assert cut_points(volumes) == [0, 3, 8]
    shares = [share_of([0, 3, 8], 10, r, 3) for r in range(3)]
    assert shares == [(0, 3), (3, 8), (8, 10)]  # whole volumes, in order, covering every slice
    assert share_of([0], 2, 1, 2) == (0, 0)  # a suite too small to divide stays on process 0


def test_select_models_reads_method_seed_and_densities(tiny_config):
    from punmri.config import replace
    from punmri.pipeline import model_specs, select_models

    cfg = replace(
        tiny_config, methods=("dense", "pun"), seeds=(0, 1), **{"prune.densities": (0.03,)}
    )
    specs = model_specs(cfg)
    headline = cfg.prune.density
    chosen = select_models(specs, ["dense:1", f"pun@0.03:1,pun@{headline}:0"])
    assert [(s.name, s.seed) for s in chosen] == [("dense", 1), ("pun", 0), ("pun@0.03", 1)]
    assert select_models(specs, ["pun:0"]) == select_models(specs, [f"pun@{headline}:0"])
    for bad, message in [("dense", "METHOD:SEED"), ("dense:7", "no such network")]:
        with pytest.raises(InputError, match=message):
            select_models(specs, [bad])


def test_two_processes_train_like_one_with_the_same_global_batch(two_processes):
    cfg = load_config(None, [*_tiny(), *NO_BATCHNORM])
    model, masks = _train_masked(cfg, two_processes / "single")
    one = load_checkpoint(two_processes / "single" / "last.pt")
    two = load_checkpoint(two_processes / "full" / "last.pt")
    assert _max_difference(one["model"], two["model"]) < 1e-5
    assert two["step"] == cfg.train.steps
    # the re-zeroing optimizer hook acted on the DDP-wrapped parameters after every step
    records = [json.loads((two_processes / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["raw_pruned_nonzero"] for r in records] == [0, 0]
    assert _raw_pruned_nonzero(model, masks) == 0
    done = json.loads((two_processes / "full" / "done.json").read_text())
    assert done["world_size"] == 2 and done["device"] == "cpu"


def test_a_two_process_run_resumes_in_one_process(two_processes):
    cfg = load_config(None, [*_tiny(), *NO_BATCHNORM])
    part = two_processes / "part"
    assert load_checkpoint(part / "last.pt")["step"] == 3 and not (part / "done.json").exists()
    _train_masked(cfg, part)  # the remaining steps, in this one process
    resumed = load_checkpoint(part / "last.pt")
    full = load_checkpoint(two_processes / "full" / "last.pt")
    assert resumed["step"] == cfg.train.steps
    assert _max_difference(resumed["model"], full["model"]) < 1e-5
    assert json.loads((part / "done.json").read_text())["world_size"] == 1


def test_masks_are_shared_and_verified(two_processes):
    from punmri.train.distributed import mask_digest

    for rank in range(2):
        message = (two_processes / f"mismatch{rank}.txt").read_text()
        assert "the pruning mask of train differs between processes" in message
    records = [json.loads((two_processes / f"rank{r}.json").read_text()) for r in range(2)]
    saved = Masks.load(two_processes / "run" / "models" / "random" / "seed0" / "mask.pt")
    assert records[0]["mask_digests"] == records[1]["mask_digests"] == [mask_digest(saved)]


def test_only_the_main_process_writes(two_processes):
    records = [json.loads((two_processes / f"rank{r}.json").read_text()) for r in range(2)]
    assert records[0]["exit"] in (0, None) and records[1]["exit"] in (0, None)
    assert records[1]["writes"] == []
    run = two_processes / "run"
    written = {Path(p).name for p in records[0]["writes"]}
    assert {"metrics.json", "slices.csv", "done.json", "best.pt", "mask.pt"} <= written
    assert json.loads((run / "metrics.json").read_text())["world_size"] == 2
    for method in ("dense", "random"):
        done = json.loads((run / "models" / method / "seed0" / "train" / "done.json").read_text())
        assert done["world_size"] == 2
    with open(run / "eval" / "slices.csv") as fh:
        rows = [(r["method"], r["suite"], r["slice"]) for r in csv.DictReader(fh)]
    assert len(rows) == len(set(rows))
    extra = [r for r in rows if r[:2] == ("random", "extra")]
    assert len(extra) == EXTRA_SLICES


def test_distributed_evaluation_scores_like_one_process(two_processes, tmp_path):
    from punmri.evaluate.tables import read_slice_csv
    from punmri.pipeline import evaluate_run

    run = two_processes / "run"
    # another figure count: the run's records are not reused, every suite is scored again here
    evaluate_run(run, tmp_path / "eval", overrides=["evaluate.figure_slices=2"], progress=False)
    two = read_slice_csv(run / "eval" / "slices.csv")
    one = read_slice_csv(tmp_path / "eval" / "eval" / "slices.csv")
    assert one == two


def test_only_trains_exactly_the_named_networks(tmp_path):
    from punmri.cli.main import main

    out = tmp_path / "run"
    args = ["run", "--out", str(out), "--no-progress", *_tiny(), "methods=[dense,random]"]
    assert main([*args, "--only", "random:0"]) == 0
    models = out / "models"
    assert sorted(p.parent.parent.name for p in models.glob("*/seed*/costs.json")) == ["random"]
    assert not (out / "metrics.json").exists()
    weights = (models / "random" / "seed0" / "train" / "best.pt").stat().st_mtime_ns
    assert main([*args, "--only", "pun:0"]) == 2  # not a network of this config
    assert main(args) == 0  # trains the rest, reuses random, evaluates both
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"dense", "random"} <= set(metrics["methods"])
    assert (models / "random" / "seed0" / "train" / "best.pt").stat().st_mtime_ns == weights


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), json.loads(sys.argv[2]))
