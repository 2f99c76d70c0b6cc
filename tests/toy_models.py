"""Toy models shared by the pruning tests."""

from __future__ import annotations

import torch
from torch import nn


class ConvNet(nn.Module):
    """3-layer conv net on 1x8x8 inputs, with BatchNorm (buffers) and a scalar ``lam``."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = nn.Conv2d(4, 1, 1)
        self.lam = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.c1(x)))
        return x + self.lam * self.c3(torch.relu(self.c2(h)))
