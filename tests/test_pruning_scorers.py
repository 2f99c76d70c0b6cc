"""Scorers: hand-computable SNIP/GraSP/SynFlow values, no side effects, complex and tuple inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from punmri.errors import InputError
from punmri.pruning import SCORERS, prunable_targets
from punmri.pruning.scorers import synflow


def _linear_problem():
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 3.0]]))
    x = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])
    y = torch.tensor([[1.0], [0.0]])
    return model, [(x, y)]


def test_snip_hand_computed():
    # out = [7, 1]; L = mean((out - y)^2); dL/dw = (6 [1,0,2] + 1 [0,1,1]) = [6, 1, 13]
    model, data = _linear_problem()
    scores = SCORERS["snip"](model, ["weight"], data, nn.functional.mse_loss, None)
    assert torch.allclose(scores["weight"], torch.tensor([[6.0, 2.0, 39.0]]))
    # gradients are summed over batches before |w * g|
    twice = SCORERS["snip"](model, ["weight"], data * 2, nn.functional.mse_loss, None)
    assert torch.allclose(twice["weight"], 2 * scores["weight"])
    assert model.weight.grad is None


def test_grasp_hand_computed():
    # H = (2/n) X^T X = [[1,0,2],[0,1,1],[2,1,5]], g = [6, 1, 13] -> Hg = [32, 14, 78]
    # score = w * Hg
    model, data = _linear_problem()
    scores = SCORERS["grasp"](model, ["weight"], data, nn.functional.mse_loss, None)
    assert torch.allclose(scores["weight"], torch.tensor([[32.0, -28.0, 234.0]]))


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.relu(self.bn(self.c1(x))))


def _conv_data():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g))]


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_scorers_leave_model_untouched_and_are_finite(name):
    torch.manual_seed(0)
    model = ConvNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    targets = prunable_targets(model)
    gen = torch.Generator().manual_seed(0)
    scores = SCORERS[name](model, targets, _conv_data(), nn.functional.mse_loss, gen)
    assert set(scores) == set(targets)
    for t in targets:
        assert scores[t].shape == model.get_parameter(t).shape
        assert not torch.isnan(scores[t]).any()
        if name != "synflow":
            assert torch.isfinite(scores[t]).all()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_synflow_hand_computed_single_round():
    model = nn.Sequential(nn.Linear(2, 3, bias=False), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.0]]))
        model[1].weight.copy_(torch.tensor([[2.0, -1.0, 3.0]]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = synflow.score(
        model, ["0.weight", "1.weight"], None, None, None, iterations=1, input_shape=(1, 2)
    )
    # R = 1^T |W2| |W1| 1: dR/dW1[j, i] = |W2|[j]; dR/dW2[j] = (|W1| 1)[j]
    w1, w2 = before["0.weight"].abs(), before["1.weight"].abs()
    expected1 = w1 * w2.t().double()
    expected2 = w2 * w1.sum(1).double()
    assert torch.allclose(scores["0.weight"], expected1.double())
    assert torch.allclose(scores["1.weight"], expected2.double())
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)
    assert model[0].weight.dtype == torch.float32


def test_synflow_iterative_marks_earlier_pruned_as_minus_inf():
    torch.manual_seed(0)
    model = ConvNet()
    targets = prunable_targets(model)
    scores = synflow.score(
        model, targets, None, None, None, density=0.2, iterations=4, input_shape=(1, 1, 8, 8)
    )
    total = sum(s.numel() for s in scores.values())
    alive = sum(int(torch.isfinite(s).sum()) for s in scores.values())
    assert alive == round(total * 0.2 ** (3 / 4))


class ComplexNet(nn.Module):
    """Complex image in (with an operator object), complex image out, real conv in the middle."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, y: torch.Tensor, op: object) -> torch.Tensor:
        x = op.adjoint(y)
        h = self.conv(torch.cat([x.real, x.imag], dim=1))
        return torch.complex(h[:, :1], h[:, 1:])


class ScaleOp:
    calls_moved: list[bool] = []  # test bookkeeping

    def __init__(self, moved: bool = False) -> None:
        self.scale = torch.full((1, 1, 8, 8), 0.5 + 0.5j, dtype=torch.complex64)
        self.moved = moved

    def to(self, device: torch.device) -> ScaleOp:
        return ScaleOp(moved=True)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        ScaleOp.calls_moved.append(self.moved)
        return y * self.scale.conj()


def test_synflow_with_complex_tuple_inputs_from_data():
    model = ComplexNet()
    y = torch.randn(2, 1, 8, 8, dtype=torch.complex64)
    data = [((y, ScaleOp()), torch.zeros(2, 1, 8, 8, dtype=torch.complex64))]
    scores = synflow.score(model, ["conv.weight"], data, None, None, iterations=2, density=0.5)
    assert scores["conv.weight"].shape == (2, 2, 3, 3)
    assert not torch.isnan(scores["conv.weight"]).any()


def test_snip_with_complex_tuple_inputs():
    ScaleOp.calls_moved.clear()
    model = ComplexNet()
    y = torch.randn(2, 1, 8, 8, dtype=torch.complex64)
    data = [((y, ScaleOp()), torch.zeros(2, 1, 8, 8, dtype=torch.complex64))]

    def loss(out, tgt):
        return (out - tgt).abs().pow(2).mean()

    scores = SCORERS["snip"](model, ["conv.weight"], data, loss, None)
    assert ScaleOp.calls_moved == [True]  # the operator went through .to(device) like tensors
    assert torch.isfinite(scores["conv.weight"]).all() and scores["conv.weight"].sum() > 0


def test_synflow_needs_some_shape():
    with pytest.raises(InputError, match="input_shape"):
        synflow.score(ConvNet(), ["c1.weight"], None, None, None)


def test_random_scores_follow_generator():
    model = ConvNet()
    t = prunable_targets(model)
    a = SCORERS["random"](model, t, None, None, torch.Generator().manual_seed(1))
    b = SCORERS["random"](model, t[::-1], None, None, torch.Generator().manual_seed(1))
    c = SCORERS["random"](model, t, None, None, torch.Generator().manual_seed(2))
    assert all(torch.equal(a[n], b[n]) for n in t)
    assert not torch.equal(a["c1.weight"], c["c1.weight"])
