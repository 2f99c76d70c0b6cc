"""One device for the whole run (``train.device``): mask searches, scorers, the mask check,
training and evaluation compute there; masks are stored on the CPU and do not depend on it.

On a CPU-only machine the ``gpu`` tests are skipped (conftest); ``make test-all`` runs them where
CUDA exists.
"""

from __future__ import annotations

import json

import pytest
import torch

from punmri.cli.main import main
from punmri.config import load_config
from punmri.errors import InputError
from punmri.methods import MethodContext, SearchBatches, find_method_mask
from punmri.models import build_model
from punmri.pipeline import load_run_data, run
from punmri.pruning import SCORERS, Masks, find_mask, select_by_counts, select_top_k
from punmri.pruning.scorers import magnitude, random
from punmri.specs import ModelSpec
from punmri.train import device_label, get_loss, resolve_device

from .conftest import TINY

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
FAST = [
    "prune.pun.steps=4",
    "prune.pun.log_every=2",
    "prune.synflow_iterations=2",
    "prune.check_batches=1",
    "prune.check_shuffles=1",
    "evaluate.baselines=[zero-filled]",
]
#: (method, allocation) of every mask found on the initial weights, as `punmri prune` offers.
INIT = [
    ("random", "uniform"),
    ("random", "erk"),
    ("magnitude", None),
    ("snip", None),
    ("grasp", None),
    ("synflow", None),
    ("pun", None),
]


def _context(tmp_path, device: str, extra: tuple[str, ...] = ()) -> MethodContext:
    cfg = load_config(None, [*TINY, *FAST, f"train.device={device}", *extra])
    return MethodContext(cfg, tmp_path / device.replace(":", "_"), load_run_data(cfg), False)


# ----------------------------------------------------------------------------- resolving the device


def test_resolve_device_resolves_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_an_input_error_naming_train_device(name):
    with pytest.raises(InputError, match=r"train\.device='cuda.*no usable CUDA device"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["graphics", "mps", "meta", "cuda:x"])
def test_unknown_or_unsupported_devices_are_input_errors(name):
    with pytest.raises(InputError, match=r"train\.device="):
        resolve_device(name)


def test_device_label_states_cpu_threads():
    assert device_label("cpu") == f"cpu ({torch.get_num_threads()} threads)"
    assert device_label(torch.device("cpu")) == device_label("cpu")


@no_cuda
def test_run_on_cuda_fails_before_any_work(tmp_path):
    cfg = load_config(None, [*TINY, *FAST, "methods=[dense,snip]", "train.device=cuda"])
    out = tmp_path / "run"
    with pytest.raises(InputError, match=r"train\.device='cuda'"):
        run(cfg, out, progress=False)
    assert not (out / "models").exists()  # no search, no training started
    assert not (out / "metrics.json").exists()


@no_cuda
def test_cli_run_on_cuda_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--out", str(out), "--no-progress", *TINY, "train.device=cuda"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("punmri: error: train.device='cuda'") and "\n" not in err
    assert "Traceback" not in err


@no_cuda
def test_prune_command_on_cuda_is_one_line_error(tmp_path, capsys):
    args = ["prune", "--method", "snip", "--density", "0.3", "--out", str(tmp_path / "m")]
    args += [*TINY, "train.device=cuda"]
    assert main(args) == 2
    assert "train.device='cuda'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- batches and scores


def test_search_batches_move_the_batch_before_building_the_operator(tmp_path):
    ctx = _context(tmp_path, "cpu")
    stream = ctx.stream(0)
    # the meta device stands in for a GPU: it only checks where tensors are placed
    (kspace, op), target = next(iter(SearchBatches(stream, 2, 1, 0, torch.device("meta"))))
    assert kspace.device.type == op.maps.device.type == op.mask.device.type == "meta"
    assert target.device.type == "meta"
    (kspace, op), target = next(iter(SearchBatches(stream, 2, 1, 0)))  # no device: the CPU
    assert kspace.device.type == op.maps.device.type == target.device.type == "cpu"


def test_context_resolves_the_device_once_and_builds_batches_there(tmp_path):
    ctx = _context(tmp_path, "cpu")
    assert ctx.device == torch.device("cpu")
    ctx.device = torch.device("meta")  # the batches follow the context's device
    (kspace, op), target = next(iter(ctx.batches(0, 1, 0)))
    assert kspace.device.type == op.maps.device.type == target.device.type == "meta"


def test_random_and_magnitude_scores_follow_the_weights_device(tmp_path):
    ctx = _context(tmp_path, "cpu")
    model = build_model(ctx.cfg.model, 0)
    names = ctx.targets(model)
    on_cpu = random.score(model, names, None, None, torch.Generator().manual_seed(3))
    model.to("meta")
    on_meta = random.score(model, names, None, None, torch.Generator().manual_seed(3))
    for name in names:
        assert on_cpu[name].device.type == "cpu" and on_meta[name].device.type == "meta"
        assert on_meta[name].shape == on_cpu[name].shape
    assert all(
        s.device.type == "meta" for s in magnitude.score(model, names, None, None, None).values()
    )


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow"])
def test_data_scorers_return_scores_on_the_weights_device(tmp_path, method):
    ctx = _context(tmp_path, "cpu")
    model = build_model(ctx.cfg.model, 0).to(ctx.device)
    names = ctx.targets(model)
    data = list(ctx.batches(0, 1, 0, batch_size=1))
    extra = {"iterations": 2, "density": 0.5} if method == "synflow" else {}
    scores = SCORERS[method](model, names, data, get_loss("l1"), None, **extra)
    assert set(scores) == set(names)
    assert all(s.device == ctx.device for s in scores.values())


def test_find_mask_refuses_a_generator_off_the_cpu():
    class OnGpu(torch.Generator):  # a CUDA generator cannot be built on a CPU machine
        @property
        def device(self) -> torch.device:
            return torch.device("cuda")

    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(InputError, match="CPU torch.Generator"):
        find_mask(model, "random", 0.5, generator=OnGpu())


def test_selection_treats_signed_zeros_alike():
    """A GPU radix sort may order -0.0 before +0.0; selection makes them one value."""
    signed = {"w": torch.tensor([-0.0, 0.0, -0.0, 0.0, 1.0])}
    plain = {"w": torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0])}
    assert select_top_k(signed, 3).equals(select_top_k(plain, 3))
    assert select_by_counts(signed, {"w": 2}).equals(select_by_counts(plain, {"w": 2}))
    assert select_top_k(signed, 3)["w"].tolist() == [True, True, False, False, True]


def test_masks_found_on_the_resolve_device_are_stored_on_the_cpu(tmp_path):
    ctx = _context(tmp_path, "cpu")
    spec = ModelSpec("snip", 0, 0.3, 0.3)
    model = build_model(ctx.cfg.model, 0)
    masks = find_method_mask(ctx, spec, model, "snip", None)
    assert next(model.parameters()).device == ctx.device
    assert all(m.device.type == "cpu" and m.dtype == torch.bool for m in masks.values())
    assert masks.kept == round(0.3 * masks.total)


def test_report_and_metrics_state_the_device(tmp_path):
    cfg = load_config(None, [*TINY, *FAST, "methods=[dense]", "train.device=cpu"])
    metrics = run(cfg, tmp_path / "run", progress=False)
    label = f"cpu ({torch.get_num_threads()} threads)"
    assert metrics["device"] == label
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["device"] == label
    assert f"- Device: {label}" in (tmp_path / "run" / "report.md").read_text()


# ----------------------------------------------------------------------------- on a CUDA device


def _masks_on(tmp_path, device: str, method: str, allocation: str | None) -> Masks:
    ctx = _context(tmp_path, device)
    spec = ModelSpec(method, 0, 0.3, 0.3)
    return find_method_mask(ctx, spec, build_model(ctx.cfg.model, 0), method, allocation)


@pytest.mark.gpu
@pytest.mark.parametrize(("method", "allocation"), INIT)
def test_masks_on_cuda_match_the_cpu(tmp_path, method, allocation):
    cpu = _masks_on(tmp_path, "cpu", method, allocation)
    gpu = _masks_on(tmp_path, "cuda", method, allocation)
    assert all(m.device.type == "cpu" for m in gpu.values())
    assert gpu.kept == cpu.kept == round(0.3 * cpu.total)
    if method in ("random", "magnitude"):  # CPU draws / same weights: the very same mask
        assert gpu.equals(cpu)
    if allocation is not None:  # exact per-layer counts
        for name in cpu:
            assert int(gpu[name].sum()) == int(cpu[name].sum()), name


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["snip", "synflow"])
def test_scorers_on_cuda_keep_scores_on_cuda(tmp_path, method):
    ctx = _context(tmp_path, "cuda")
    model = build_model(ctx.cfg.model, 0).to(ctx.device)
    names = ctx.targets(model)
    data = list(ctx.batches(0, 1, 0, batch_size=1))
    (kspace, op), target = data[0]
    assert kspace.is_cuda and op.maps.is_cuda and target.is_cuda
    extra = {"iterations": 2, "density": 0.5} if method == "synflow" else {}
    scores = SCORERS[method](model, names, data, get_loss("l1"), None, **extra)
    assert all(s.is_cuda for s in scores.values())


@pytest.mark.gpu
def test_tiny_run_with_pun_and_snip_on_cuda(tmp_path):
    out = tmp_path / "cuda"
    overrides = [*TINY, *FAST, "methods=[dense,pun,snip]", "prune.density=0.3", "train.device=cuda"]
    assert main(["run", "--out", str(out), "--no-progress", *overrides]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda:")
    assert "- Device: cuda:" in (out / "report.md").read_text()
    for method in ("pun", "snip"):
        masks = Masks.load(out / f"models/{method}/seed0/mask.pt")
        assert masks.kept == round(0.3 * masks.total), method
        best = out / f"models/{method}/seed0/train/best.pt"
        weights = torch.load(best, map_location="cpu", weights_only=False)
        for name, mask in masks.items():
            assert (weights["model"][name][~mask] == 0).all(), name
