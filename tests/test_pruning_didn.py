"""A DIDN denoiser inside MoDL through every scorer and a short PUN search: exact kept counts,
finite scores, the model left as it was.

The network is small (4 channels, one down-up block, 2 unrolls, 3 CG steps) on 24x20 phantoms
with 2 coils. SynFlow's scores on this net are finite but large (~1e24 with one round: DIDN's
concatenations and residual paths multiply the absolute-valued weights); they grow quickly with
width and depth.
"""

from __future__ import annotations

import math

import pytest
import torch

from punmri.config import ModelConfig
from punmri.data.batches import TrainingStream
from punmri.models import build_model
from punmri.pruning import METHODS, SCORERS, find_mask, layer_counts, prunable_targets

DENSITY = 0.25
DIDN = ModelConfig(denoiser="didn", channels=4, depth=1, unrolls=2, cg_iterations=3)


def _loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output - target).abs().pow(2).mean()


@pytest.fixture
def didn_batches(tiny_config, tiny_images):
    """Two ``((k-space, operator), target)`` batches of one slice each."""
    names = [str(i) for i in range(len(tiny_images))]
    stream = TrainingStream.simulated(tiny_images, names, tiny_config.physics, 0, False)
    out = []
    for step in range(2):
        b = stream.batch(step, 1)
        out.append(((b.kspace, b.operator()), b.target))
    return out


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_didn_modl_has_prunable_weights_in_every_part():
    targets = prunable_targets(build_model(DIDN, 0))
    for part in ("head", "blocks.0.downs", "blocks.0.ups", "blocks.0.fuses", "fusion", "tail"):
        assert any(f"denoiser.body.{part}" in t for t in targets), part


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_didn_modl_scores_are_finite_and_model_untouched(name, didn_batches):
    model = build_model(DIDN, 0)
    targets = prunable_targets(model)
    before = _state(model)
    options = {"density": DENSITY, "iterations": 1} if name == "synflow" else {}
    generator = torch.Generator().manual_seed(0)
    scores = SCORERS[name](model, targets, didn_batches, _loss, generator, **options)
    assert sorted(scores) == sorted(targets)
    for t in targets:
        assert scores[t].shape == model.get_parameter(t).shape, t
        assert torch.isfinite(scores[t]).all(), t
    for key, value in _state(model).items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("allocation", ["global", "uniform"])
@pytest.mark.parametrize("method", METHODS)
def test_didn_modl_masks_keep_exact_counts(method, allocation, didn_batches):
    model = build_model(DIDN, 0)
    options = {"steps": 3, "log_every": 1} if method == "pun" else {}
    if method == "synflow":
        options = {"iterations": 3}
    masks = find_mask(
        model,
        method,
        DENSITY,
        didn_batches,
        _loss,
        allocation=allocation,
        generator=torch.Generator().manual_seed(1),
        **options,
    )
    numels = {t: model.get_parameter(t).numel() for t in prunable_targets(model)}
    assert sorted(masks) == sorted(numels)
    assert masks.kept == round(DENSITY * sum(numels.values()))
    if allocation == "uniform":
        shapes = {t: tuple(model.get_parameter(t).shape) for t in numels}
        counts = layer_counts(numels, DENSITY, "uniform", shapes)
        for t, mask in masks.items():
            assert int(mask.sum()) == counts[t], t
            assert abs(counts[t] - DENSITY * numels[t]) < 1, t
    if method == "pun":
        history = masks.metadata["pun_history"]
        assert [h["step"] for h in history] == [0, 1, 2]
        for entry in history:
            for key in ("loss", "recon", "kl", "expected_density"):
                assert math.isfinite(entry[key]), (entry["step"], key)
