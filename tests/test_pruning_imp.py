"""IMP with rewinding inside the pipeline: a missing rewind checkpoint is an error, never a silent
rewind to the initial weights."""

from __future__ import annotations

import pytest

from punmri.config import load_config
from punmri.errors import InputError
from punmri.methods import MethodContext, run_method
from punmri.pipeline import load_run_data
from punmri.specs import ModelSpec

from .conftest import TINY

REWIND = [
    *TINY,
    "methods=[imp]",
    "prune.density=0.5",
    "prune.imp_rounds=2",
    "prune.imp_round_steps=2",
    "prune.imp_rewind_step=1",
    "train.steps=2",
    "train.val_every=2",
]


def _context(tmp_path, overrides: list[str]) -> tuple[MethodContext, ModelSpec]:
    cfg = load_config(None, overrides)
    return MethodContext(cfg, tmp_path / "run", load_run_data(cfg), False), ModelSpec(
        "imp", 0, 0.5, 0.5
    )


def test_imp_missing_rewind_checkpoint_names_the_file_and_the_fix(tmp_path):
    ctx, spec = _context(tmp_path, REWIND)
    run_method(ctx, spec)
    directory = spec.directory(ctx.run_dir)
    rewind = directory / "rewind.pt"
    assert rewind.is_file()
    rewind.unlink()  # e.g. cleaned up by hand; round0 stays complete and is not trained again
    with pytest.raises(InputError) as err:
        run_method(ctx, spec)
    message = str(err.value)
    assert str(rewind) in message
    assert "Delete the IMP model directory" in message and str(directory) in message


def test_imp_rewind_step_past_the_round_is_refused_before_training(tmp_path):
    ctx, spec = _context(tmp_path, [*REWIND, "prune.imp_rewind_step=3"])
    with pytest.raises(InputError, match="imp_rewind_step=3 is past the 2 training steps"):
        run_method(ctx, spec)
    assert not (spec.directory(ctx.run_dir) / "round0").exists()
