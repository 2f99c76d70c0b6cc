"""Targets by name and the Masks container: stats, validation, storage, shuffling."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from punmri.errors import InputError
from punmri.pruning import Masks, find_mask, prunable_targets

from .toy_models import ConvNet


class SharedNet(nn.Module):
    """One conv applied twice (and registered under a second name) plus a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.again = self.conv
        self.head = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            x = x + torch.relu(self.conv(x))
        return self.head(x)


def test_targets_default_types_skip_bias_norm_scalar():
    names = prunable_targets(ConvNet())
    assert names == ["c1.weight", "c2.weight", "c3.weight"]


def test_targets_shared_module_once_and_patterns():
    model = SharedNet()
    assert prunable_targets(model) == ["conv.weight", "head.weight"]
    assert prunable_targets(model, include=["head.*"]) == ["head.weight"]
    assert prunable_targets(model, exclude=["conv*"]) == ["head.weight"]
    assert prunable_targets(model, types=(nn.Linear,)) == ["head.weight"]
    with pytest.raises(InputError):
        prunable_targets(model, include="head.*")


def _masks() -> Masks:
    a = torch.tensor([[True, False], [False, False]])
    b = torch.tensor([True, True, False, True])
    return Masks({"b.weight": b, "a.weight": a}, {"method": "hand"})


def test_masks_stats_summary_json():
    m = _masks()
    assert list(m) == ["a.weight", "b.weight"]
    assert (m.kept, m.total) == (4, 8)
    assert m.density == 0.5
    stats = m.layer_stats()
    assert stats[0] == {"name": "a.weight", "shape": [2, 2], "kept": 1, "total": 4, "density": 0.25}
    text = m.summary()
    assert "a.weight" in text and "0.2500" in text and "total" in text
    report = json.loads(m.to_json())
    assert report["kept"] == 4 and report["metadata"]["method"] == "hand"


def test_masks_reject_non_bool():
    with pytest.raises(InputError, match="bool"):
        Masks({"w": torch.ones(3)})
    with pytest.raises(InputError):
        Masks({})


def test_save_load_round_trip_and_refusal(tmp_path):
    model = ConvNet()
    masks = find_mask(model, "magnitude", 0.3)
    path = masks.save(tmp_path / "sub" / "masks.pt")
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    back = Masks.load(path, model)
    assert back.equals(masks)
    assert back.metadata == masks.metadata
    assert back.metadata["signature"] == [
        ["c1.weight", [4, 1, 3, 3]],
        ["c2.weight", [4, 4, 3, 3]],
        ["c3.weight", [1, 4, 1, 1]],
    ]

    class Wider(ConvNet):
        def __init__(self) -> None:
            super().__init__()
            self.c2 = nn.Conv2d(4, 5, 3, padding=1)
            self.c3 = nn.Conv2d(5, 1, 1)
            self.extra = nn.Linear(2, 2)

    with pytest.raises(InputError) as err:
        Masks.load(path, Wider())
    msg = str(err.value)
    assert "c2.weight" in msg and "extra.weight" in msg and "missing" in msg
    with pytest.raises(InputError, match="does not exist"):
        Masks.load(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_text("not torch")
    with pytest.raises(InputError, match="bad.pt"):
        Masks.load(tmp_path / "bad.pt")


def test_check_fits_extra_name():
    masks = Masks({"nothere.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(InputError, match="nothere.weight"):
        masks.check_fits(ConvNet())


def test_shuffled_within_layers_keeps_counts():
    masks = find_mask(ConvNet(), "magnitude", 0.25)
    gen = torch.Generator().manual_seed(3)
    shuffled = masks.shuffled_within_layers(gen)
    for name in masks:
        assert int(shuffled[name].sum()) == int(masks[name].sum())
    assert not shuffled.equals(masks)
    again = masks.shuffled_within_layers(torch.Generator().manual_seed(3))
    assert again.equals(shuffled)
    assert shuffled.metadata["method"] == "shuffled(magnitude)"
