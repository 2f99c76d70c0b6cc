"""MoDL: shapes, exact gradients through CG, lambda positivity, sharing, seeded init."""

from __future__ import annotations

import pytest
import torch

from punmri.config import ModelConfig
from punmri.data.batches import TrainingStream
from punmri.errors import InputError
from punmri.models import MoDL, ResNetDenoiser, build_model


def _batch(tiny_config, tiny_images):
    stream = TrainingStream(tiny_images, [str(i) for i in range(6)], tiny_config.physics, 0, False)
    return stream.batch(0, 2)


def test_modl_shapes_and_gradients(tiny_config, tiny_images):
    b = _batch(tiny_config, tiny_images)
    model = build_model(tiny_config.model, seed=0)
    out = model(b.kspace, b.operator())
    assert out.shape == b.target.shape and out.dtype == torch.complex64
    (out - b.target).abs().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.log_lam.grad.abs() > 0


def test_identity_denoiser_with_full_sampling_recovers_image(tiny_config, tiny_images):
    b = _batch(tiny_config, tiny_images)
    b.mask[:] = 1
    op = b.operator()
    y = op.forward(b.target)
    den = ResNetDenoiser(channels=4, layers=3)
    torch.nn.init.zeros_(den.output_layer().weight)
    torch.nn.init.zeros_(den.output_layer().bias)
    model = MoDL(den, unrolls=2, cg_iterations=10, lam=0.1)
    with torch.no_grad():
        torch.testing.assert_close(model(y, op), b.target, atol=1e-4, rtol=1e-4)


def test_seeded_init_and_unshared_denoisers():
    cfg = ModelConfig(channels=4, depth=3, unrolls=3)
    a, b, c = build_model(cfg, 1), build_model(cfg, 1), build_model(cfg, 2)
    for (n, p), (_, q), (_, r) in zip(
        a.named_parameters(), b.named_parameters(), c.named_parameters(), strict=True
    ):
        assert torch.equal(p, q), n
        if p.ndim > 1:
            assert not torch.equal(p, r), n
    unshared = build_model(ModelConfig(channels=4, depth=3, unrolls=3, shared=False), 1)
    n_shared = sum(p.numel() for p in a.parameters())
    n_unshared = sum(p.numel() for p in unshared.parameters())
    assert n_unshared == 3 * (n_shared - 1) + 1  # lam is shared


def test_modl_bad_arguments():
    den = ResNetDenoiser(channels=4, layers=3)
    with pytest.raises(InputError, match="lam"):
        MoDL(den, lam=0.0)
    with pytest.raises(InputError, match="denoisers"):
        MoDL([den, den], unrolls=3)
