"""Applying masks: exact zeros under training, removal, checkpoints with plain names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from punmri.errors import InputError
from punmri.pruning import (
    Masks,
    apply,
    find_mask,
    load_masked_state_dict,
    masked_state_dict,
    register_optimizer_hook,
    remove,
    rescale_kept_,
    zero_pruned_,
)


class SharedNet(nn.Module):
    """One conv applied twice (MoDL-like sharing) and a conv head on 1x8x8 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.mix = nn.Conv2d(3, 1, 3, padding=1)
        self.head = nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            x = x + self.mix(torch.relu(self.conv(x)))
        return self.head(x)


def _data(seed: int = 0, n: int = 2):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g))
        for _ in range(n)
    ]


def _model(seed: int = 0) -> SharedNet:
    torch.manual_seed(seed)
    return SharedNet()


def _check_zero(model: nn.Module, masks: Masks) -> None:
    for name, mask in masks.items():
        module = model.get_submodule(name.rsplit(".", 1)[0])
        raw = module.parametrizations.weight.original
        assert torch.all(raw[~mask] == 0), name
        assert torch.all(module.weight[~mask] == 0), name


def test_apply_zeroes_raw_and_effective():
    model = _model()
    masks = find_mask(model, "random", 0.4, generator=torch.Generator().manual_seed(1))
    before = model.conv.weight.detach().clone()
    apply(model, masks)
    _check_zero(model, masks)
    kept = masks["conv.weight"]
    assert torch.equal(model.conv.weight[kept], before[kept])


def test_rescale_kept_scales_each_layer_by_its_kept_fraction_and_preserves_the_variance():
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    kept = {"conv.weight": 3, "mix.weight": 1, "head.weight": 0}  # of 27, 27 and 1 entries
    masks = Masks(
        {n: torch.arange(before[n].numel()).view_as(before[n]) < k for n, k in kept.items()}
    )
    apply(rescale_kept_(model, masks), masks)
    conv, mix = masks["conv.weight"], masks["mix.weight"]
    assert torch.allclose(model.conv.weight[conv], before["conv.weight"][conv] * 3)
    assert torch.allclose(model.mix.weight[mix], before["mix.weight"][mix] * 27**0.5)
    assert torch.equal(model.head.weight, torch.zeros_like(model.head.weight))  # kept nothing
    assert torch.equal(model.conv.bias, before["conv.bias"])  # biases untouched
    _check_zero(model, masks)
    # a random 10% of a wide layer: the rescaled output variance is the dense one's
    torch.manual_seed(0)
    wide = nn.Linear(4000, 200, bias=False).requires_grad_(False)
    x = torch.randn(64, 4000)
    dense_var = float(wide(x).var())
    sparse = find_mask(wide, "random", 0.1, allocation="uniform")
    apply(rescale_kept_(wide, sparse), sparse)
    assert float(wide(x).var()) == pytest.approx(dense_var, rel=0.1)


def test_zeros_stay_zero_under_adam_with_momentum_and_weight_decay():
    model = _model()
    data = _data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-2)
    # dense steps first: Adam's moments are non-zero everywhere when pruning happens
    for x, y in data:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    masks = find_mask(model, "magnitude", 0.3)
    apply(model, masks)
    register_optimizer_hook(opt, model)
    for step in range(50):
        x, y = data[step % len(data)]
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if step in (0, 49):
            _check_zero(model, masks)


def test_without_hook_momentum_would_move_pruned_entries():
    """Guards the test above: the hook is what keeps pruned raw entries at zero."""
    model = _model()
    x, y = _data()[0]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    masks = find_mask(model, "magnitude", 0.3)
    apply(model, masks)
    opt.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    raw = model.conv.parametrizations.weight.original
    assert torch.any(raw[~masks["conv.weight"]] != 0)
    zero_pruned_(model)
    assert torch.all(raw[~masks["conv.weight"]] == 0)


def test_remove_leaves_plain_masked_weights():
    model = _model()
    param = model.conv.weight
    masks = find_mask(model, "magnitude", 0.5)
    apply(model, masks)
    back = remove(model)
    assert back.equals(masks)
    assert isinstance(model.conv.weight, nn.Parameter) and model.conv.weight is param
    assert torch.all(model.conv.weight[~masks["conv.weight"]] == 0)
    assert set(model.state_dict()) == set(_model().state_dict())


def test_masked_checkpoint_into_unpruned_and_fresh_pruned(tmp_path):
    model = _model(0)
    masks = find_mask(model, "magnitude", 0.3)
    apply(model, masks)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    register_optimizer_hook(opt, model)
    for x, y in _data(1):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    state, saved_masks = masked_state_dict(model)
    assert set(state) == set(_model().state_dict())
    torch.save({"state": state, "masks": dict(saved_masks)}, tmp_path / "ckpt.pt")
    blob = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    loaded_masks = Masks(blob["masks"])
    x = _data(2)[0][0]
    expected = model(x)

    plain = _model(5)
    plain.load_state_dict(blob["state"])  # loads without any pruning machinery
    assert torch.allclose(plain(x), expected, atol=1e-6)

    unpruned = _model(6)
    load_masked_state_dict(unpruned, blob["state"], loaded_masks)
    assert torch.allclose(unpruned(x), expected, atol=1e-6)
    _check_zero(unpruned, loaded_masks)

    fresh = apply(_model(7), find_mask(_model(7), "random", 0.5))
    load_masked_state_dict(fresh, blob["state"], loaded_masks)
    assert torch.allclose(fresh(x), expected, atol=1e-6)
    _check_zero(fresh, loaded_masks)


def test_apply_refuses_mismatched_model():
    masks = find_mask(_model(), "magnitude", 0.5)
    other = nn.Sequential(nn.Conv2d(1, 1, 3))
    with pytest.raises(InputError, match="do not fit"):
        apply(other, masks)


def test_apply_refuses_tied_weights_across_modules():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight
    masks = Masks({"0.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(InputError, match="tied"):
        apply(model, masks)


def test_emptied_masks_keep_nothing_and_fit_the_same_model():
    model = _model()
    masks = find_mask(model, "random", 0.4, generator=torch.Generator().manual_seed(1))
    empty = masks.emptied()
    assert list(empty) == list(masks) and empty.kept == 0 and empty.total == masks.total
    apply(model, empty)
    assert all(torch.all(model.get_submodule(n.rsplit(".", 1)[0]).weight == 0) for n in masks)
