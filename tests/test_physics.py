"""MRI physics: FFT unitarity and numpy wrappers, SENSE adjointness, mask broadcasting, normal
operator, CG, masks, coils, noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from punmri.errors import InputError
from punmri.physics import (
    MASK_KINDS,
    SenseOperator,
    add_noise,
    conjugate_gradient,
    fft2c,
    ifft2c,
    rss,
    sampling_mask,
    simulated_coil_maps,
)
from punmri.physics.fft import fft2c_numpy, ifft2c_numpy, rss_numpy


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _operator(
    coils: int = 4, shape=(16, 20), batch: int = 2, kind: str = "random"
) -> SenseOperator:
    rng = np.random.default_rng(0)
    maps = np.stack([simulated_coil_maps(shape, coils, rng, jitter=0.2) for _ in range(batch)])
    masks = np.stack([sampling_mask(kind, shape, 4, seed=s).mask for s in range(batch)])
    return SenseOperator(torch.from_numpy(maps), torch.from_numpy(masks))


def test_fft_matches_numpy_and_is_unitary():
    x = torch.randn(3, 10, 13, dtype=torch.complex64, generator=_gen())
    k = fft2c(x)
    ref = np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    np.testing.assert_allclose(k.numpy(), ref, atol=1e-5)
    torch.testing.assert_close(k.norm(), x.norm())
    torch.testing.assert_close(ifft2c(k), x, atol=1e-5, rtol=1e-5)


def _np_fft2c(x: np.ndarray, inverse: bool = False) -> np.ndarray:
    transform = np.fft.ifft2 if inverse else np.fft.fft2
    shifted = np.fft.ifftshift(x.astype(np.complex128), axes=(-2, -1))
    return np.fft.fftshift(transform(shifted, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


@pytest.mark.parametrize(
    ("dtype", "out_dtype", "tol"),
    [
        (np.complex64, np.complex64, 1e-6),
        (np.complex128, np.complex128, 1e-12),
        (np.float32, np.complex64, 1e-6),
        (np.float64, np.complex128, 1e-12),
    ],
)
def test_numpy_wrappers_match_numpy_and_keep_precision(dtype, out_dtype, tol):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 10, 7)) + 1j * rng.standard_normal((3, 10, 7))
    x = (x if np.issubdtype(dtype, np.complexfloating) else x.real).astype(dtype)
    for got, want in (
        (fft2c_numpy(x), _np_fft2c(x)),
        (ifft2c_numpy(x), _np_fft2c(x, inverse=True)),
    ):
        assert got.dtype == out_dtype and got.shape == x.shape
        np.testing.assert_allclose(got, want, atol=tol, rtol=tol)
    combined = rss_numpy(x, axis=0)
    assert combined.dtype == np.abs(np.zeros(1, out_dtype)).dtype and combined.shape == (10, 7)
    np.testing.assert_allclose(combined, np.sqrt((np.abs(x) ** 2).sum(0)), atol=tol, rtol=tol)
    # the wrappers are the torch functions (one implementation)
    t = torch.from_numpy(x.astype(out_dtype))
    np.testing.assert_array_equal(fft2c_numpy(x), fft2c(t).numpy())
    np.testing.assert_array_equal(rss_numpy(x, axis=0), rss(t, dim=0).numpy())


def test_numpy_wrappers_take_read_only_and_strided_arrays():
    x = np.arange(48, dtype=np.complex64).reshape(6, 8)
    x.flags.writeable = False
    view = x[:, ::-2]
    np.testing.assert_allclose(ifft2c_numpy(fft2c_numpy(view)), view, atol=1e-4)
    assert not x.flags.writeable


@pytest.mark.parametrize("coils", [1, 4])
@pytest.mark.parametrize("kind", ["random", "poisson2d"])
def test_sense_adjointness(coils, kind):
    op = _operator(coils=coils, kind=kind)
    assert op.adjointness_error(_gen(1)) < 1e-5


@pytest.mark.parametrize("shape", [(16, 20), (18, 20), (16, 22), (15, 20), (16, 21)])
def test_operator_equals_centred_fft_definition(shape):
    # Even sizes fold the FFT shifts into modulated maps and mask (including the global sign
    # when H/2 + W/2 is odd); odd sizes shift. Both must equal A = M fft2c(S x) exactly.
    op = _operator(coils=3, shape=shape)
    g = _gen(3)
    x = torch.randn(op.image_shape, dtype=torch.complex64, generator=g)
    y = torch.randn(op.maps.shape, dtype=torch.complex64, generator=g)
    m = op.mask[:, None]
    ax = m * fft2c(op.maps * x[:, None])
    torch.testing.assert_close(op(x), ax, atol=1e-5, rtol=1e-5)
    adj = (op.maps.conj() * ifft2c(m * y)).sum(1)
    torch.testing.assert_close(op.adjoint(y), adj, atol=1e-5, rtol=1e-5)
    normal = (op.maps.conj() * ifft2c(m * ax)).sum(1)
    torch.testing.assert_close(op.normal(x), normal, atol=1e-5, rtol=1e-5)
    assert op.adjointness_error(_gen(4)) < 1e-5


def test_sense_accepts_sampling_mask_and_broadcasts_a_batch_of_one():
    shape = (16, 20)
    rng = np.random.default_rng(1)
    maps = torch.from_numpy(np.stack([simulated_coil_maps(shape, 3, rng, jitter=0.2)] * 2))
    drawn = sampling_mask("random", shape, 4, seed=2)
    full = torch.from_numpy(np.stack([drawn.mask, drawn.mask]))
    x = torch.randn((2, *shape), dtype=torch.complex64, generator=_gen(5))
    reference = SenseOperator(maps, full)
    for mask in (drawn, torch.from_numpy(drawn.mask)[None], drawn.mask[None], drawn.mask):
        op = SenseOperator(maps, mask)
        assert op.mask.shape == (2, *shape)
        torch.testing.assert_close(op.mask, reference.mask, atol=0, rtol=0)
        torch.testing.assert_close(op(x), reference(x), atol=0, rtol=0)
    # a (B, H, W) mask keeps one mask per item
    other = torch.from_numpy(np.stack([drawn.mask, sampling_mask("random", shape, 4, seed=3).mask]))
    op = SenseOperator(maps, other)
    assert not torch.equal(op.mask[0], op.mask[1])


@pytest.mark.parametrize(
    "mask",
    [
        torch.ones(3, 16, 20),  # batch 3 against maps of batch 2
        torch.ones(1, 16, 21),  # wrong image size
        torch.ones(16),  # 1D
        torch.ones(1, 1, 16, 20),  # 4D
    ],
)
def test_sense_refuses_masks_that_cannot_broadcast(mask):
    maps = torch.ones(2, 3, 16, 20, dtype=torch.complex64)
    with pytest.raises(InputError, match=r"sampling mask shape .* does not match .*\(1, 16, 20\)"):
        SenseOperator(maps, mask)


def test_sense_refuses_batched_mask_for_single_maps_and_bad_types():
    with pytest.raises(InputError, match="does not match"):
        SenseOperator(torch.ones(1, 2, 8, 8, dtype=torch.complex64), torch.ones(2, 8, 8))
    with pytest.raises(InputError, match="expected a torch.Tensor, numpy array or SamplingMask"):
        SenseOperator(torch.ones(1, 2, 8, 8, dtype=torch.complex64), [[1] * 8] * 8)


def test_normal_operator_self_adjoint_and_psd():
    op = _operator()
    g = _gen(2)
    x = torch.randn(op.image_shape, dtype=torch.complex64, generator=g)
    z = torch.randn(op.image_shape, dtype=torch.complex64, generator=g)
    lhs = torch.vdot(op.normal(x).flatten(), z.flatten())
    rhs = torch.vdot(x.flatten(), op.normal(z).flatten())
    assert abs(lhs - rhs) / abs(lhs) < 1e-5
    assert torch.vdot(x.flatten(), op.normal(x).flatten()).real >= 0


def test_fully_sampled_normalised_maps_give_identity_normal():
    shape = (12, 14)
    maps = torch.from_numpy(simulated_coil_maps(shape, 6))[None]
    op = SenseOperator(maps, torch.ones(shape))
    x = torch.randn(1, *shape, dtype=torch.complex64, generator=_gen())
    torch.testing.assert_close(op.normal(x), x, atol=1e-5, rtol=1e-5)


def test_cg_matches_dense_solve():
    op = _operator(coils=3, shape=(6, 8), batch=2)
    lam = 0.5
    b = torch.randn(op.image_shape, dtype=torch.complex64, generator=_gen(3))
    x = conjugate_gradient(lambda v: op.normal(v) + lam * v, b, iterations=60)
    n = 6 * 8
    for i in range(2):
        cols = []
        for j in range(n):
            e = torch.zeros(op.image_shape, dtype=torch.complex64)
            e[i].view(-1)[j] = 1
            cols.append((op.normal(e) + lam * e)[i].flatten())
        a = torch.stack(cols, 1).to(torch.complex128)
        ref = torch.linalg.solve(a, b[i].flatten().to(torch.complex128))
        torch.testing.assert_close(x[i].flatten().to(torch.complex128), ref, atol=1e-4, rtol=1e-4)


def test_cg_tolerance_only_at_inference_and_handles_zero_rhs():
    op = _operator(coils=2, shape=(8, 8), batch=2)
    b = torch.randn(op.image_shape, dtype=torch.complex64, generator=_gen(4))
    b[1] = 0
    with torch.no_grad():
        x = conjugate_gradient(lambda v: op.normal(v) + v, b, iterations=30, tol=1e-3)
    assert torch.isfinite(torch.view_as_real(x)).all() and (x[1] == 0).all()
    calls = []

    def counted(v):
        calls.append(1)
        return op.normal(v) + v

    b.requires_grad_(True)
    conjugate_gradient(counted, b, iterations=7, tol=1.0)
    assert len(calls) == 7  # with autograd on, the iteration count is fixed


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("acc", [4, 8])
def test_masks_seeded_center_and_acceleration(kind, acc):
    shape = (64, 72)
    m1 = sampling_mask(kind, shape, acc, center_fraction=0.08, seed=5)
    m2 = sampling_mask(kind, shape, acc, center_fraction=0.08, seed=5)
    np.testing.assert_array_equal(m1.mask, m2.mask)
    assert m1.mask.shape == shape and m1.mask.dtype == bool
    assert m1.mask[shape[0] // 2, shape[1] // 2]
    assert acc * 0.75 < m1.acceleration < acc * 1.35
    if kind in ("random", "equispaced", "gaussian1d"):
        assert (m1.mask == m1.mask[0]).all()  # 1D: constant along the readout
        assert m1.mask[0, shape[1] // 2 - 2 : shape[1] // 2 + 2].all()
    other = sampling_mask(kind, shape, acc, seed=6).mask
    assert not np.array_equal(m1.mask, other)


def test_mask_bad_input():
    with pytest.raises(InputError, match="unknown sampling mask kind"):
        sampling_mask("spiral", (8, 8), 4)
    with pytest.raises(InputError, match="acceleration"):
        sampling_mask("random", (8, 8), 0.5)


def test_coil_maps_normalised_and_operator_shape_errors():
    maps = simulated_coil_maps((20, 24), 8, np.random.default_rng(1), jitter=0.3)
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(0), 1, atol=1e-5)
    with pytest.raises(InputError, match="does not match"):
        SenseOperator(torch.from_numpy(maps)[None], torch.ones(1, 5, 5))
    with pytest.raises(InputError, match="complex"):
        SenseOperator(torch.ones(1, 2, 3, 3), torch.ones(3, 3))


def test_noise_snr_and_unsampled_zero():
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((4, 64, 64)) + 1j * rng.standard_normal((4, 64, 64))).astype(
        np.complex64
    )
    mask = sampling_mask("random", (64, 64), 4, seed=0).mask
    k = k * mask
    noisy = add_noise(k, mask, 10.0, np.random.default_rng(1))
    n = noisy - k
    snr = 10 * np.log10((np.abs(k[:, mask]) ** 2).mean() / (np.abs(n[:, mask]) ** 2).mean())
    assert abs(snr - 10.0) < 0.3
    assert (noisy[:, ~mask] == 0).all()
    assert add_noise(k, mask, None, rng) is k
