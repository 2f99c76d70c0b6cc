"""Compute at scale: mixed precision (train.precision), checkpointed unrolls
(model.checkpoint_unrolls) and implicit data-consistency gradients (model.dc_backward)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from punmri.config import ModelConfig, TrainConfig, load_config
from punmri.data.batches import TrainingStream, batches, fixed_samples
from punmri.errors import InputError
from punmri.models import MoDL, ResNetDenoiser, build_model
from punmri.models.modl import (
    autocast_dtype,
    data_consistency,
    implicit_data_consistency,
    implicit_solve,
)
from punmri.physics import SenseOperator
from punmri.train import train


def _operator(shape: tuple[int, int], coils: int, seed: int, dtype: torch.dtype) -> SenseOperator:
    """Batch-1 SENSE operator with random maps normalised to sum |S_c|^2 = 1, half the k-space."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn((1, coils, *shape), dtype=dtype, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.rand((1, *shape), generator=g) < 0.5
    return SenseOperator(maps, mask)


def _complex(shape: tuple[int, ...], seed: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _tiny_modl(seed: int = 0, batchnorm: bool = False, layers: int = 3, **kwargs) -> MoDL:
    """A 2-unroll MoDL with a small ResNet, every parameter drawn from ``seed`` (O(1) weights, so
    the denoiser matters)."""
    den = ResNetDenoiser(channels=4, layers=layers, batchnorm=batchnorm)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in den.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    kwargs = {"unrolls": 2, "cg_iterations": 8, "lam": 0.3, **kwargs}
    return MoDL(den, **kwargs)


def _grads(model: nn.Module, y: torch.Tensor, op: SenseOperator, target: torch.Tensor) -> dict:
    """Loss and gradients w.r.t. ``y`` and every parameter of one forward/backward pass."""
    model.zero_grad(set_to_none=True)
    y = y.detach().clone().requires_grad_()
    loss = (model(y, op) - target).abs().pow(2).sum()
    loss.backward()
    out = {"loss": loss.detach(), "y": y.grad}
    out.update({n: p.grad.clone() for n, p in model.named_parameters()})
    return out


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn()`` runs."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


# ---------------------------------------------------------------------------- configuration


def test_config_defaults_and_validation():
    cfg = load_config(None, [])
    assert cfg.train.precision == "fp32"
    assert cfg.model.checkpoint_unrolls is False and cfg.model.dc_backward == "unrolled"
    cfg = load_config(
        None,
        ["train.precision=bf16", "model.checkpoint_unrolls=true", "model.dc_backward=implicit"],
    )
    assert cfg.train.precision == "bf16" and cfg.model.checkpoint_unrolls
    assert cfg.model.dc_backward == "implicit"
    with pytest.raises(InputError, match="train.precision"):
        load_config(None, ["train.precision=fp8"])
    with pytest.raises(InputError, match="model.dc_backward"):
        load_config(None, ["model.dc_backward=adjoint"])
    with pytest.raises(InputError, match="model.dc_backward"):
        ModelConfig(dc_backward="adjoint")
    with pytest.raises(InputError, match="fp16 needs CUDA"):
        TrainConfig(precision="fp16", device="cpu")


def test_fp16_needs_cuda():
    assert autocast_dtype("fp32", "cpu") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    with pytest.raises(InputError, match="train.precision fp16 needs CUDA; use bf16 on CPU"):
        autocast_dtype("fp16", torch.device("cpu"))
    with pytest.raises(InputError, match="precision"):
        MoDL(ResNetDenoiser(channels=2, layers=2), precision="fp8")
    with pytest.raises(InputError, match="dc_backward"):
        MoDL(ResNetDenoiser(channels=2, layers=2), dc_backward="adjoint")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_train_refuses_fp16_on_cpu(tiny_config, tiny_images, tmp_path):
    stream, val = _setup(tiny_config, tiny_images)
    cfg = dataclasses.replace(tiny_config.train, precision="fp16")  # device auto -> CPU here
    with pytest.raises(InputError, match="fp16 needs CUDA"):
        train(build_model(tiny_config.model, 0), stream, val, cfg, tmp_path, progress=False)


def test_build_model_wires_the_options():
    cfg = ModelConfig(
        channels=4, depth=3, unrolls=2, checkpoint_unrolls=True, dc_backward="implicit"
    )
    model = build_model(cfg, 0, precision="bf16")
    assert model.checkpoint_unrolls and model.dc_backward == "implicit"
    assert model.precision == "bf16"
    plain = build_model(ModelConfig(channels=4, depth=3, unrolls=2), 0)
    assert not plain.checkpoint_unrolls and plain.dc_backward == "unrolled"
    assert plain.precision == "fp32"
    for (n, a), (_, b) in zip(model.state_dict().items(), plain.state_dict().items(), strict=True):
        assert torch.equal(a, b), n  # same weights, same checkpoint keys


# ---------------------------------------------------------------------------- mixed precision


class _RecordingOperator(SenseOperator):
    """A SENSE operator that records the dtype and autocast state of every image it is given."""

    seen: list[tuple[torch.dtype, bool]]

    def _record(self, v: torch.Tensor) -> None:
        self.seen.append((v.dtype, torch.is_autocast_enabled("cpu")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._record(x)
        return super().forward(x)

    def adjoint(self, k: torch.Tensor) -> torch.Tensor:
        self._record(k)
        return super().adjoint(k)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        self._record(x)
        return super().normal(x)


@pytest.mark.parametrize("ambient", [False, True])
def test_bf16_denoiser_while_physics_stays_complex64(ambient):
    # The convolutions compute in bf16, the SENSE/CG path sees complex64 with autocast off, in
    # forward and in backward, whether the model's own precision or a caller's autocast asks.
    base = _operator((12, 10), coils=2, seed=0, dtype=torch.complex64)
    op = _RecordingOperator(base.maps, base.mask)
    op.seen = []
    model = _tiny_modl(batchnorm=True, precision="fp32" if ambient else "bf16", cg_iterations=30)
    conv_dtypes: list[torch.dtype] = []
    denoised: list[torch.Tensor] = []
    den = model.denoiser_at(0)
    den.body[0].register_forward_hook(lambda m, i, o: conv_dtypes.append(o.dtype))
    den.register_forward_hook(lambda m, i, o: denoised.append(o.detach()))
    y = op.forward(_complex((1, 12, 10), 1, torch.complex64))
    op.seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=ambient):
        out = model(y, op)
    out.abs().sum().backward()

    assert out.dtype == torch.complex64
    assert conv_dtypes and set(conv_dtypes) == {torch.bfloat16}
    assert [z.dtype for z in denoised] == [torch.complex64] * 2
    assert op.seen and set(op.seen) == {(torch.complex64, False)}
    assert all(
        p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters()
    )
    # The last data-consistency block solves its normal equations at float32 accuracy: the
    # residual is ~1e-7 (a bf16 solve would leave ~1e-3).
    rhs0 = base.adjoint(y)
    lam = model.lam.detach()
    rhs = rhs0 + lam * denoised[-1]
    residual = base.normal(out.detach()) + lam * out.detach() - rhs
    assert float(residual.norm() / rhs.norm()) < 1e-5
    expected = data_consistency(base, rhs0, denoised[-1], lam, 30)
    torch.testing.assert_close(out.detach(), expected, rtol=1e-5, atol=1e-6)


def _setup(cfg, images):
    names = [str(i) for i in range(len(images))]
    stream = TrainingStream.simulated(images, names, cfg.physics, 0, cfg.train.augment)
    val = batches(fixed_samples(images[:2], names[:2], cfg.physics, 7, "val"), 2)
    return stream, val


def test_bf16_training_follows_fp32(tiny_config, tiny_images, tmp_path):
    # A few bf16 steps on CPU: they run, weights stay float32, and the per-step training loss
    # follows fp32 (same seed) within 5% (measured: < 1%).
    stream, val = _setup(tiny_config, tiny_images)
    losses, models = {}, {}
    for precision in ("fp32", "bf16"):
        cfg = dataclasses.replace(tiny_config.train, steps=5, val_every=1, precision=precision)
        models[precision] = build_model(tiny_config.model, 0)
        train(models[precision], stream, val, cfg, tmp_path / precision, seed=0, progress=False)
        lines = (tmp_path / precision / "metrics.jsonl").read_text().splitlines()
        losses[precision] = [h["loss"] for h in map(json.loads, lines) if "loss" in h]
    assert len(losses["fp32"]) == len(losses["bf16"]) == 5
    for a, b in zip(losses["fp32"], losses["bf16"], strict=True):
        assert abs(b - a) <= 0.05 * abs(a), (losses["fp32"], losses["bf16"])
    assert losses["fp32"] != losses["bf16"]  # bf16 really computed in bf16
    assert all(p.dtype == torch.float32 for p in models["bf16"].parameters())
    assert all(b.dtype != torch.bfloat16 for b in models["bf16"].buffers())


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_training_on_cuda(tiny_config, tiny_images, tmp_path, precision):
    # On CUDA: bf16, and fp16 with its gradient scaler, train the tiny config with float32
    # weights, complex64 outputs and a loss within 5% of fp32.
    stream, val = _setup(tiny_config, tiny_images)
    losses = {}
    for prec in ("fp32", precision):
        cfg = dataclasses.replace(
            tiny_config.train, steps=5, val_every=1, precision=prec, device="cuda"
        )
        model = build_model(tiny_config.model, 0)
        train(model, stream, val, cfg, tmp_path / prec, seed=0, progress=False)
        lines = (tmp_path / prec / "metrics.jsonl").read_text().splitlines()
        losses[prec] = [h["loss"] for h in map(json.loads, lines) if "loss" in h]
        assert all(p.dtype == torch.float32 and p.is_cuda for p in model.parameters())
    for a, b in zip(losses["fp32"], losses[precision], strict=True):
        assert abs(b - a) <= 0.05 * abs(a), losses


# ---------------------------------------------------------------------------- checkpointing


@pytest.mark.parametrize("batchnorm", [False, True])
def test_checkpointed_unrolls_give_identical_gradients(batchnorm):
    op = _operator((12, 10), coils=2, seed=2, dtype=torch.complex64)
    y = op.forward(_complex((1, 12, 10), 3, torch.complex64))
    target = _complex((1, 12, 10), 4, torch.complex64)
    plain = _tiny_modl(batchnorm=batchnorm)
    ckpt = _tiny_modl(batchnorm=batchnorm, checkpoint_unrolls=True)
    ckpt.load_state_dict(plain.state_dict())
    a, b = _grads(plain, y, op, target), _grads(ckpt, y, op, target)
    for name in a:
        assert _relative(b[name], a[name]) <= 1e-6, name
    # BatchNorm's running statistics are updated once per step, not again when recomputing
    for (name, s), (_, t) in zip(
        plain.state_dict().items(), ckpt.state_dict().items(), strict=True
    ):
        assert torch.equal(s, t), name
    # and no unroll's activations (CG iterates, feature maps) were kept for backward
    bytes_plain = _saved_bytes(lambda: plain(y, op).abs().sum())
    bytes_ckpt = _saved_bytes(lambda: ckpt(y, op).abs().sum())
    assert bytes_ckpt < bytes_plain / 4, (bytes_ckpt, bytes_plain)


def test_checkpointing_is_skipped_without_autograd():
    op = _operator((8, 8), coils=2, seed=2, dtype=torch.complex64)
    y = op.forward(_complex((1, 8, 8), 3, torch.complex64))
    plain, ckpt = _tiny_modl(), _tiny_modl(checkpoint_unrolls=True)
    with torch.no_grad():
        assert torch.equal(plain(y, op), ckpt(y, op))


# ---------------------------------------------------------------------------- implicit DC


def test_implicit_solve_gradcheck_double():
    # With converged CG the implicit backward is the exact derivative of the solve w.r.t. b
    # and lam (finite differences, complex128; fast mode: a random projection of the Jacobian,
    # as the full one needs 2 x 64 solves per column and takes ~30 s on one core).
    g = torch.Generator().manual_seed(0)
    maps = torch.randn((1, 2, 8, 8), dtype=torch.complex128, generator=g)
    op = SenseOperator(maps, torch.rand((1, 8, 8), generator=g) < 0.5)  # unnormalised maps
    b = _complex((1, 8, 8), 1, torch.complex128).requires_grad_()
    lam = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)

    def solve(b, lam):
        return implicit_solve(op, b, lam, iterations=100)

    assert gradcheck(solve, (b, lam), eps=1e-6, atol=1e-8, rtol=1e-6, fast_mode=True)


def test_implicit_data_consistency_matches_unrolled_and_stores_no_iterates():
    # Converged CG (50 steps, 8x8, 2 coils): value and gradients w.r.t. z, A^H y and lam agree.
    op = _operator((8, 8), coils=2, seed=5, dtype=torch.complex64)
    inputs = [
        _complex((1, 8, 8), 6, torch.complex64),
        op.adjoint(op.forward(_complex((1, 8, 8), 7, torch.complex64))),
        torch.tensor(0.3),
    ]
    weight = _complex((1, 8, 8), 8, torch.complex64)
    results = []
    for solve in (data_consistency, implicit_data_consistency):
        z, rhs0, lam = (t.clone().requires_grad_() for t in inputs)
        x = solve(op, rhs0, z, lam, 50)
        (x * weight).real.sum().backward()
        results.append((x.detach(), z.grad, rhs0.grad, lam.grad))
    for name, a, b in zip(("x", "z", "rhs0", "lam"), *results, strict=True):
        assert _relative(b, a) <= 1e-4, name
    z, rhs0, lam = (t.clone().requires_grad_() for t in inputs)
    unrolled = _saved_bytes(lambda: data_consistency(op, rhs0, z, lam, 50))
    implicit = _saved_bytes(lambda: implicit_data_consistency(op, rhs0, z, lam, 50))
    assert implicit * 10 < unrolled, (implicit, unrolled)


def test_implicit_modl_gradients_match_unrolled():
    # A tiny MoDL, converged CG: gradients w.r.t. the k-space, log lam and every denoiser
    # parameter agree to 1e-4 (measured: ~3e-7 in float32).
    op = _operator((8, 8), coils=2, seed=9, dtype=torch.complex64)
    y = op.forward(_complex((1, 8, 8), 10, torch.complex64))
    target = _complex((1, 8, 8), 11, torch.complex64)
    unrolled = _tiny_modl(cg_iterations=50)
    implicit = _tiny_modl(cg_iterations=50, dc_backward="implicit")
    a, b = _grads(unrolled, y, op, target), _grads(implicit, y, op, target)
    assert set(a) == set(b) and "log_lam" in a and len(a) > 4
    for name in a:
        assert _relative(b[name], a[name]) <= 1e-4, name


def test_implicit_honours_tolerance_and_combines_with_checkpointing():
    op = _operator((8, 8), coils=2, seed=9, dtype=torch.complex64)
    y = op.forward(_complex((1, 8, 8), 10, torch.complex64))
    target = _complex((1, 8, 8), 11, torch.complex64)
    reference = _grads(_tiny_modl(cg_iterations=50), y, op, target)
    fast = _tiny_modl(
        cg_iterations=50, cg_tol=1e-6, dc_backward="implicit", checkpoint_unrolls=True
    )
    calls = 0

    def count(v: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return SenseOperator.normal(op, v)

    op.normal = count  # type: ignore[method-assign]
    got = _grads(fast, y, op, target)
    # 2 unrolls x (forward, recompute, backward) solves, each well under 50 steps at tol 1e-6
    assert calls < 2 * 3 * 50 / 2, calls
    for name in reference:
        assert _relative(got[name], reference[name]) <= 1e-4, name


def test_implicit_refuses_differentiable_maps():
    op = _operator((8, 8), coils=2, seed=0, dtype=torch.complex64)
    maps = op.maps.clone().requires_grad_()
    z = _complex((1, 8, 8), 1, torch.complex64)
    with pytest.raises(InputError, match="dc_backward"):
        implicit_data_consistency(SenseOperator(maps, op.mask), z, z, 0.3, 5)
