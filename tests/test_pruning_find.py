"""find_mask: exact kept counts per method x allocation, determinism, no side effects, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from punmri.errors import InputError
from punmri.pruning import METHODS, find_mask

from .toy_models import ConvNet

FAST = {"pun": {"steps": 3, "log_every": 1}, "synflow": {"iterations": 3}}


class SharedNet(nn.Module):
    """One conv called twice, as MoDL calls its denoiser K times."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.back = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            x = x + self.back(torch.relu(self.conv(x)))
        return x


def _data():
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g))
        for _ in range(2)
    ]


def _find(model, method, density, allocation="global", seed=0):
    return find_mask(
        model,
        method,
        density,
        _data(),
        nn.functional.mse_loss,
        allocation=allocation,
        generator=torch.Generator().manual_seed(seed),
        **FAST.get(method, {}),
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("allocation", ["global", "uniform", "erk"])
def test_exact_kept_count(method, allocation):
    torch.manual_seed(0)
    model = ConvNet()
    total = 4 * 9 + 16 * 9 + 4
    for density in (0.05, 0.37, 1.0):
        masks = _find(model, method, density, allocation)
        assert masks.kept == round(density * total), (method, allocation, density)
        assert masks.total == total
        assert masks.metadata["method"] == method
        assert masks.metadata["allocation"] == allocation


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_and_model_untouched(method):
    torch.manual_seed(1)
    model = ConvNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = _find(model, method, 0.3, seed=7)
    b = _find(model, method, 0.3, seed=7)
    assert a.equals(b)
    after = model.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(before[k], after[k]) for k in before), method
    assert model.training and all(p.grad is None and p.requires_grad for p in model.parameters())
    cost = a.metadata["cost"]
    assert cost["seconds"] >= 0
    if method in ("snip", "grasp", "pun", "synflow"):
        assert cost["forward_passes"] > 0 and cost["backward_passes"] > 0


def test_random_seed_changes_mask():
    model = ConvNet()
    assert not _find(model, "random", 0.3, seed=1).equals(_find(model, "random", 0.3, seed=2))


def test_shared_weight_appears_once():
    masks = _find(SharedNet(), "snip", 0.5)
    assert list(masks) == ["back.weight", "conv.weight"]
    assert masks.kept == round(0.5 * (18 + 18))


def test_cost_counts():
    masks = _find(ConvNet(), "snip", 0.5)
    assert masks.metadata["cost"]["forward_passes"] == 2
    assert masks.metadata["cost"]["backward_passes"] == 2
    masks = _find(ConvNet(), "pun", 0.5)
    assert masks.metadata["cost"]["forward_passes"] == 3
    assert masks.metadata["cost"]["backward_passes"] == 3


def test_synflow_data_free_with_input_shape():
    model = ConvNet()
    masks = find_mask(model, "synflow", 0.2, input_shape=(1, 1, 8, 8), iterations=5)
    assert masks.kept == round(0.2 * masks.total)
    assert masks.metadata["cost"]["forward_passes"] == 5


def test_metadata_and_explicit_targets():
    model = ConvNet()
    masks = find_mask(model, "magnitude", 0.5, targets=["c2.weight"])
    assert list(masks) == ["c2.weight"] and masks.kept == 72
    assert masks.metadata["signature"] == [["c2.weight", [4, 4, 3, 3]]]
    assert masks.metadata["seed"] == 0


def test_errors():
    model = ConvNet()
    with pytest.raises(InputError, match="valid.*random"):
        find_mask(model, "lottery", 0.5)
    with pytest.raises(InputError, match="needs data"):
        find_mask(model, "snip", 0.5, loss_fn=nn.functional.mse_loss)
    with pytest.raises(InputError, match="loss_fn"):
        find_mask(model, "grasp", 0.5, data=_data())
    for bad in (0.0, -0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(InputError, match="density"):
            find_mask(model, "magnitude", bad)
    with pytest.raises(InputError, match="unknown options"):
        find_mask(model, "magnitude", 0.5, steps=3)
    with pytest.raises(InputError, match="allocation"):
        find_mask(model, "magnitude", 0.5, allocation="layerwise")
    with pytest.raises(InputError, match="keeps 0"):
        find_mask(model, "magnitude", 1e-5)
    with pytest.raises(InputError, match="not found"):
        find_mask(model, "magnitude", 0.5, targets=["nope.weight"])
    with pytest.raises(InputError, match="pair"):
        find_mask(model, "snip", 0.5, data=[torch.ones(1)], loss_fn=nn.functional.mse_loss)
    with pytest.raises(InputError, match="steps"):
        find_mask(model, "pun", 0.5, _data(), nn.functional.mse_loss, steps=0)


@pytest.mark.parametrize("method", ["random", "magnitude", "snip", "grasp"])
def test_channel_min_keeps_every_output_channel_at_the_exact_count(method):
    torch.manual_seed(0)
    model = ConvNet()
    with torch.no_grad():
        model.c3.weight.mul_(1e-4)  # the small output layer a global magnitude ranking drops
    total = 4 * 9 + 16 * 9 + 4
    plain = _find(model, "magnitude", 0.1)
    assert int(plain["c3.weight"].sum()) == 0
    masks = find_mask(
        model,
        method,
        0.1,
        _data(),
        nn.functional.mse_loss,
        generator=torch.Generator().manual_seed(0),
        channel_min=1,
    )
    assert masks.kept == round(0.1 * total)
    for name, mask in masks.items():
        assert mask.flatten(1).any(dim=1).all(), (method, name)  # every output channel
    assert masks.metadata["options"] == {"channel_min": 1}
    with pytest.raises(InputError, match="channel_min.*allocation 'uniform'"):
        _find_with(model, method, allocation="uniform", channel_min=1)


def _find_with(model, method, **kwargs):
    return find_mask(model, method, 0.1, _data(), nn.functional.mse_loss, **kwargs)
