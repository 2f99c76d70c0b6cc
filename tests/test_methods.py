"""Pruning methods inside the pipeline: exact densities, zeros through training and resume,
shared PUN mask for the ablations, IMP without revival, names with densities."""

from __future__ import annotations

import json

import pytest
import torch

from punmri.config import load_config
from punmri.errors import InputError
from punmri.pipeline import load_run_data, load_trained, model_specs, run
from punmri.pruning import Masks
from punmri.specs import ModelSpec

from .conftest import TINY

FAST = [
    "prune.pun.steps=4",
    "prune.pun.log_every=2",
    "prune.pun_uniform.steps=4",
    "prune.pun_uniform.log_every=2",
    "prune.synflow_iterations=2",
    "prune.imp_rounds=2",
    "prune.finetune_steps=2",
    "prune.check_batches=1",
    "prune.check_shuffles=1",
    "evaluate.baselines=[zero-filled]",
]
ALL = (
    "[dense,pun,pun-uniform,random,random-erk,magnitude,snip,grasp,synflow,pun-shuffled,"
    "pun-reinit,pun-wt,pun-at,magnitude-at,imp]"
)


@pytest.fixture(scope="module")
def all_methods_run(tmp_path_factory):
    cfg = load_config(None, [*TINY, *FAST, f"methods={ALL}", "prune.density=0.3"])
    out = tmp_path_factory.mktemp("methods") / "run"
    metrics = run(cfg, out, progress=False)
    return cfg, out, metrics


def _effective_zero_fraction(model, masks: Masks) -> None:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        module_name, attr = name.rsplit(".", 1)
        module = model.get_submodule(module_name)
        weight = getattr(module, attr)
        assert (weight[~mask] == 0).all(), name
        raw = params.get(f"{module_name}.parametrizations.{attr}.original")
        if raw is not None:
            assert (raw[~mask] == 0).all(), name


def test_every_method_trains_with_exact_density_and_zeros(all_methods_run):
    cfg, out, metrics = all_methods_run
    for spec in model_specs(cfg):
        if spec.method == "dense":
            continue
        masks = Masks.load(spec.directory(out) / "mask.pt")
        assert masks.kept == round(0.3 * masks.total), spec.name
        trained = load_trained(cfg, spec, out)
        _effective_zero_fraction(trained.model, masks)
        costs = json.loads((spec.directory(out) / "costs.json").read_text())
        assert costs["train_backward"] > 0
        assert spec.name in metrics["methods"]


def test_ablations_share_pun_layer_counts(all_methods_run):
    cfg, out, _ = all_methods_run
    pun = Masks.load(out / "models/pun/seed0/mask.pt")
    shuffled = Masks.load(out / "models/pun-shuffled/seed0/mask.pt")
    reinit = Masks.load(out / "models/pun-reinit/seed0/mask.pt")
    for name in pun:
        assert int(pun[name].sum()) == int(shuffled[name].sum())
        assert torch.equal(pun[name], reinit[name])
    assert any(not torch.equal(pun[n], shuffled[n]) for n in pun)
    check = pun.metadata["check"]
    assert {"loss_dense", "loss_mask", "loss_shuffled_mean"} <= set(check)
    assert "pun_history" in pun.metadata


def test_costs_reflect_method_recipes(all_methods_run):
    _, _, metrics = all_methods_run
    costs = {k: v["costs"] for k, v in metrics["methods"].items() if "costs" in v}
    dense_train = costs["dense"]["train_backward"]
    assert costs["pun"]["mask_backward"] > 0  # the search backpropagates
    assert costs["random"]["mask_backward"] == 0
    # after-training methods pay for the dense training as mask cost
    assert costs["pun-at"]["mask_backward"] >= dense_train
    assert costs["imp"]["mask_backward"] >= 2 * dense_train  # dense + one more round


def test_pruned_resume_equals_uninterrupted(tmp_path):
    cfg = load_config(None, [*TINY, *FAST, "methods=[snip]", "prune.density=0.3"])
    data = load_run_data(cfg)
    from punmri.methods import MethodContext, run_method

    spec = ModelSpec("snip", 0, 0.3, 0.3)
    full = run_method(MethodContext(cfg, tmp_path / "a", data, False), spec)
    ctx = MethodContext(cfg, tmp_path / "b", data, False)
    # interrupt the final training after 3 steps, then resume
    from punmri.methods import find_method_mask, mask_stage
    from punmri.models import build_model
    from punmri.train import train

    model = build_model(cfg.model, 0)
    masks = mask_stage(ctx, spec, lambda: find_method_mask(ctx, spec, model, "snip", None))
    from punmri.pruning import apply, register_optimizer_hook
    from punmri.train import TrainHooks

    apply(model, masks)
    train(
        model,
        ctx.stream(0),
        data.val_batches,
        cfg.train,
        spec.directory(ctx.run_dir) / "train",
        progress=False,
        stop_at=3,
        checkpoint_every=1,
        hooks=TrainHooks(on_optimizer=lambda o: register_optimizer_hook(o, model)),
    )
    resumed = run_method(ctx, spec)
    for (n, p), (_, q) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(p, q), n


def test_method_names_and_errors():
    cfg = load_config(
        None,
        ["methods=[dense,pun]", "prune.density=0.05", "prune.densities=[0.1,0.05]", "seeds=[0,1]"],
    )
    names = sorted({s.name for s in model_specs(cfg)})
    assert names == ["dense", "pun", "pun@0.1"]
    assert len(model_specs(cfg)) == 2 + 2 * 2
    with pytest.raises(InputError, match="unknown method 'lottery'"):
        model_specs(load_config(None, ["methods=[lottery]"]))
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        model_specs(load_config(None, ["methods=[pun]", "prune.density=1.5"]))


def test_sweep_methods_limit_the_extra_densities():
    base = ["methods=[dense,pun,random]", "prune.density=0.05", "prune.densities=[0.1,0.01]"]
    cfg = load_config(None, [*base, "prune.sweep_methods=[pun]"])
    names = [s.name for s in model_specs(cfg)]
    assert names == ["dense", "pun", "pun@0.1", "pun@0.01", "random"]
    with pytest.raises(InputError, match="sweep_methods: 'snip' is not in methods"):
        model_specs(load_config(None, [*base, "prune.sweep_methods=[snip]"]))


def test_report_of_a_pruned_run_has_every_section(all_methods_run):
    cfg, out, metrics = all_methods_run
    pun = metrics["methods"]["pun"]
    assert set(pun["suites"]["id"]["delta_psnr"]) == {"mean", "ci_low", "ci_high"}
    assert set(metrics["summary"]["pun"]) >= {"id_delta_psnr", "ood_delta_psnr"}
    assert pun["training"]["best_step"] == pun["best_step"]
    assert len(pun["training"]["final_val_psnr"]) == len(cfg.seeds)
    report = (out / "report.md").read_text()
    for heading in ("## Differences to dense", "## Training", "## Cost", "## Figures"):
        assert heading in report, heading
    for figure in ("delta_psnr.png", "layer_density.png", "pun_search.png", "training.png"):
        assert (out / "figures" / figure).is_file(), figure
