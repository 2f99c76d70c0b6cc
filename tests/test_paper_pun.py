"""The paper's PUN-IT preset (``pun``) beside the per-layer search (``pun-uniform``), its guards
against pruning a layer away, old run directories, and the ``dense-narrow`` control."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from punmri.cli.main import main
from punmri.config import PaperPunSearchConfig, PunSearchConfig, load_config
from punmri.errors import InputError
from punmri.methods import (
    INIT_METHODS,
    RECIPES,
    MethodContext,
    check_preset,
    find_method_mask,
    model_config,
    narrow_width,
    prunable_count,
)
from punmri.models import build_model
from punmri.pipeline import load_run_data, model_specs, run
from punmri.pruning import (
    Masks,
    boundary_targets,
    channel_floor,
    find_mask,
    output_channel_dim,
    prunable_targets,
    select_top_k,
    select_top_k_with_floor,
)
from punmri.pruning.pun import search as search_module
from punmri.specs import ModelSpec

from .conftest import TINY

FAST = [
    "prune.pun.steps=3",
    "prune.pun.log_every=1",
    "prune.pun_uniform.steps=3",
    "prune.check_batches=1",
    "prune.check_shuffles=1",
    "evaluate.baselines=[zero-filled]",
]


# ----------------------------------------------------------------------------- the preset


def test_paper_preset_settings_and_names():
    cfg = load_config(None, [])
    pun, uniform = cfg.prune.pun, cfg.prune.pun_uniform
    assert isinstance(pun, PaperPunSearchConfig)
    assert pun.kl_reduction == "sum" and pun.steps >= 1000 and pun.lr == 1e-2
    assert (pun.tau0, pun.tau1, pun.init_prob) == (1.0, 0.2, None)
    assert cfg.prune.pun_guard == "channel-min"
    assert type(uniform) is PunSearchConfig and uniform == PunSearchConfig()
    assert (uniform.kl_reduction, uniform.steps, cfg.prune.pun_allocation) == (
        "mean",
        300,
        "uniform",
    )
    # one field overridden: the others keep the paper's defaults, not PunSearchConfig's
    short = load_config(None, ["prune.pun.steps=20"]).prune.pun
    assert short == dataclasses.replace(PaperPunSearchConfig(), steps=20)
    for name in ("pun", "pun-uniform", "pun-shuffled", "pun-reinit", "dense-narrow"):
        assert name in RECIPES, name
    assert {"pun", "pun-uniform"} <= set(INIT_METHODS)


# ------------------------------------------------------------------------ guard building blocks


def test_channel_floor_and_floor_selection_keep_exactly_k():
    g = torch.Generator().manual_seed(0)
    scores = {
        "a": torch.randn(3, 2, 2, generator=g),  # conv-like: channels on dim 0
        "b": torch.randn(2, 4, 3, generator=g),  # conv-transpose-like: channels on dim 1
    }
    floor = channel_floor(scores, 1, {"a": 0, "b": 1})
    assert [int(floor["a"][c].sum()) for c in range(3)] == [1, 1, 1]
    assert [int(floor["b"][:, c].sum()) for c in range(4)] == [1, 1, 1, 1]
    for c in range(3):  # the best entry of each channel
        assert scores["a"][c][floor["a"][c]].item() == scores["a"][c].max().item()
    masks = select_top_k_with_floor(scores, 12, floor)
    assert masks.kept == 12
    assert all(bool((masks[n] | ~floor[n]).all()) for n in scores)  # floor kept
    rest = select_top_k(scores, 12 - floor.kept, current={n: ~floor[n] for n in scores})
    assert masks.equals({n: floor[n] | rest[n] for n in scores})  # the rest: one global ranking
    with pytest.raises(InputError, match="exceed"):
        select_top_k_with_floor(scores, 3, floor)


@pytest.mark.parametrize("denoiser", ["resnet", "unet", "didn"])
def test_boundary_targets_are_each_denoisers_input_and_output_layer(denoiser):
    cfg = load_config(None, [*TINY, f"model.denoiser={denoiser}", "model.depth=2"])
    model = build_model(cfg.model, 0)
    names = prunable_targets(model)
    first, last = boundary_targets(model, sorted(names))
    body = model.denoiser.body
    assert model.get_parameter(first).shape[1] == 2  # the 2 image channels in
    assert model.get_parameter(last) is model.denoiser.output_layer().weight
    assert first == names[0] and model.get_parameter(first) is next(
        m.weight for m in body.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    )
    unshared = build_model(dataclasses.replace(cfg.model, shared=False), 0)
    pairs = boundary_targets(unshared, prunable_targets(unshared))
    assert len(pairs) == 2 * cfg.model.unrolls
    assert all(p.startswith(f"denoisers.{i // 2}.") for i, p in enumerate(pairs))


def test_output_channel_dim_of_transposed_convolutions():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ConvTranspose2d(3, 5, 2), nn.Linear(4, 6))
    assert [output_channel_dim(model, f"{i}.weight") for i in range(3)] == [0, 1, 0]


# ---------------------------------------------------------------------- the search's hard mask


class Chain(nn.Module):
    """Four 3x3 convolutions 1 -> 4 -> 4 -> 4 -> 1 (no denoiser: boundary = first and last)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.Conv2d(4, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.convs(x)


def _designed_search(monkeypatch, density: float, **opts) -> tuple[Masks, dict, nn.Module]:
    """A PUN search whose logits stay (to 1e-12) at distinct designed values, so the hard mask
    it returns can be computed by hand; returns (masks, designed logits, model)."""
    model = Chain()
    designed: dict[str, torch.Tensor] = {}
    perm = torch.randperm(10_000, generator=torch.Generator().manual_seed(3)).float() / 1000 - 5

    def fake_initial_logits(shape, p_init, noise_std, generator):
        start = sum(t.numel() for t in designed.values())
        out = perm[start : start + torch.Size(shape).numel()].view(shape).clone()
        designed[f"#{len(designed)}"] = out
        return out

    monkeypatch.setattr(search_module, "initial_logits", fake_initial_logits)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(2, 1, 6, 6, generator=g), torch.randn(2, 1, 6, 6, generator=g))]
    masks = find_mask(
        model, "pun", density, data, nn.functional.mse_loss, steps=1, lr=1e-12, **opts
    )
    searched = sorted(n for n in prunable_targets(model) if n not in opts.get("dense_layers", ()))
    logits = {n: designed[f"#{i}"] for i, n in enumerate(searched)}  # searched in sorted order
    return masks, logits, model


def test_first_last_dense_counted_in_density_and_rest_global(monkeypatch):
    density = 0.4
    dense = ["convs.0.weight", "convs.3.weight"]
    masks, logits, model = _designed_search(
        monkeypatch, density, dense_layers=dense, config=PaperPunSearchConfig()
    )
    assert boundary_targets(model, prunable_targets(model)) == dense
    assert masks.kept == round(density * masks.total)  # 36 + 144 + 144 + 36 = 360 -> 144
    for name in dense:
        assert bool(masks[name].all()), name
    rest = select_top_k(logits, masks.kept - 72)
    for name in logits:
        assert torch.equal(masks[name], rest[name]), name
    pun = masks.metadata["pun"]
    assert pun["dense"] == dense and pun["config"]["kl_reduction"] == "sum"
    assert masks.metadata["allocation"] == "global"
    with pytest.raises(InputError, match="dense"):
        _designed_search(monkeypatch, 0.1, dense_layers=dense)  # 72 > round(0.1 * 360)


def test_channel_min_keeps_every_output_channel_and_ranks_the_rest_globally(monkeypatch):
    masks, logits, model = _designed_search(monkeypatch, 0.05, channel_min=1)
    assert masks.kept == round(0.05 * masks.total) == 18
    for name in masks:
        per_channel = masks[name].flatten(1).sum(1)
        assert bool((per_channel >= 1).all()), name
    floor = channel_floor(logits, 1, dict.fromkeys(logits, 0))
    expected = select_top_k_with_floor(logits, 18, floor)
    assert masks.equals(expected)
    with pytest.raises(InputError, match="per-layer"):
        find_mask(
            model,
            "pun",
            0.5,
            [(torch.ones(1, 1, 4, 4),) * 2],
            nn.functional.mse_loss,
            allocation="uniform",
            channel_min=1,
            steps=1,
        )


# ----------------------------------------------------------------------------- in the pipeline


def _context(tmp_path, *extra: str) -> MethodContext:
    cfg = load_config(None, [*TINY, *FAST, "prune.density=0.6", *extra])
    return MethodContext(cfg, tmp_path, load_run_data(cfg), False)


@pytest.mark.parametrize("guard", ["channel-min", "first-last"])
def test_pun_is_the_paper_preset_in_the_pipeline(tmp_path, guard):
    ctx = _context(tmp_path, f"prune.pun_guard={guard}")
    model = build_model(ctx.cfg.model, 0)
    masks = find_method_mask(ctx, ModelSpec("pun", 0, 0.6, 0.6), model, "pun", None)
    meta = masks.metadata
    assert (meta["preset"], meta["guard"], meta["allocation"]) == ("pun", guard, "global")
    assert meta["pun"]["config"] == dataclasses.asdict(ctx.cfg.prune.pun)
    assert meta["pun"]["config"]["kl_reduction"] == "sum"
    assert masks.kept == round(0.6 * masks.total)
    names = prunable_targets(model)
    if guard == "first-last":
        assert meta["pun"]["dense"] == sorted([names[0], names[-1]])
        assert bool(masks[names[0]].all()) and bool(masks[names[-1]].all())
    else:
        assert meta["pun"]["channel_min"] == 1
        assert all(bool((masks[n].flatten(1).sum(1) >= 1).all()) for n in names)
    uniform = find_method_mask(
        ctx, ModelSpec("pun-uniform", 0, 0.6, 0.6), model, "pun-uniform", None
    )
    assert uniform.metadata["preset"] == "pun-uniform"
    assert uniform.metadata["allocation"] == "uniform"
    for n in names:  # per-layer counts (largest remainder)
        assert abs(int(uniform[n].sum()) - 0.6 * uniform[n].numel()) < 1, n


def test_first_last_guard_refuses_a_density_below_its_layers(tmp_path):
    ctx = _context(tmp_path, "prune.pun_guard=first-last")
    with pytest.raises(InputError, match="kept dense"):  # 144 of 288 weights > round(0.3 * 288)
        find_method_mask(
            ctx, ModelSpec("pun", 0, 0.3, 0.3), build_model(ctx.cfg.model, 0), "pun", None
        )


def test_old_per_layer_pun_masks_are_refused_as_the_paper_preset(tmp_path):
    old = Masks({"w": torch.ones(2, dtype=torch.bool)}, {"method": "pun", "allocation": "uniform"})
    path = tmp_path / "models/pun/seed0/mask.pt"
    with pytest.raises(InputError, match="pun-uniform"):
        check_preset(old, "pun", path)
    with pytest.raises(InputError, match="pun-uniform"):
        check_preset(old, "pun-shuffled", path)
    assert check_preset(old, "pun-uniform", path) is old  # kept after moving it
    assert check_preset(old, "snip", path) is old
    new = Masks({"w": torch.ones(2, dtype=torch.bool)}, {"method": "pun", "preset": "pun"})
    assert check_preset(new, "pun-reinit", path) is new
    with pytest.raises(InputError, match="'pun' search"):
        check_preset(new, "pun-uniform", path)


def test_a_resumed_run_refuses_its_old_pun_mask(tmp_path):
    cfg = load_config(None, [*TINY, *FAST, "methods=[pun]", "prune.density=0.6"])
    out = tmp_path / "run"
    run(cfg, out, progress=False, train_only=True)
    mask = out / "models/pun/seed0/mask.pt"
    masks = Masks.load(mask)
    meta = {k: v for k, v in masks.metadata.items() if k != "preset"}
    Masks(dict(masks), meta).save(mask)  # as earlier punmri wrote it
    (out / "models/pun/seed0/costs.json").unlink()
    with pytest.raises(InputError, match="now the paper's"):
        run(cfg, out, progress=False, train_only=True)


def test_prune_command_offers_both_presets(tmp_path):
    for method in ("pun", "pun-uniform"):
        out = tmp_path / method
        args = ["prune", "--method", method, "--density", "0.6", "--out", str(out), *TINY, *FAST]
        assert main(args) == 0
        summary = json.loads((out / "mask.json").read_text())
        assert summary["metadata"]["preset"] == method
        assert summary["kept"] == round(0.6 * summary["total"])


# ----------------------------------------------------------------------------- dense-narrow


@pytest.mark.parametrize(
    ("overrides", "density"),
    [(TINY, 0.3), (TINY, 0.6), (["model.channels=32", "model.depth=5"], 0.03), ([], 0.05)],
)
def test_narrow_width_matches_the_kept_count_within_one_width_step(overrides, density):
    cfg = load_config(None, overrides)
    info = narrow_width(cfg, density)
    width, target = info["channels"], info["target"]
    assert target == round(density * prunable_count(cfg.model, cfg.prune))
    assert info["dense_prunable"] == prunable_count(cfg.model, cfg.prune)
    assert info["prunable"] == prunable_count(
        model_config(cfg, ModelSpec("dense-narrow", 0, density)), cfg.prune
    )

    def count(w: int) -> int:
        return prunable_count(dataclasses.replace(cfg.model, channels=w), cfg.prune)

    below = count(width - 1) if width > 1 else 0
    above = count(width + 1)
    assert below <= target <= above  # within one width step
    assert abs(info["prunable"] - target) <= min(abs(below - target), abs(above - target))
    assert model_config(cfg, ModelSpec("dense", 0)) == cfg.model


def test_narrow_width_of_the_demo_resnet():
    cfg = load_config(None, ["model.channels=32", "model.depth=5"])  # 28,800 prunable weights
    assert narrow_width(cfg, 0.03)["channels"] == 5  # 855 weights for a target of 864
    assert narrow_width(cfg, 0.05)["channels"] == 7  # 1,575 nearer 1,440 than 6's 1,188


def test_dense_narrow_trains_and_is_reported(tmp_path):
    cfg = load_config(
        None,
        [
            *TINY,
            *FAST,
            "methods=[dense,dense-narrow]",
            "prune.density=0.3",
            "prune.densities=[0.6]",
        ],
    )
    assert [s.name for s in model_specs(cfg)] == ["dense", "dense-narrow", "dense-narrow@0.6"]
    out = tmp_path / "run"
    metrics = run(cfg, out, progress=False)
    on_disk = json.loads((out / "metrics.json").read_text())
    for name, density in (("dense-narrow", 0.3), ("dense-narrow@0.6", 0.6)):
        info = json.loads((out / "models" / name / "seed0" / "narrow.json").read_text())
        assert info == narrow_width(cfg, density)
        assert info["channels"] < cfg.model.channels
        entry = on_disk["methods"][name]
        assert "id" in entry["suites"] and name in metrics["methods"]
        assert entry["costs"]["narrow_channels"] == info["channels"]
        assert entry["costs"]["narrow_prunable"] == info["prunable"]
        assert entry["costs"]["train_backward"] > 0
        weights = torch.load(out / "models" / name / "seed0/train/best.pt", weights_only=False)
        assert weights["model"]["denoiser.body.0.weight"].shape[0] == info["channels"]


def test_a_run_with_dense_narrow_reports_again(tmp_path):
    from punmri.cli.main import main

    from .conftest import TINY

    out = tmp_path / "run"
    args = [*TINY, "methods=[dense,dense-narrow]", "prune.density=0.3", "evaluate.baselines=[]"]
    assert main(["run", "--out", str(out), "--no-progress", *args]) == 0
    assert main(["report", "--run", str(out), "--no-progress"]) == 0  # loads the narrow weights
