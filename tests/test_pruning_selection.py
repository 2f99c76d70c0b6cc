"""Selection (exact k, ties, no revival), per-layer allocation and IMP helpers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from punmri.errors import InputError
from punmri.pruning import (
    Masks,
    erk_densities,
    imp_density_schedule,
    layer_counts,
    magnitude_prune_step,
    select_by_counts,
    select_top_k,
)


def test_top_k_ties_broken_by_sorted_name_then_index():
    scores = {"b": torch.ones(3), "a": torch.ones(2)}
    masks = select_top_k(scores, 3)
    assert masks["a"].tolist() == [True, True]
    assert masks["b"].tolist() == [True, False, False]
    # insertion order of the dict does not matter
    again = select_top_k({"a": torch.ones(2), "b": torch.ones(3)}, 3)
    assert again.equals(masks)


def test_top_k_keeps_highest_scores_exactly_k():
    scores = {"w": torch.tensor([[0.1, 5.0], [3.0, -1.0]]), "v": torch.tensor([4.0, -torch.inf])}
    masks = select_top_k(scores, 3)
    assert masks["w"].tolist() == [[False, True], [True, False]]
    assert masks["v"].tolist() == [True, False]
    assert masks.kept == 3


def test_top_k_never_revives():
    scores = {"w": torch.tensor([9.0, 8.0, 1.0, 0.5])}
    current = Masks({"w": torch.tensor([False, True, True, True])})
    masks = select_top_k(scores, 2, current)
    assert masks["w"].tolist() == [False, True, True, False]
    with pytest.raises(InputError, match="only 3 survive"):
        select_top_k(scores, 4, current)


def test_top_k_bad_input():
    with pytest.raises(InputError, match="NaN"):
        select_top_k({"w": torch.tensor([1.0, float("nan")])}, 1)
    with pytest.raises(InputError):
        select_top_k({"w": torch.ones(2)}, -1)
    with pytest.raises(InputError):
        select_top_k({"w": torch.ones(2)}, 1, Masks({"v": torch.ones(2, dtype=torch.bool)}))


def test_select_by_counts_ranks_within_layer():
    scores = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([10.0, 20.0])}
    masks = select_by_counts(scores, {"a": 2, "b": 0})
    assert masks["a"].tolist() == [False, True, True]
    assert masks["b"].tolist() == [False, False]


@pytest.mark.parametrize("density", [0.01, 0.1, 0.333, 0.5, 0.97, 1.0])
@pytest.mark.parametrize("allocation", ["uniform", "erk"])
def test_layer_counts_sum_exactly(density, allocation):
    shapes = {"c1": [16, 1, 3, 3], "c2": [16, 16, 3, 3], "c3": [1, 16, 1, 1], "fc": [10, 7]}
    numels = {n: math.prod(s) for n, s in shapes.items()}
    counts = layer_counts(numels, density, allocation, shapes)
    assert sum(counts.values()) == round(density * sum(numels.values()))
    assert all(0 <= counts[n] <= numels[n] for n in numels)


def test_layer_counts_global_is_none_and_errors():
    assert layer_counts({"a": 10}, 0.5, "global") is None
    with pytest.raises(InputError, match="allocation"):
        layer_counts({"a": 10}, 0.5, "nope")
    with pytest.raises(InputError, match="density"):
        layer_counts({"a": 10}, 0.0, "uniform")
    with pytest.raises(InputError, match="shapes"):
        layer_counts({"a": 10}, 0.5, "erk")


def test_erk_caps_small_layers_at_one():
    shapes = {"small": [2, 1, 1, 1], "big": [64, 64, 3, 3]}
    dens = erk_densities(shapes, 0.5)
    assert dens["small"] == 1.0
    total = sum(math.prod(s) for s in shapes.values())
    kept = sum(dens[n] * math.prod(s) for n, s in shapes.items())
    assert kept == pytest.approx(0.5 * total)
    # ERK density is inversely related to the layer's size
    dens2 = erk_densities({"a": [8, 8, 3, 3], "b": [32, 32, 3, 3]}, 0.1)
    assert dens2["a"] > dens2["b"]


def test_imp_schedule_geometric():
    sched = imp_density_schedule(0.125, 3)
    assert sched == pytest.approx([0.5, 0.25, 0.125])
    assert sched[-1] == 0.125
    with pytest.raises(InputError):
        imp_density_schedule(0.1, 0)


def test_magnitude_prune_step_among_survivors():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[4.0, 3.0, 2.0, 1.0]]))
    first = magnitude_prune_step(model, None, 0.75)
    assert first["weight"].tolist() == [[True, True, True, False]]
    # make the pruned weight the largest: it still must not come back
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 3.0, 2.0, 9.0]]))
    second = magnitude_prune_step(model, first, 0.5)
    assert second["weight"].tolist() == [[False, True, True, False]]
    with pytest.raises(InputError, match="revive"):
        magnitude_prune_step(model, second, 0.75)


def test_magnitude_prune_step_channel_min_keeps_every_output_channel():
    model = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(1.0, 65.0).view(8, 8))
        model[1].weight.fill_(0.01)  # the small output layer a global ranking prunes away
        model[1].weight[1, 5] = 0.02
    plain = magnitude_prune_step(model, None, 0.25)
    assert int(plain["1.weight"].sum()) == 0
    first = magnitude_prune_step(model, None, 0.25, channel_min=1)
    assert first.kept == plain.kept == 20
    assert first["0.weight"].any(dim=1).all() and first["1.weight"].any(dim=1).all()
    assert first["1.weight"].sum(dim=1).tolist() == [1, 1]
    assert bool(first["1.weight"][1, 5])  # the largest entry of that channel
    # later rounds keep the floor among survivors and never revive a pruned weight
    with torch.no_grad():
        model[0].weight.mul_(-1)
        model[1].weight[0, 7] = 5.0  # pruned in round one: must not come back
    second = magnitude_prune_step(model, first, 0.125, channel_min=1)
    assert second.kept == 10
    assert not (second["0.weight"] & ~first["0.weight"]).any()
    assert not (second["1.weight"] & ~first["1.weight"]).any()
    assert second["0.weight"].any(dim=1).all() and second["1.weight"].any(dim=1).all()


def test_magnitude_prune_step_uniform_keeps_each_layers_share_among_survivors():
    model = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(1.0, 65.0).view(8, 8))
        model[1].weight.copy_(torch.arange(16.0).view(2, 8) * 0.001)
    first = magnitude_prune_step(model, None, 0.5, allocation="uniform")
    assert {n: int(m.sum()) for n, m in first.items()} == {"0.weight": 32, "1.weight": 8}
    assert first["1.weight"].flatten()[8:].all()  # the largest of that layer
    with torch.no_grad():
        model[1].weight[0, 0] = 9.0  # pruned in round one: must not come back
    second = magnitude_prune_step(model, first, 0.25, allocation="uniform")
    assert {n: int(m.sum()) for n, m in second.items()} == {"0.weight": 16, "1.weight": 4}
    assert not (second["1.weight"] & ~first["1.weight"]).any()
    erk = magnitude_prune_step(model, None, 0.5, allocation="erk")
    assert erk.kept == 40 and erk["1.weight"].any()
    with pytest.raises(InputError, match="allocation must be one of"):
        magnitude_prune_step(model, None, 0.5, allocation="layerwise")
