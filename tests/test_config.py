"""Configuration: YAML + overrides, validation with actionable errors, round trip."""

from __future__ import annotations

import pytest
import torch

from punmri.config import RunConfig, load_config, save_config, to_dict
from punmri.errors import InputError


def test_overrides_convert_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 7\nphysics:\n  acceleration: 6\n")
    cfg = load_config(path, ["data.image_size=[32,40]", "physics.snr_db=null", "seeds=[1,2]"])
    assert cfg.train.steps == 7 and cfg.physics.acceleration == 6.0
    assert cfg.data.image_size == (32, 40) and cfg.physics.snr_db is None
    assert cfg.seeds == (1, 2)


def test_round_trip(tmp_path):
    cfg = load_config(None, ["model.channels=8", "methods=[dense]"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert to_dict(RunConfig()) == to_dict(load_config(None))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.stepz=1", "unknown config key train.stepz"),
        ("model.denoiser=vit", "model.denoiser: 'vit' is not one of"),
        ("train.steps=abc", "train.steps: expected an integer"),
        ("train.augment=maybe", "train.augment: expected true/false"),
        ("data.image_size=[1,2,3]", "data.image_size: expected 2 values"),
        ("nonsense", "must look like section.key=value"),
        ("train.steps=0", "train.steps: expected an integer >= 1"),
        ("physics.acceleration=0.5", "physics.acceleration: expected a factor >= 1"),
        ("prune.density=0", "prune.density/densities: expected fractions in"),
        ("model.lam=-1", "model.lam: expected a weight > 0"),
        ("evaluate.suites=[{name: id, physic: {}}]", "unknown config key evaluate.suites.physic"),
    ],
)
def test_bad_values_are_named(override, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        load_config(None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(InputError, match="mapping"):
        load_config(scalar)


def test_resnet_without_batchnorm():
    from torch import nn

    from punmri.models import build_model

    def norms(cfg):
        return sum(isinstance(m, nn.BatchNorm2d) for m in build_model(cfg.model, 0).modules())

    assert norms(load_config(None, ["model.depth=3"])) == 0  # default norm: none (measured)
    assert norms(load_config(None, ["model.depth=3", "model.batchnorm=true"])) == 2
    assert norms(load_config(None, ["model.depth=3", "model.norm=batch"])) == 2
    assert norms(load_config(None, ["model.depth=3", "model.batchnorm=false"])) == 0
    # harmless for the denoisers without BatchNorm: accepted, the same network either way
    for denoiser in ("unet", "didn"):
        base = ["model.denoiser=" + denoiser, "model.channels=4", "model.depth=2"]
        with_bn = build_model(load_config(None, base).model, 0)
        without = build_model(load_config(None, [*base, "model.batchnorm=false"]).model, 0)
        assert norms(load_config(None, [*base, "model.batchnorm=false"])) == 0
        for (name, a), (_, b) in zip(
            with_bn.state_dict().items(), without.state_dict().items(), strict=True
        ):
            assert torch.equal(a, b), name


def test_negative_cg_tol_is_refused():
    with pytest.raises(InputError, match="evaluate.cg_tol"):
        load_config(None, ["evaluate.cg_tol=-1e-3"])


def test_method_seeds_give_some_methods_more_seeds(tmp_path):
    over = [
        "methods=[dense,pun,snip]",
        "seeds=[0,1,2]",
        "method_seeds={dense: [0,1,2,3,4], pun: 4}",
    ]
    cfg = load_config(None, over)
    assert cfg.seeds_of("dense") == (0, 1, 2, 3, 4) and cfg.seeds_of("pun") == (4,)
    assert cfg.seeds_of("snip") == (0, 1, 2) and cfg.all_seeds == (0, 1, 2, 3, 4)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert load_config(None).method_seeds == {} and load_config(None).all_seeds == (0,)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("method_seeds={pnu: [1]}", "method_seeds: expected only methods the run trains"),
        ("method_seeds={pun: []}", "method_seeds.pun: expected a non-empty list of distinct"),
        ("method_seeds={pun: [1, 1]}", "method_seeds.pun: expected a non-empty list of distinct"),
        ("method_seeds={pun: [a]}", "method_seeds.pun: expected an integer"),
        ("method_seeds={pun: [0, 7]}", "method_seeds.pun: expected seeds dense trains too"),
        ("method_seeds={dense: [1]}", "seeds: expected seeds dense trains too .* pun has \\[0\\]"),
        ("evaluate.checkpoints=[final]", "evaluate.checkpoints: expected 'best'"),
        ("evaluate.checkpoints=[best, best]", "evaluate.checkpoints: expected 'best'"),
        ("evaluate.checkpoints=[best, last]", "evaluate.checkpoints: 'last' is not one of"),
    ],
)
def test_bad_method_seeds_and_checkpoints_are_named(override, message):
    with pytest.raises(InputError, match=message):
        load_config(None, ["methods=[dense,pun]", override])
