"""Tests for punmri.evaluate.baselines (zero-filled SENSE and sigpy L1-wavelet CS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from punmri.errors import InputError
from punmri.evaluate.baselines import BASELINES, cs_l1_wavelet, tune_cs_lambda, zero_filled
from punmri.evaluate.metrics import psnr
from punmri.physics import SenseOperator, sampling_mask, simulated_coil_maps


def _ellipse_phantom(n: int) -> np.ndarray:
    """A Shepp-Logan-like phantom of a few ellipses, max magnitude 1, shape (n, n)."""
    yy, xx = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    # (intensity, centre y, centre x, semi-axis y, semi-axis x)
    ellipses = [
        (1.0, 0.0, 0.0, 0.9, 0.7),
        (-0.6, 0.0, 0.0, 0.8, 0.6),
        (0.3, -0.3, 0.2, 0.25, 0.15),
        (0.4, 0.3, -0.2, 0.15, 0.25),
        (0.5, 0.1, 0.25, 0.08, 0.08),
    ]
    image = np.zeros((n, n))
    for value, cy, cx, ay, ax in ellipses:
        image[((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1] += value
    return image / image.max()


def _batch(n: int, coils: int, mask: np.ndarray) -> tuple[torch.Tensor, ...]:
    image = torch.from_numpy(_ellipse_phantom(n).astype(np.complex64))[None]
    maps = torch.from_numpy(simulated_coil_maps((n, n), coils))[None]
    mask_t = torch.from_numpy(mask)[None]
    kspace = SenseOperator(maps, mask_t).forward(image)
    return image, kspace, maps, mask_t


@pytest.mark.parametrize("coils", [1, 4])
def test_zero_filled_fully_sampled_is_exact(coils: int) -> None:
    image, kspace, maps, mask = _batch(32, coils, np.ones((32, 32), dtype=bool))
    recon = zero_filled(kspace, maps, mask)
    assert recon.shape == (1, 32, 32) and recon.dtype == torch.complex64
    torch.testing.assert_close(recon, image, atol=1e-5, rtol=0)


def test_sigpy_sense_matches_sense_operator() -> None:
    import sigpy.mri.linop

    gen = torch.Generator().manual_seed(0)
    n, coils = 24, 3
    maps = torch.from_numpy(simulated_coil_maps((n, n), coils))[None]
    mask = sampling_mask("random", (n, n), 3, 0.1, seed=2).mask
    x = torch.randn((1, n, n), generator=gen, dtype=torch.complex64)
    ours = SenseOperator(maps, torch.from_numpy(mask)[None]).forward(x)[0].numpy()
    theirs = sigpy.mri.linop.Sense(maps[0].numpy(), weights=mask.astype(np.float32))(x[0].numpy())
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


def test_cs_l1_beats_zero_filled_at_4x() -> None:
    n = 48
    mask = sampling_mask("random", (n, n), 4, 0.08, seed=1).mask
    image, kspace, maps, mask_t = _batch(n, 4, mask)
    target = image[0].abs().numpy()
    zf = zero_filled(kspace, maps, mask_t)
    cs = cs_l1_wavelet(kspace, maps, mask_t[0])  # shared (H, W) mask is accepted
    assert cs.shape == (1, n, n) and cs.dtype == torch.complex64
    psnr_zf, psnr_cs = psnr(target, zf[0].numpy()), psnr(target, cs[0].numpy())
    assert psnr_cs > psnr_zf + 3, (psnr_zf, psnr_cs)


def test_tune_cs_lambda_picks_best_of_grid() -> None:
    n = 32
    mask = sampling_mask("random", (n, n), 3, 0.1, seed=0).mask
    image, kspace, maps, mask_t = _batch(n, 2, mask)
    best, scores = tune_cs_lambda(kspace, maps, mask_t, image.abs(), [1e-3, 0.3], iterations=30)
    assert set(scores) == {1e-3, 0.3}
    assert best == max(scores, key=scores.get)
    assert best == 1e-3  # a huge lamda wipes the image out


def test_registry_and_input_validation() -> None:
    assert set(BASELINES) == {"zero-filled", "cs-l1"}
    kspace = torch.zeros((1, 2, 8, 8), dtype=torch.complex64)
    maps = torch.ones((1, 2, 8, 8), dtype=torch.complex64)
    with pytest.raises(InputError, match="coil maps shape"):
        zero_filled(kspace, maps[:, :1], torch.ones(8, 8))
    with pytest.raises(InputError, match="sampling mask shape"):
        cs_l1_wavelet(kspace, maps, torch.ones(8, 9))
    with pytest.raises(InputError, match="kspace"):
        zero_filled(kspace.real, maps, torch.ones(8, 8))
