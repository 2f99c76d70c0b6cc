"""MoDL: shapes, gradchecked data consistency and network, dense-solve and closed-form values,
lambda positivity, sharing, seeded init."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

from punmri.config import ModelConfig
from punmri.data.batches import TrainingStream
from punmri.errors import InputError
from punmri.models import MoDL, ResNetDenoiser, build_model
from punmri.models.modl import data_consistency
from punmri.physics import SenseOperator


def _batch(tiny_config, tiny_images):
    stream = TrainingStream.simulated(
        tiny_images, [str(i) for i in range(6)], tiny_config.physics, 0, False
    )
    return stream.batch(0, 2)


def test_modl_shapes_and_every_parameter_gets_a_gradient(tiny_config, tiny_images):
    b = _batch(tiny_config, tiny_images)
    model = build_model(tiny_config.model, seed=0)
    out = model(b.kspace, b.operator())
    assert out.shape == b.target.shape and out.dtype == torch.complex64
    (out - b.target).abs().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.log_lam.grad.abs() > 0


def _random_operator(shape: tuple[int, int], coils: int, seed: int) -> SenseOperator:
    """complex128 SENSE operator, batch 1: random (unnormalised) maps, about half the k-space."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn((1, coils, *shape), dtype=torch.complex128, generator=g)
    mask = torch.rand((1, *shape), generator=g, dtype=torch.float64) < 0.5
    return SenseOperator(maps, mask)


def _complex(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, dtype=torch.complex128, generator=torch.Generator().manual_seed(seed))


def test_data_consistency_gradients_are_exact():
    # d x / d (z, lam, A^H y) of the CG solve of (A^H A + lam I) x = A^H y + lam z, against
    # finite differences in double precision.
    op = _random_operator((8, 8), coils=2, seed=0)
    z = _complex(op.image_shape, 1).requires_grad_()
    rhs0 = _complex(op.image_shape, 2).requires_grad_()
    lam = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)

    def solve(z, lam, rhs0):
        return data_consistency(op, rhs0, z, lam, iterations=4)

    assert gradcheck(solve, (z, lam, rhs0), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_modl_gradients_are_exact_in_double_precision():
    # The whole unrolled network: gradients w.r.t. the k-space and every parameter (denoiser
    # weights and log lam) agree with finite differences.
    op = _random_operator((8, 8), coils=2, seed=3)
    torch.manual_seed(0)
    den = ResNetDenoiser(channels=2, layers=2, batchnorm=False)
    model = MoDL(den, unrolls=2, cg_iterations=3, lam=0.3).double()
    y = op.forward(_complex(op.image_shape, 4)).detach().requires_grad_()
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert "log_lam" in names and all(p.dtype == torch.float64 for p in params)
    assert model(y, op).dtype == torch.complex128

    def run(y, *values):
        return functional_call(model, dict(zip(names, values, strict=True)), (y, op))

    assert gradcheck(run, (y, *params), eps=1e-6, atol=1e-7, rtol=1e-5)


def _centred_dft(n: int) -> np.ndarray:
    """The ``n x n`` centred orthonormal DFT matrix (ifftshift -> DFT -> fftshift), from numpy."""
    eye = np.eye(n)
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(eye, axes=0), axis=0, norm="ortho"), axes=0)


def _dense_forward(op: SenseOperator) -> np.ndarray:
    """Explicit matrix of ``A = M F S`` for batch item 0: ``(C * H * W, H * W)`` complex."""
    _, coils, h, w = op.maps.shape
    f2 = np.kron(_centred_dft(h), _centred_dft(w))  # row-major flattening of (H, W)
    m = op.mask[0].numpy().reshape(-1)
    blocks = [m[:, None] * f2 * op.maps[0, c].numpy().reshape(-1)[None, :] for c in range(coils)]
    return np.concatenate(blocks, axis=0)


@pytest.mark.parametrize("shape", [(6, 6), (5, 7)])
def test_data_consistency_matches_dense_solve(shape):
    # x = (A^H A + lam I)^{-1} (A^H y + lam z) with A built as a matrix from its definition,
    # with lam not small and z, y unrelated: fails if DC returns z, A^H y or a wrong lam.
    op = _random_operator(shape, coils=2, seed=5)
    y = _complex(op.maps.shape, 6) * op.mask[:, None]
    z = _complex(op.image_shape, 7)
    den = ResNetDenoiser(channels=2, layers=2)
    model = MoDL(den, unrolls=1, cg_iterations=80, lam=0.7, learn_lam=False)
    model = model.double()
    lam = float(model.lam)  # 0.7 up to the float32 rounding of its stored logarithm
    rhs0 = op.adjoint(y)
    with torch.no_grad():
        x = model.data_consistency(op, rhs0, z)

    a = _dense_forward(op)
    ahy = a.conj().T @ y[0].numpy().reshape(-1)
    np.testing.assert_allclose(rhs0[0].numpy().reshape(-1), ahy, atol=1e-12)
    system = torch.from_numpy(a.conj().T @ a + lam * np.eye(a.shape[1]))
    expected = torch.linalg.solve(system, torch.from_numpy(ahy) + lam * z[0].reshape(-1))
    torch.testing.assert_close(x[0].reshape(-1), expected, atol=1e-9, rtol=1e-9)
    for wrong in (z, rhs0):  # the two classic bugs are far from the answer here
        assert (wrong[0].reshape(-1) - expected).abs().max() > 0.1


def test_full_sampling_matches_closed_form(tiny_config, tiny_images):
    # Fully sampled, SENSE-normalised maps: A^H A = I, so each DC step is the closed form
    # x_k = (A^H y + lam z_k) / (1 + lam). The denoiser adds a constant c (zero output weights,
    # bias c), so z_k = x_{k-1} + c differs from both x_{k-1} and A^H y.
    b = _batch(tiny_config, tiny_images)
    b.mask[:] = 1
    op = b.operator()
    y = op.forward(b.target)
    den = ResNetDenoiser(channels=4, layers=3)
    torch.nn.init.zeros_(den.output_layer().weight)
    with torch.no_grad():
        den.output_layer().bias.copy_(torch.tensor([0.3, -0.2]))
    c = complex(0.3, -0.2)
    lam = 0.5
    model = MoDL(den, unrolls=2, cg_iterations=10, lam=lam)
    expected = b.target
    for _ in range(2):
        expected = (b.target + lam * (expected + c)) / (1 + lam)
    with torch.no_grad():
        out = model(y, op)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    assert (expected - b.target).abs().min() > 0.1  # DC returning A^H y would give the target
    assert (expected - (expected + c)).abs().min() > 0.1  # ... or returning z, x + c


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
