"""model.norm (none, batch, batch-per-unroll, instance), the published DIDN and the seeded
initialisation that keeps untrained MoDLs near their input, and SynFlow on deep networks.

Tiny networks on 16x16 images, except where the claim is about the 64-channel networks of the
paper's setting (output norm of an untrained K=8 MoDL, SynFlow on a K=8 DIDN-MoDL: a few
seconds each on one CPU thread).
"""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from punmri.config import ModelConfig, load_config, save_config, to_dict
from punmri.errors import InputError
from punmri.models import MoDL, build_model
from punmri.models.denoisers import (
    DIDNDenoiser,
    PerUnrollBatchNorm,
    ResNetDenoiser,
    init_weights,
)
from punmri.physics import SenseOperator
from punmri.pruning import find_mask, prunable_targets
from punmri.pruning.scorers import synflow
from punmri.rundir import prepare_run_dir

NORMS = ("none", "batch", "batch-per-unroll", "instance")
DEPTH = {"resnet": 3, "unet": 2, "didn": 1}


def _problem(size: int = 16, coils: int = 2, batch: int = 2, seed: int = 0):
    """``(k-space, operator, target)``: an ellipse phantom, unit-norm random coil maps and a
    random ~30% sampling mask (complex64)."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    image = ((xx**2 / 0.6 + yy**2 / 0.8) < 0.7).to(torch.complex64).expand(batch, -1, -1)
    maps = torch.randn((batch, coils, size, size), dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.rand((batch, size, size), generator=g) < 0.3
    op = SenseOperator(maps, mask)
    return op.forward(image), op, image


def _model(denoiser: str, norm: str | None, unrolls: int = 3, channels: int = 4) -> MoDL:
    cfg = ModelConfig(
        denoiser=denoiser,
        channels=channels,
        depth=DEPTH[denoiser],
        unrolls=unrolls,
        cg_iterations=2,
        norm=norm,
    )
    return build_model(cfg, seed=0)


# ---------------------------------------------------------------------------- model.norm

CASES = [("resnet", n) for n in NORMS] + [("unet", n) for n in NORMS] + [("didn", "none")]


@pytest.mark.parametrize(("denoiser", "norm"), CASES)
def test_every_norm_builds_and_trains_in_modl(denoiser, norm):
    model = _model(denoiser, norm).train()
    y, op, target = _problem()
    out = model(y, op)
    assert out.shape == target.shape and torch.isfinite(torch.view_as_real(out)).all()
    (out - target).abs().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name  # every unroll's own BatchNorm is used too


@pytest.mark.parametrize("denoiser", ["resnet", "unet"])
def test_prunable_targets_are_the_same_convolutions_for_every_norm(denoiser):
    weights = {}
    for norm in NORMS:
        model = _model(denoiser, norm)
        targets = prunable_targets(model)
        assert not any("norms" in t for t in targets)  # normalisation layers are never pruned
        weights[norm] = [(t, model.get_parameter(t)) for t in targets]
    # same convolutions with the same seeded initial weights; with a normalisation the same names
    reference = weights["batch"]
    for norm, pairs in weights.items():
        assert len(pairs) == len(reference), norm
        for (name, w), (ref_name, ref) in zip(pairs, reference, strict=True):
            assert torch.equal(w, ref), (norm, name)
            assert norm == "none" or name == ref_name, (norm, name)


def test_batch_per_unroll_keeps_statistics_per_unroll():
    model = _model("resnet", "batch-per-unroll", unrolls=3).train()
    per_unroll = [m for m in model.modules() if isinstance(m, PerUnrollBatchNorm)]
    assert len(per_unroll) == 2 and all(len(m.norms) == 3 for m in per_unroll)
    y, op, target = _problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    (model(y, op) - target).abs().mean().backward()
    optimizer.step()
    for layer in per_unroll:
        means = [bn.running_mean for bn in layer.norms]
        assert all(int(bn.num_batches_tracked) == 1 for bn in layer.norms)  # once each
        for i in range(3):
            assert means[i].abs().sum() > 0
            for j in range(i):
                assert not torch.allclose(means[i], means[j]), (i, j)
        weights = [bn.weight for bn in layer.norms]
        assert not torch.equal(weights[0], weights[1])  # own affine parameters, trained apart
    # the shared BatchNorm of norm=batch is updated once per unroll instead
    shared = _model("resnet", "batch", unrolls=3).train()
    shared(y, op)
    bns = [m for m in shared.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(int(bn.num_batches_tracked) == 3 for bn in bns)


def test_batch_per_unroll_uses_the_unroll_it_is_given():
    den = ResNetDenoiser(channels=4, layers=3, norm="batch-per-unroll", unrolls=2)
    init_weights(den, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for layer in den.modules():
            if isinstance(layer, PerUnrollBatchNorm):
                layer.norms[1].running_mean.fill_(0.5)
    y, op, _ = _problem(batch=1)
    x = op.adjoint(y)
    den.eval()
    assert den.norm_unrolls == 2
    assert torch.equal(den(x), den(x, unroll=0))
    assert not torch.equal(den(x, unroll=0), den(x, unroll=1))
    with pytest.raises(InputError, match="unroll"):
        den(x, unroll=2)
    with pytest.raises(InputError, match="per-unroll normalisation"):
        MoDL(den, unrolls=3)
    with pytest.raises(InputError, match="per-unroll normalisation"):
        MoDL([den, den], unrolls=2)
    with pytest.raises(InputError, match="model.norm"):
        ModelConfig(norm="batch-per-unroll", shared=False)


def test_old_batchnorm_configs_load_and_norm_wins():
    def resolved(*overrides):
        model = load_config(None, list(overrides)).model
        return model.norm, model.batchnorm

    assert resolved() == ("none", False)  # the default, chosen by measurement
    assert resolved("model.batchnorm=true") == ("batch", True)
    assert resolved("model.batchnorm=false") == ("none", False)
    assert resolved("model.norm=instance", "model.batchnorm=true") == ("instance", False)
    assert resolved("model.norm=batch-per-unroll", "model.batchnorm=false") == (
        "batch-per-unroll",
        True,
    )
    # unet/didn ignore batchnorm as before and get their published normalisation
    assert resolved("model.denoiser=unet", "model.batchnorm=true") == ("instance", False)
    assert resolved("model.denoiser=didn", "model.batchnorm=true") == ("none", False)
    assert resolved("model.denoiser=didn", "model.channels=4") == ("none", False)
    with pytest.raises(InputError, match="model.norm"):
        load_config(None, ["model.denoiser=didn", "model.norm=batch"])
    with pytest.raises(InputError, match="model.norm"):
        load_config(None, ["model.norm=layer"])
    nobn = build_model(load_config(None, ["model.batchnorm=false", "model.depth=3"]).model, 0)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in nobn.modules())


@pytest.mark.parametrize("batchnorm", [True, False])
def test_run_saved_with_batchnorm_only_resumes(tmp_path, batchnorm):
    # A run directory written before model.norm existed holds batchnorm: true/false and no norm.
    overrides = [f"model.batchnorm={str(batchnorm).lower()}"]
    out = tmp_path / "run"
    prepare_run_dir(load_config(None, overrides), out)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["norm"] == ("batch" if batchnorm else "none")  # saved resolved
    del saved["model"]["norm"]
    saved["model"]["batchnorm"] = batchnorm
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    (out / "models").mkdir()  # a finished stage: the directory is no longer empty
    prepare_run_dir(load_config(None, overrides), out)  # the same overrides resume
    explicit = ["model.norm=batch" if batchnorm else "model.norm=none"]
    prepare_run_dir(load_config(None, explicit), out)  # so does the equivalent norm
    other = ["model.norm=instance"]
    with pytest.raises(InputError, match="different config"):
        prepare_run_dir(load_config(None, other), out)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.norm=batch-per-unroll"])
    save_config(cfg, tmp_path / "config.yaml")
    assert to_dict(load_config(tmp_path / "config.yaml")) == to_dict(cfg)


# ---------------------------------------------------------------------------- DIDN


def test_didn_is_the_published_architecture():
    den = DIDNDenoiser(channels=8, blocks=2, levels=2)
    body = den.body
    assert den.size_multiple == 8  # the head's stride-2 conv, then 2 levels per block
    assert body.head[2].stride == (2, 2)
    assert body.tail.in_channels == 2  # C/4 after the final PixelShuffle(2)
    assert all(m.bias is None for m in den.modules() if isinstance(m, nn.Conv2d))
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in den.modules())
    assert all(len(block.residuals()) == 5 for block in body.blocks)  # 2 * levels + 1
    calls = []
    body.recon.register_forward_hook(lambda *_: calls.append(1))
    init_weights(den, torch.Generator().manual_seed(0))
    x = torch.randn(1, 12, 12, dtype=torch.complex64)
    assert den(x).shape == x.shape
    assert len(calls) == 2  # one reconstruction block, shared by every block's output
    # each down-up block is the identity plus its output convolution (local residual)
    block = body.blocks[0]
    with torch.no_grad():
        block.out.weight.zero_()
    h = torch.randn(1, 8, 8, 8)
    assert torch.equal(block(h), h)


class _PlainDIDN(DIDNDenoiser):
    def init_gains(self):
        return []


def test_didn_init_scales_exactly_the_listed_layers():
    den, plain = DIDNDenoiser(channels=8, blocks=2), _PlainDIDN(channels=8, blocks=2)
    init_weights(den, torch.Generator().manual_seed(3), output_gain=0.25)
    init_weights(plain, torch.Generator().manual_seed(3))
    gains = {id(layer): factor for layer, factor in den.init_gains()}
    gains[id(den.output_layer())] = 0.25
    assert len(gains) == 2 * 10 + 4 + 1 + 1  # per block: 5 residuals, 2 ups, 2 fuses, out
    for (name, a), b in zip(den.named_modules(), plain.modules(), strict=True):
        if isinstance(a, nn.Conv2d):
            expected = b.weight * gains.get(id(a), 1.0)
            assert torch.allclose(a.weight, expected, rtol=1e-6, atol=0), name
    assert all(0 < f < 1 for f in gains.values())


def test_output_gain_defaults_to_one_over_unrolls_and_one_restores_the_plain_draw():
    cfg = ModelConfig(channels=4, depth=3, unrolls=4, norm="batch")
    default = build_model(cfg, seed=0).denoiser
    plain_cfg = ModelConfig(channels=4, depth=3, unrolls=4, norm="batch", init_output_gain=1.0)
    plain = build_model(plain_cfg, 0)
    reference = ResNetDenoiser(channels=4, layers=3)
    init_weights(reference, torch.Generator().manual_seed(0))
    # gain 1: bitwise the initialisation before the output gain existed
    pairs = zip(plain.denoiser.state_dict().items(), reference.state_dict().items(), strict=True)
    assert all(torch.equal(a, b) for (_, a), (_, b) in pairs)
    last = reference.output_layer().weight
    assert torch.allclose(default.output_layer().weight, last / 4, rtol=1e-6, atol=0)
    assert torch.equal(default.body[0].weight, reference.body[0].weight)
    with pytest.raises(InputError, match="init_output_gain"):
        ModelConfig(init_output_gain=-1.0)


@pytest.mark.parametrize(("denoiser", "depth"), [("resnet", 5), ("unet", 3), ("didn", 3)])
def test_untrained_modl_output_stays_within_10x_of_the_input(denoiser, depth):
    cfg = ModelConfig(denoiser=denoiser, channels=64, depth=depth, unrolls=8, lam=1.0)
    model = build_model(cfg, seed=0)
    y, op, _ = _problem(size=32, coils=4, batch=1)
    zero_filled = op.adjoint(y).abs().norm()
    for training in (False, True):
        model.train(training)
        with torch.no_grad():
            ratio = float(model(y, op).abs().norm() / zero_filled)
        assert 0.1 < ratio < 10, (training, ratio)


# ---------------------------------------------------------------------------- SynFlow


def test_synflow_is_finite_on_a_deep_didn_modl():
    cfg = ModelConfig(denoiser="didn", channels=64, depth=3, unrolls=8, lam=1.0, cg_iterations=3)
    model = build_model(cfg, seed=0)
    targets = prunable_targets(model)
    y, op, _ = _problem(size=32, coils=2, batch=1)
    options = {"density": 0.05, "iterations": 1, "input_factory": lambda: (y, op)}
    with pytest.raises(InputError, match="overflow"):
        synflow.score(model, targets, None, None, None, rescale="none", **options)
    scores = synflow.score(model, targets, None, None, None, **options)
    assert sorted(scores) == sorted(targets)
    for t in targets:
        assert torch.isfinite(scores[t]).all() and (scores[t] > 0).any(), t


@pytest.mark.parametrize("allocation", ["global", "uniform"])
def test_synflow_masks_keep_exact_counts_on_an_overflowing_modl(allocation):
    cfg = ModelConfig(denoiser="didn", channels=16, depth=3, unrolls=8, lam=1.0, cg_iterations=2)
    model = build_model(cfg, seed=0)
    y, op, target = _problem(size=16, coils=2, batch=1)
    with pytest.raises(InputError, match="overflow"):  # the plain pass cannot be represented
        synflow.score(
            model, prunable_targets(model), [((y, op), target)], None, None, rescale="none"
        )
    masks = find_mask(
        model, "synflow", 0.05, [((y, op), target)], allocation=allocation, iterations=3
    )
    total = sum(model.get_parameter(t).numel() for t in prunable_targets(model))
    assert masks.kept == round(0.05 * total)


def test_synflow_layer_rescale_is_one_global_factor_on_a_homogeneous_network():
    # bias-free convolutions and ReLUs: every path crosses each layer once, so the rescaled
    # scores are the plain ones times prod_l c_l, in every layer and every round
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(16, 1, 3, padding=1, bias=False),
    )
    targets = prunable_targets(net)
    options = {"density": 0.2, "iterations": 3, "input_shape": (1, 1, 8, 8)}
    plain = synflow.score(net, targets, None, None, None, rescale="none", **options)
    scaled = synflow.score(net, targets, None, None, None, rescale="layer", **options)
    alive = torch.cat([torch.isfinite(plain[t]).flatten() for t in targets])
    a = torch.cat([plain[t].flatten() for t in targets])[alive]
    b = torch.cat([scaled[t].flatten() for t in targets])[alive]
    assert torch.equal(alive, torch.cat([torch.isfinite(scaled[t]).flatten() for t in targets]))
    factor = b[a > 0] / a[a > 0]
    assert torch.allclose(factor, factor[0].expand_as(factor), rtol=1e-9, atol=0)
    assert float(factor[0]) != pytest.approx(1.0)  # the rescale did change the magnitude
    assert torch.equal(a.argsort(stable=True), b.argsort(stable=True))


def test_synflow_auto_is_the_plain_pass_when_it_is_finite():
    model = _model("didn", "none", unrolls=2, channels=8)
    targets = prunable_targets(model)
    y, op, _ = _problem(batch=1)
    options = {"density": 0.1, "iterations": 2, "input_factory": lambda: (y, op)}
    auto = synflow.score(model, targets, None, None, None, **options)
    plain = synflow.score(model, targets, None, None, None, rescale="none", **options)
    assert all(torch.equal(auto[t], plain[t]) for t in targets)
    with pytest.raises(InputError, match="rescale"):
        synflow.score(model, targets, None, None, None, rescale="log", **options)
