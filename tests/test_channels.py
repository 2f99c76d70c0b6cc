"""Channel-level pruning: the channel graphs of every denoiser, compaction exactness inside MoDL,
exact kept-channel counts, the PUN channel search, and compact checkpoints in the pipeline."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from punmri.config import ModelConfig, load_config
from punmri.errors import InputError
from punmri.evaluate.runner import evaluate_suite, model_recon
from punmri.models import build_model
from punmri.models.channels import channel_graph
from punmri.pipeline import load_run_data, load_trained, model_specs, run
from punmri.pruning import Masks
from punmri.pruning.channels import (
    channel_counts,
    channel_search,
    compact,
    expand_into,
    gated,
    global_kept,
    narrow_to,
    per_channel,
    random_scores,
    select_channels,
    whole_slots,
)
from punmri.specs import ModelSpec

from .conftest import TINY

#: (denoiser, extra ModelConfig fields): every denoiser and every normalisation with
#: per-channel state.
ARCHITECTURES = [
    ("resnet", {"norm": "none"}),
    ("resnet", {"norm": "batch"}),
    ("resnet", {"norm": "batch-per-unroll"}),
    ("resnet", {"norm": "instance"}),
    ("resnet", {"shared": False}),
    ("unet", {"depth": 2}),
    ("unet", {"depth": 2, "norm": "batch"}),
    ("didn", {"depth": 2}),
]


def _model(denoiser: str, extra: dict, seed: int = 0) -> nn.Module:
    fields = {"denoiser": denoiser, "channels": 8, "depth": 4, "unrolls": 3, **extra}
    return build_model(ModelConfig(**fields), seed)


def _inputs(batch: int = 2, coils: int = 3, size: tuple[int, int] = (16, 12)):
    from punmri.physics import SenseOperator

    g = torch.Generator().manual_seed(5)
    h, w = size
    maps = torch.randn(batch, coils, h, w, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = (torch.rand(h, w, generator=g) < 0.5).float()
    op = SenseOperator(maps, mask)
    x = torch.randn(batch, h, w, dtype=torch.complex64, generator=g)
    return op.forward(x), op


def _weighted(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]


@pytest.mark.parametrize(("denoiser", "extra"), ARCHITECTURES)
def test_graph_covers_every_convolution(denoiser, extra):
    model = _model(denoiser, extra)
    graph = channel_graph(model)
    for name, conv in _weighted(model):
        dims = graph.tensors[f"{name}.weight"]
        for dim, segments in dims.items():
            covered = sum(s.channels * s.unit for s in segments)
            assert covered == conv.weight.shape[dim], (name, dim)
        # only the body's 2-channel input and output are left without a slot
        for dim in {0, 1} - set(dims):
            assert conv.weight.shape[dim] == 2, (name, dim)


@pytest.mark.parametrize(("denoiser", "extra"), ARCHITECTURES)
@pytest.mark.parametrize("train_mode", [False, True])
def test_compact_modl_equals_masked_modl(denoiser, extra, train_mode):
    model = _model(denoiser, extra)
    graph = channel_graph(model)
    masks = select_channels(graph, random_scores(graph, torch.Generator().manual_seed(1)), 0.5)
    small = compact(model, graph, masks)
    model.train(train_mode)
    small.train(train_mode)
    y, op = _inputs()
    values = {s: m.float() for s, m in masks.items()}
    with torch.no_grad():
        with gated(model, graph, values):
            masked = model(y, op)
        compacted = small(y, op)
        unmasked = model(y, op)
    scale = masked.abs().max()
    assert (masked - compacted).abs().max() < 1e-5 * max(1.0, float(scale))
    assert (masked - unmasked).abs().max() > 1e-3  # the mask does change the network
    n_full = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in small.parameters()) < 0.5 * n_full


def test_compact_changes_nothing_in_the_original_and_trains():
    model = _model("resnet", {"norm": "batch"})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    graph = channel_graph(model)
    small = compact(
        model, graph, select_channels(graph, random_scores(graph, torch.Generator()), 0.25)
    )
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    y, op = _inputs()
    small(y, op).abs().mean().backward()
    assert all(p.grad is not None for p in small.parameters() if p.requires_grad)


@pytest.mark.parametrize(("denoiser", "extra"), [ARCHITECTURES[i] for i in (1, 4, 5, 7)])
def test_expand_into_inverts_compact(denoiser, extra):
    model = _model(denoiser, extra)
    graph = channel_graph(model)
    masks = select_channels(graph, random_scores(graph, torch.Generator().manual_seed(3)), 0.5)
    small = compact(model, graph, masks)
    for p in small.parameters():  # "train" the compact network
        p.data.add_(0.01 * torch.randn_like(p))
    other = _model(denoiser, extra, seed=9)  # other values everywhere
    full = expand_into(small, other, graph, masks).eval()
    y, op = _inputs()
    with torch.no_grad(), gated(full, graph, {s: m.float() for s, m in masks.items()}):
        a = full(y, op)
    with torch.no_grad():
        b = small.eval()(y, op)
    assert (a - b).abs().max() < 1e-5 * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("density", [0.1, 0.25, 0.5, 0.8, 1.0])
def test_exact_kept_channel_counts(density):
    model = _model("didn", {"depth": 2})
    graph = channel_graph(model)
    scores = random_scores(graph, torch.Generator().manual_seed(0))
    uniform = select_channels(graph, scores, density, "uniform")
    for slot, n in graph.widths().items():
        assert int(uniform[slot].sum()) == max(1, round(density * n)), slot
    assert channel_counts(graph, density) == {s: int(m.sum()) for s, m in uniform.items()}
    glob = select_channels(graph, scores, density, "global")
    assert sum(int(m.sum()) for m in glob.values()) == global_kept(graph, density)
    assert all(bool(m.any()) for m in glob.values())


def test_per_channel_scores_sum_over_every_writer():
    model = _model("didn", {"depth": 2})
    graph = channel_graph(model)
    ones = {t: torch.ones_like(model.get_parameter(t)) for t in graph.writes}
    sums = per_channel(graph, ones)
    trunk = sums["denoiser:trunk"]
    # the trunk is written by the head's strided conv, every block's pre residual and output,
    # the reconstruction block's 4 residual pairs and output: 2*2 + 1 + 4 + 1 = 10 3x3 convs of
    # 8 input channels
    assert torch.allclose(trunk, torch.full_like(trunk, 10 * 8 * 9))


def test_bad_masks_and_widths_are_refused():
    model = _model("resnet", {})
    graph = channel_graph(model)
    masks = select_channels(graph, random_scores(graph, torch.Generator()), 0.5)
    empty = Masks({**dict(masks), "denoiser:layer0": torch.zeros(8, dtype=torch.bool)})
    with pytest.raises(InputError, match="keeps no channel"):
        compact(model, graph, empty)
    with pytest.raises(InputError, match="missing slots"):
        compact(model, graph, {"denoiser:layer0": masks["denoiser:layer0"]})
    with pytest.raises(InputError, match="expected 1..8"):
        narrow_to(model, graph, {**graph.widths(), "denoiser:layer0": 9})
    with pytest.raises(InputError, match="do not fit"):
        narrow_to(model, graph, {"nope": 1})


def test_channel_search_keeps_exact_counts_and_is_deterministic():
    from punmri.config import PunSearchConfig
    from punmri.train import get_loss

    model = _model("resnet", {})
    graph = channel_graph(model)
    y, op = _inputs()
    with torch.no_grad():
        target = model(y, op).detach() * 0.5
    data = [((y, op), target)]
    cfg = PunSearchConfig(steps=6, log_every=2)
    runs = [
        channel_search(
            model,
            graph,
            data,
            get_loss("mse"),
            0.25,
            cfg,
            "uniform",
            torch.Generator().manual_seed(0),
        )
        for _ in range(2)
    ]
    (masks, history), (again, _) = runs
    assert masks.equals(again)
    assert {s: int(m.sum()) for s, m in masks.items()} == channel_counts(graph, 0.25)
    assert [h["step"] for h in history] == [0, 2, 4, 5]
    assert all(p.grad is None for p in model.parameters())


def test_excluded_layers_keep_their_output_channels():
    from punmri.config import PunSearchConfig
    from punmri.pruning import prunable_targets
    from punmri.train import get_loss

    model = _model("didn", {"depth": 2})
    graph = channel_graph(model)
    assert whole_slots(graph, prunable_targets(model)) == frozenset()
    # the trunk is written by many convolutions: excluding any one of them keeps it whole
    writer = next(
        n for n, d in graph.writes.items() if graph.tensors[n][d][0].slot == "denoiser:trunk"
    )
    whole = whole_slots(graph, prunable_targets(model, exclude=[writer]))
    assert whole == {"denoiser:trunk"}
    scores = random_scores(graph, torch.Generator().manual_seed(0))
    widths = graph.widths()
    uniform = select_channels(graph, scores, 0.25, "uniform", whole)
    glob = select_channels(graph, scores, 0.25, "global", whole)
    rest = {s: n for s, n in widths.items() if s not in whole}
    for masks in (uniform, glob):
        assert bool(masks["denoiser:trunk"].all())
    assert sum(int(glob[s].sum()) for s in rest) == round(0.25 * sum(rest.values()))
    assert global_kept(graph, 0.25, whole) == round(0.25 * sum(rest.values()))
    assert channel_counts(graph, 0.25, whole)["denoiser:trunk"] == widths["denoiser:trunk"]
    with pytest.raises(InputError, match="keep every channel slot whole"):
        channel_counts(graph, 0.25, set(widths))

    model = _model("resnet", {})
    graph = channel_graph(model)
    whole = whole_slots(graph, prunable_targets(model, include=["*.body.0.*"]))
    assert whole == set(graph.widths()) - {"denoiser:layer0"}
    y, op = _inputs()
    data = [((y, op), model(y, op).detach() * 0.5)]
    masks, _ = channel_search(
        model, graph, data, get_loss("mse"), 0.25, PunSearchConfig(steps=3), "uniform", None, whole
    )
    assert int(masks["denoiser:layer0"].sum()) == channel_counts(graph, 0.25)["denoiser:layer0"]
    assert all(bool(masks[s].all()) for s in whole)


FAST = [
    "prune.pun_channel.steps=3",
    "prune.pun_channel.log_every=1",
    "prune.check_batches=1",
    "prune.check_shuffles=1",
    "prune.channel_density=0.5",
    "model.channels=6",
    "evaluate.baselines=[zero-filled]",
]


@pytest.fixture(scope="module")
def channel_run(tmp_path_factory):
    methods = "[pun-channel,random-channel,norm-channel,snip-channel,dense-narrow]"
    cfg = load_config(None, [*TINY, *FAST, f"methods={methods}", "prune.narrow_match=channels"])
    out = tmp_path_factory.mktemp("channels") / "run"
    metrics = run(cfg, out, progress=False)
    return cfg, out, metrics


def test_channel_methods_train_the_compact_network(channel_run):
    cfg, out, metrics = channel_run
    dense_params = sum(p.numel() for p in build_model(cfg.model, 0).parameters())
    widths = None
    for spec in model_specs(cfg):
        assert spec.density == 0.5 and spec.name == spec.method
        directory = spec.directory(out)
        info = json.loads((directory / "channels.json").read_text())
        assert widths in (None, info["widths"])  # uniform: one architecture for every method
        widths = info["widths"]
        assert all(w == 3 for w in widths.values())
        trained = load_trained(cfg, spec, out)  # from the widths alone, no mask
        n = sum(p.numel() for p in trained.model.parameters())
        assert n < 0.5 * dense_params
        state = torch.load(directory / "train" / "best.pt", map_location="cpu", weights_only=False)
        shapes = {tuple(v.shape) for k, v in state["model"].items() if k.endswith("weight")}
        assert (3, 3, 3, 3) in shapes  # the checkpoint holds the compact tensors
        assert spec.name in metrics["methods"]


def test_compact_checkpoint_evaluates_like_the_masked_network(channel_run):
    cfg, out, _ = channel_run
    spec = ModelSpec("pun-channel", 0, 0.5, 0.5)
    trained = load_trained(cfg, spec, out)
    masks = Masks.load(spec.directory(out) / "channels.pt")
    full = build_model(cfg.model, 0)
    graph = channel_graph(full)
    full = expand_into(trained.model, full, graph, masks).eval()
    suite = load_run_data(cfg).suites[0]
    compact_rows, _, _ = evaluate_suite("m", model_recon(trained.model, "cpu"), suite)
    with gated(full, graph, {s: m.float() for s, m in masks.items()}):
        masked_rows, _, _ = evaluate_suite("m", model_recon(full, "cpu"), suite)
    assert len(compact_rows) == len(masked_rows) > 0
    for a, b in zip(compact_rows, masked_rows, strict=True):
        assert a.psnr == pytest.approx(b.psnr, abs=1e-4)
        assert a.ssim == pytest.approx(b.ssim, abs=1e-5)


def test_dense_narrow_at_channel_widths_is_freshly_initialised(channel_run):
    cfg, out, _ = channel_run
    a = load_trained(cfg, ModelSpec("dense-narrow", 0, 0.5, 0.5), out).model
    b = load_trained(cfg, ModelSpec("random-channel", 0, 0.5, 0.5), out).model
    shapes_a = {k: v.shape for k, v in a.state_dict().items()}
    assert shapes_a == {k: v.shape for k, v in b.state_dict().items()}
    meta = json.loads((out / "models/dense-narrow/seed0/channels.json").read_text())["metadata"]
    assert meta["method"] == "dense-narrow"


def test_channel_search_diagnostics_are_saved(channel_run):
    _, out, _ = channel_run
    masks = Masks.load(out / "models/pun-channel/seed0/channels.pt")
    assert len(masks.metadata["pun_channel_history"]) == 3
    check = masks.metadata["check"]
    assert {"loss_dense", "loss_mask", "loss_shuffled_mean"} <= set(check)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compact_model_exports_and_runs_without_punmri(channel_run, tmp_path):
    from punmri.export import export_model

    cfg, out, _ = channel_run
    info = export_model(out, "pun-channel", 0, tmp_path / "m.pt", overwrite=False)
    program = torch.jit.load(str(tmp_path / "m.pt"))
    y, op = _inputs(batch=1, coils=cfg.physics.coils, size=tuple(cfg.data.image_size))
    model = load_trained(cfg, ModelSpec("pun-channel", 0, 0.5, 0.5), out).model
    with torch.no_grad():
        expected = model(y, op)
        got = program(y, op.maps, op.mask.expand(1, *op.mask.shape[-2:]).float())
    assert (got - expected).abs().max() < 1e-5 * float(expected.abs().max())
    assert info["method"] == "pun-channel"


def test_global_allocation_dense_narrow_takes_pun_channel_widths(tmp_path):
    overrides = [
        *TINY,
        *FAST,
        "methods=[dense-narrow,pun-channel]",
        "prune.narrow_match=channels",
        "prune.channel_allocation=global",
        "prune.channel_density=0.4",
        "train.steps=2",
    ]
    cfg = load_config(None, overrides)
    out = tmp_path / "run"
    run(cfg, out, progress=False, train_only=True)
    pun = json.loads((out / "models/pun-channel/seed0/channels.json").read_text())
    narrow = json.loads((out / "models/dense-narrow/seed0/channels.json").read_text())
    assert narrow["widths"] == pun["widths"]
    assert pun["kept_channels"] == max(len(pun["widths"]), round(0.4 * pun["total_channels"]))


def test_masked_loss_leaves_batchnorm_statistics_alone():
    from punmri.pruning.channels import masked_loss
    from punmri.train import get_loss

    model = _model("resnet", {"norm": "batch"}).train()
    graph = channel_graph(model)
    masks = select_channels(graph, random_scores(graph, torch.Generator()), 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    y, op = _inputs()
    masked_loss(model, graph, masks, [((y, op), y.new_zeros(2, 16, 12))], get_loss("mse"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
