"""Shared fixtures: tiny configs and data so the suite stays fast on a 2-core CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from punmri.config import RunConfig, load_config
from punmri.data.phantoms import random_ellipses

torch.set_num_threads(1)

TINY = [
    "data.source=phantom",
    "data.image_size=[24,20]",
    "data.max_train_slices=6",
    "data.max_val_slices=2",
    "data.max_test_slices=2",
    "physics.coils=2",
    "model.channels=4",
    "model.depth=3",
    "model.unrolls=2",
    "model.cg_iterations=3",
    "train.steps=6",
    "train.batch_size=2",
    "train.val_every=3",
    "train.warmup_steps=1",
    "evaluate.cs_iterations=5",
    "evaluate.cs_lamda=0.01",
    "evaluate.figure_slices=1",
]


@pytest.fixture
def tiny_config() -> RunConfig:
    """A configuration that trains and evaluates in about a second."""
    return load_config(None, TINY)


@pytest.fixture
def tiny_images() -> np.ndarray:
    """Six 24x20 head-like phantoms (N, H, W) in [0, 1]."""
    rng = np.random.default_rng(0)
    return np.stack([random_ellipses((24, 20), 5, rng) for _ in range(6)]).astype(np.float32)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where CUDA is available (``make test-all`` selects them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
