"""Tests for ``punmri export``: a TorchScript program that runs in a process with only torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from punmri.cli.main import main
from punmri.config import load_config, save_config
from punmri.data.batches import collate
from punmri.data.phantoms import random_ellipses
from punmri.data.simulate import simulate
from punmri.errors import InputError
from punmri.export import ReconstructionProgram, _export_ready, _trace, export_model
from punmri.models import build_model
from punmri.physics import SenseOperator
from punmri.pipeline import load_run_config, load_trained

from .conftest import TINY

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")

#: A dense network, ``random`` pruned at the headline density 0.3 and ``random@0.5``.
RUN = [*TINY, "methods=[dense,random]", "prune.density=0.3", "prune.densities=[0.5]"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    assert main(["train", "--out", str(out), "--no-progress", *RUN]) == 0
    return out


def _inputs(batch: int, coils: int, seed: int = 7) -> tuple[torch.Tensor, ...]:
    """A simulated batch of the tiny run's size (24 x 20) with ``coils`` coils."""
    cfg = load_config(None, [*TINY, f"physics.coils={coils}"])
    rng = np.random.default_rng(seed)
    size = tuple(cfg.data.image_size)
    samples = [simulate(random_ellipses(size, 5, rng), cfg.physics, rng) for _ in range(batch)]
    b = collate(samples)
    return b.kspace, b.maps, b.mask


def _reference(run, method: str, inputs) -> torch.Tensor:
    """The run's network called in this process, as evaluation calls it (fp32, no autograd)."""
    cfg = load_run_config(run)
    spec = next(s for s in _specs(cfg) if s.name == method)
    model = load_trained(cfg, spec, run).model
    kspace, maps, mask = inputs
    with torch.no_grad():
        return model(kspace, SenseOperator(maps, mask))


def _specs(cfg):
    from punmri.pipeline import model_specs

    return model_specs(cfg)


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


#: Run in a fresh interpreter: loads the program with torch alone (importing punmri fails), runs
#: it on the saved inputs and on a wrong-size input, and reports what it saw.
FRESH = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoPunmri(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "punmri" or name.startswith("punmri."):
                raise ImportError("punmri must not be needed to run an exported program")

    sys.meta_path.insert(0, NoPunmri())
    import torch

    extra = {"punmri.json": ""}
    program = torch.jit.load("model.pt", _extra_files=extra)
    kspace, maps, mask = torch.load("inputs.pt")
    with torch.no_grad():
        output = program(kspace, maps, mask)
        torch.save(output, "output.pt")
        # a bool mask, and one mask shared by the batch, give the same images
        same = [
            bool(torch.equal(program(kspace, maps, mask.bool()), output)),
            bool(torch.equal(program(kspace * mask[:1, None], maps, mask[:1]),
                             program(kspace * mask[:1, None], maps, mask[:1].expand_as(mask)))),
        ]
        try:
            program(kspace[..., :-2], maps[..., :-2], mask[..., :-2])
            wrong_size = "accepted"
        except Exception as exc:
            wrong_size = str(exc)
    loaded = sorted(n for n in sys.modules if n == "punmri" or n.startswith("punmri."))
    print(json.dumps({"punmri": loaded, "meta": json.loads(extra["punmri.json"]),
                      "wrong_size": wrong_size, "same": same}))
    """
)


def test_exported_program_runs_with_only_torch(trained_run, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["export", "--run", str(trained_run), "--method", "dense", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out}") and "24x20" in line and "\n" not in line
    # Batch and coil count differ from the traced example's: both are free.
    inputs = _inputs(batch=3, coils=4)
    torch.save(inputs, tmp_path / "inputs.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", FRESH], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["punmri"] == []
    output = torch.load(tmp_path / "output.pt")
    assert output.shape == (3, 24, 20) and output.dtype == torch.complex64
    assert _rel_diff(output, _reference(trained_run, "dense", inputs)) < 1e-5
    # The settings: inside the program, beside it, and returned are the same.
    meta = seen["meta"]
    assert meta == json.loads((tmp_path / "model.pt.json").read_text())
    assert meta["method"] == "dense" and meta["seed"] == 0 and meta["image_size"] == [24, 20]
    assert meta["physics"]["coils"] == 2 and meta["physics"]["acceleration"] == 4.0
    model = meta["model"]
    assert (model["unrolls"], model["cg_iterations"], model["channels"]) == (2, 3, 4)
    assert model["denoiser"] == "resnet" and model["lam"] > 0 and not model["pruned"]
    assert meta["inputs"]["kspace"] == {"shape": ["B", "C", 24, 20], "dtype": "complex64"}
    assert "99th percentile" in meta["scale"] and "fft2c" in meta["scale"]
    # Another image size is refused with the size the program was traced at.
    assert "24 x 20" in seen["wrong_size"]
    assert seen["same"] == [True, True]


def test_pruned_model_exports_with_its_masks_folded(trained_run, tmp_path):
    out = tmp_path / "pruned.pt"
    info = export_model(trained_run, "random@0.5", None, out)
    assert info["method"] == "random@0.5" and info["density"] == 0.5 and info["model"]["pruned"]
    program = torch.jit.load(str(out))
    assert not any("parametrizations" in name for name, _ in program.named_parameters())
    convs = [p for name, p in program.named_parameters() if p.ndim == 4]
    kept = sum(int((p != 0).sum()) for p in convs) / sum(p.numel() for p in convs)
    assert 0.3 < kept < 0.7
    inputs = _inputs(batch=2, coils=2)
    with torch.no_grad():
        output = program(*inputs)
    assert _rel_diff(output, _reference(trained_run, "random@0.5", inputs)) < 1e-5
    # ``METHOD@DENSITY`` names the headline-density network too.
    assert export_model(trained_run, "random@0.3", 0, tmp_path / "r.pt")["method"] == "random"


def test_refuses_to_overwrite_without_the_flag(trained_run, tmp_path, capsys):
    out = tmp_path / "model.pt"
    out.write_bytes(b"keep me")
    args = ["export", "--run", str(trained_run), "--method", "dense", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("punmri: error: ") and "--overwrite" in err and err.count("\n") == 1
    assert out.read_bytes() == b"keep me" and not (tmp_path / "model.pt.json").exists()
    assert main([*args, "--overwrite"]) == 0
    assert torch.jit.load(str(out)) is not None and (tmp_path / "model.pt.json").is_file()
    # A leftover settings file is not replaced silently either.
    out.unlink()
    assert main(args) == 2 and "model.pt.json exists" in capsys.readouterr().err


def test_unknown_method_seed_or_run_are_clear_errors(trained_run, tmp_path, capsys):
    out = tmp_path / "model.pt"
    base = ["export", "--run", str(trained_run), "--out", str(out)]
    assert main([*base, "--method", "pun"]) == 2
    err = capsys.readouterr().err
    assert "'pun' was not trained" in err and "'dense', 'random', 'random@0.5'" in err
    assert main([*base, "--method", "dense", "--seed", "5"]) == 2
    assert "seeds [0]" in capsys.readouterr().err
    missing = ["export", "--run", str(tmp_path / "nowhere"), "--method", "dense"]
    assert main([*missing, "--out", str(out)]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_unfinished_model_is_refused(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "models" / "random" / "seed0" / "costs.json").unlink()
    with pytest.raises(InputError, match="has not finished training"):
        export_model(run, "random", 0, tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()


def test_implicit_data_consistency_traces_as_the_plain_solve():
    """A Python autograd function cannot be traced: the export uses the plain CG solve, equal in
    inference."""
    cfg = load_config(None, [*TINY, "model.dc_backward=implicit"])
    model = build_model(cfg.model, seed=0).eval()
    inputs = _inputs(batch=2, coils=2)
    with torch.no_grad():
        reference = model(inputs[0], SenseOperator(inputs[1], inputs[2]))
    program = ReconstructionProgram(_export_ready(model), (24, 20))
    traced, difference = _trace(program, [_inputs(1, 2, seed=1), _inputs(2, 3, seed=2)])
    assert difference < 1e-5
    with torch.no_grad():
        assert _rel_diff(traced(*inputs), reference) < 1e-5
    assert model.dc_backward == "implicit"  # the network itself is unchanged


def test_fastmri_run_needs_a_shape(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    measured = ["data.source=fastmri", f"data.root={tmp_path}"]
    save_config(load_config(run / "config.yaml", measured), run / "config.yaml")
    with pytest.raises(InputError, match="--shape H W"):
        export_model(run, "dense", 0, tmp_path / "model.pt")
