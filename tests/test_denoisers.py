"""Tests for punmri.models.complex and punmri.models.denoisers (tiny networks, CPU only)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from punmri.errors import InputError
from punmri.models.complex import channels_to_complex, complex_to_channels
from punmri.models.denoisers import (
    DENOISERS,
    ComplexDenoiser,
    DIDNDenoiser,
    ResNetDenoiser,
    UNetDenoiser,
    build_denoiser,
    count_parameters,
    init_weights,
)

TINY: dict[str, dict[str, object]] = {
    "resnet": {"channels": 4, "layers": 3},
    "unet": {"channels": 4, "levels": 3},
    "didn": {"channels": 4, "blocks": 2, "levels": 2},
}
NAMES = sorted(TINY)


def _image(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(batch, height, width, generator=g)
    imag = torch.randn(batch, height, width, generator=g)
    return torch.complex(real, imag)


def _tiny(name: str, seed: int = 0) -> ComplexDenoiser:
    model = build_denoiser(name, **TINY[name])
    init_weights(model, torch.Generator().manual_seed(seed))
    return model


# ---------------------------------------------------------------------------- complex.py


def test_channels_round_trip_exact() -> None:
    x = _image(2, 5, 7)
    t = complex_to_channels(x)
    assert t.shape == (2, 2, 5, 7) and t.dtype == torch.float32
    assert t.is_contiguous(memory_format=torch.channels_last)  # fast CPU convolutions
    assert torch.equal(t[:, 0], x.real) and torch.equal(t[:, 1], x.imag)
    back = channels_to_complex(t)
    assert back.dtype == torch.complex64 and torch.equal(back, x)


def test_channels_conjugate_view_and_double() -> None:
    x = _image(1, 3, 4)
    assert torch.equal(complex_to_channels(x.conj())[:, 1], -x.imag)
    t = complex_to_channels(x.to(torch.complex128))
    assert t.dtype == torch.float64
    assert channels_to_complex(t).dtype == torch.complex128


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(2, 3, 4), torch.zeros(3, 4, dtype=torch.complex64), torch.zeros(1, 1, 3, 4)],
)
def test_complex_to_channels_rejects(bad: torch.Tensor) -> None:
    with pytest.raises(InputError, match=r"x: .*shape"):
        complex_to_channels(bad)


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(1, 2, 3, 4, dtype=torch.complex64),
        torch.zeros(1, 3, 3, 4),
        torch.zeros(2, 3, 4),
        torch.zeros(1, 2, 3, 4, dtype=torch.int64),
    ],
)
def test_channels_to_complex_rejects(bad: torch.Tensor) -> None:
    with pytest.raises(InputError, match=r"t: .*shape \("):
        channels_to_complex(bad)


# ---------------------------------------------------------------------------- denoisers


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(20, 24), (19, 23), (9, 5)])
def test_shape_and_dtype_preserved(name: str, size: tuple[int, int]) -> None:
    model = _tiny(name)
    x = _image(2, *size)
    y = model(x)
    assert y.shape == x.shape and y.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(y)).all()
    assert not torch.equal(y, x)


@pytest.mark.parametrize("name", NAMES)
def test_zero_output_layer_gives_identity(name: str) -> None:
    model = _tiny(name)
    last = model.output_layer()
    with torch.no_grad():
        last.weight.zero_()
        if last.bias is not None:  # DIDN's layers have no bias, as published
            last.bias.zero_()
    x = _image(1, 19, 23)
    assert torch.equal(model(x), x)


def test_output_layer_is_final_conv() -> None:
    model = _tiny("resnet")
    assert model.output_layer() is model.body[-1]
    unet = _tiny("unet")
    assert unet.output_layer() is unet.body.out
    didn = _tiny("didn")
    assert didn.output_layer() is didn.body.tail


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    model = _tiny(name)
    model(_image(2, 19, 23)).abs().pow(2).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scheme", ["kaiming_normal", "kaiming_uniform", "xavier_normal"])
def test_init_determinism(name: str, scheme: str) -> None:
    models = [build_denoiser(name, **TINY[name]) for _ in range(3)]
    for model, seed in zip(models, (7, 7, 8), strict=True):
        init_weights(model, torch.Generator().manual_seed(seed), scheme=scheme)  # type: ignore[arg-type]
    a, b, c = (dict(m.named_parameters()) for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a)
    convs = [k for k in a if k.endswith("weight") and a[k].ndim == 4]
    assert convs and all(not torch.equal(a[k], c[k]) for k in convs)


def test_init_values_and_no_global_rng() -> None:
    model = ResNetDenoiser(channels=4, layers=3)
    didn = DIDNDenoiser(channels=4, blocks=1, levels=1)
    with torch.no_grad():
        for p in list(model.parameters()) + list(didn.parameters()):
            p.fill_(3.0)
    state = torch.get_rng_state()
    init_weights(model, torch.Generator().manual_seed(0))
    init_weights(didn, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)
    bn = model.body[1]
    assert isinstance(bn, nn.BatchNorm2d)
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert torch.all(model.body[-1].bias == 0)
    prelus = [m for m in didn.modules() if isinstance(m, nn.PReLU)]
    assert prelus and all(torch.all(m.weight == 0.25) for m in prelus)


def test_init_kaiming_std() -> None:
    conv = nn.Conv2d(64, 64, 3)
    init_weights(conv, torch.Generator().manual_seed(1))
    expected = (2.0 / (64 * 9)) ** 0.5
    assert abs(conv.weight.std().item() / expected - 1.0) < 0.05


class _Mask(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * (torch.arange(w.numel()).reshape(w.shape) % 2)


def test_init_sees_through_pruning() -> None:
    pruned, parametrized, reference = nn.Conv2d(2, 3, 3), nn.Conv2d(2, 3, 3), nn.Conv2d(2, 3, 3)
    prune.random_unstructured(pruned, "weight", amount=0.5)
    parametrize.register_parametrization(parametrized, "weight", _Mask())
    for conv in (pruned, parametrized, reference):
        init_weights(conv, torch.Generator().manual_seed(3))
    assert torch.equal(pruned.weight_orig, reference.weight)
    assert torch.equal(parametrized.parametrizations.weight.original, reference.weight)


def test_init_errors() -> None:
    model = ResNetDenoiser(channels=4, layers=2)
    with pytest.raises(InputError, match="scheme"):
        init_weights(model, torch.Generator(), scheme="orthogonal")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="generator"):
        init_weights(model, 0)  # type: ignore[arg-type]


def test_build_denoiser_registry_and_errors() -> None:
    assert set(DENOISERS) == {"resnet", "unet", "didn"}
    assert isinstance(build_denoiser("unet", channels=2, levels=1), UNetDenoiser)
    with pytest.raises(InputError, match=r"name: .*'didn', 'resnet', 'unet'"):
        build_denoiser("vit")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"'width'.*channels.*layers.*batchnorm"):
        build_denoiser("resnet", width=8)


@pytest.mark.parametrize(
    ("cls", "kwargs", "argument"),
    [
        (ResNetDenoiser, {"channels": 0}, "channels"),
        (ResNetDenoiser, {"layers": 1}, "layers"),
        (ResNetDenoiser, {"batchnorm": 1}, "batchnorm"),
        (UNetDenoiser, {"levels": 0}, "levels"),
        (UNetDenoiser, {"pool": "min"}, "pool"),
        (UNetDenoiser, {"pad_mode": "circular"}, "pad_mode"),
        (UNetDenoiser, {"negative_slope": -1.0}, "negative_slope"),
        (ResNetDenoiser, {"norm": "group"}, "norm"),
        (ResNetDenoiser, {"norm": "batch-per-unroll", "unrolls": 0}, "unrolls"),
        (UNetDenoiser, {"norm": "layer"}, "norm"),
        (DIDNDenoiser, {"blocks": 0}, "blocks"),
        (DIDNDenoiser, {"channels": 2.5}, "channels"),
        (DIDNDenoiser, {"channels": 6}, "channels"),
        (DIDNDenoiser, {"norm": "batch"}, "norm"),
    ],
)
def test_constructor_errors(cls: type, kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(InputError, match=f"^{argument}: expected"):
        cls(**kwargs)


def test_unet_too_small_image_is_input_error() -> None:
    model = UNetDenoiser(channels=2, levels=3)
    with pytest.raises(InputError, match="too small"):
        model(_image(1, 5, 7))


def test_zero_padding_mode_and_count_parameters() -> None:
    model = DIDNDenoiser(channels=4, blocks=1, levels=1, pad_mode="zeros")
    assert model(_image(1, 3, 3)).shape == (1, 3, 3)
    total = count_parameters(model)
    assert total == sum(p.numel() for p in model.parameters())
    model.body.tail.weight.requires_grad_(False)
    assert count_parameters(model) == total - model.body.tail.weight.numel()
