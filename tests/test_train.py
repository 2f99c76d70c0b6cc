"""Training loop: determinism, exact resume, early stopping, done-skip, losses."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from punmri.data.batches import TrainingStream, batches, fixed_samples
from punmri.errors import InputError
from punmri.models import build_model
from punmri.train import TrainHooks, get_loss, ssim_torch, train


def _setup(cfg, images):
    names = [str(i) for i in range(len(images))]
    stream = TrainingStream.simulated(images, names, cfg.physics, 0, cfg.train.augment)
    val = batches(fixed_samples(images[:2], names[:2], cfg.physics, 7, "val"), 2)
    return stream, val


def test_training_stream_is_pure_function_of_step(tiny_config, tiny_images):
    s1, _ = _setup(tiny_config, tiny_images)
    s2, _ = _setup(tiny_config, tiny_images)
    a, b = s1.batch(5, 2), s2.batch(5, 2)
    assert torch.equal(a.kspace, b.kspace) and a.names == b.names
    assert not torch.equal(s1.batch(4, 2).kspace, a.kspace)


def test_fixed_physics_repeats_across_epochs(tiny_config, tiny_images):
    cfg = dataclasses.replace(tiny_config.physics, fresh=False)
    stream = TrainingStream.simulated(
        tiny_images, [str(i) for i in range(6)], cfg, 0, augment=False
    )
    a, b = stream.sample(3, epoch=0), stream.sample(3, epoch=4)
    assert (a.mask == b.mask).all() and (a.kspace == b.kspace).all()
    fresh = TrainingStream.simulated(
        tiny_images, [str(i) for i in range(6)], tiny_config.physics, 0, False
    )
    assert not (fresh.sample(3, 0).kspace == fresh.sample(3, 4).kspace).all()


def test_resume_equals_uninterrupted(tiny_config, tiny_images, tmp_path):
    stream, val = _setup(tiny_config, tiny_images)
    full = build_model(tiny_config.model, 0)
    r_full = train(full, stream, val, tiny_config.train, tmp_path / "full", progress=False)
    part = build_model(tiny_config.model, 0)
    train(
        part,
        stream,
        val,
        tiny_config.train,
        tmp_path / "part",
        progress=False,
        stop_at=4,
        checkpoint_every=1,
    )
    resumed = build_model(tiny_config.model, 0)
    r_res = train(resumed, stream, val, tiny_config.train, tmp_path / "part", progress=False)
    for (n, p), (_, q) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    assert r_res.steps == r_full.steps == tiny_config.train.steps
    assert r_res.best_val_psnr == r_full.best_val_psnr
    assert (tmp_path / "full" / "metrics.jsonl").read_text() == (
        tmp_path / "part" / "metrics.jsonl"
    ).read_text()


def test_finished_run_is_skipped_and_loads_weights(tiny_config, tiny_images, tmp_path):
    stream, val = _setup(tiny_config, tiny_images)
    model = build_model(tiny_config.model, 0)
    r1 = train(model, stream, val, tiny_config.train, tmp_path, progress=False)
    again = build_model(tiny_config.model, 0)
    r2 = train(again, stream, val, tiny_config.train, tmp_path, progress=False)
    assert r2.wall_s == r1.wall_s
    for p, q in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)


def test_early_stopping(tiny_config, tiny_images, tmp_path):
    cfg = dataclasses.replace(
        tiny_config.train, steps=40, val_every=1, patience=1, lr=0.5, grad_clip=0.0
    )
    stream, val = _setup(tiny_config, tiny_images)
    result = train(build_model(tiny_config.model, 0), stream, val, cfg, tmp_path, progress=False)
    assert result.stopped_early and result.steps < 40


def test_losses():
    x = torch.randn(2, 16, 16, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    for name in ("l1", "mse", "ssim-l1"):
        assert get_loss(name)(x, x) == pytest.approx(0.0, abs=1e-5)
    assert ssim_torch(x, x) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InputError, match="unknown loss"):
        get_loss("huber")


def _masked_model(cfg, seed=0):
    from punmri.pruning import apply, find_mask, prunable_targets, register_optimizer_hook

    model = build_model(cfg.model, seed)
    targets = prunable_targets(model)
    masks = find_mask(
        model, "random", 0.3, targets=targets, generator=torch.Generator().manual_seed(1)
    )
    apply(model, masks)
    return model, masks, register_optimizer_hook


def test_masked_checkpoints_load_into_a_plain_model(tiny_config, tiny_images, tmp_path):
    from punmri.train import load_weights

    stream, val = _setup(tiny_config, tiny_images)
    model, masks, hook = _masked_model(tiny_config)
    hooks = TrainHooks(on_optimizer=lambda opt: hook(opt, model))
    train(model, stream, val, tiny_config.train, tmp_path, progress=False, hooks=hooks)
    for which in ("best", "last"):
        saved = torch.load(tmp_path / f"{which}.pt", weights_only=False)
        assert not any("parametrizations" in k for k in saved["model"]), which
        assert set(saved["masks"]) == set(masks)
        plain = build_model(tiny_config.model, 5)
        plain.load_state_dict(saved["model"], strict=True)  # a plain, unpruned model
        for name, mask in masks.items():
            weight = dict(plain.named_parameters())[name]
            assert (weight[~mask] == 0).all() and (weight[mask] != 0).any(), name
    loaded = load_weights(build_model(tiny_config.model, 5), tmp_path, "best")
    reference = load_weights(_masked_model(tiny_config, seed=5)[0], tmp_path, "best")
    batch = val[0]
    with torch.no_grad():
        a = loaded.eval()(batch.kspace, batch.operator())
        b = reference.eval()(batch.kspace, batch.operator())
    assert torch.equal(a, b)


def test_masked_resume_equals_uninterrupted(tiny_config, tiny_images, tmp_path):
    stream, val = _setup(tiny_config, tiny_images)

    def run(directory, **kwargs):
        model, _, hook = _masked_model(tiny_config)
        hooks = TrainHooks(on_optimizer=lambda opt: hook(opt, model))
        train(
            model, stream, val, tiny_config.train, directory, progress=False, hooks=hooks, **kwargs
        )
        return model

    full = run(tmp_path / "full")
    run(tmp_path / "part", stop_at=4, checkpoint_every=1)
    resumed = run(tmp_path / "part")
    for (n, p), (_, q) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(p, q), n


def test_checkpoint_with_another_mask_is_refused(tiny_config, tiny_images, tmp_path):
    from punmri.pruning import apply, find_mask, prunable_targets
    from punmri.train import load_weights

    stream, val = _setup(tiny_config, tiny_images)
    model, _, hook = _masked_model(tiny_config)
    hooks = TrainHooks(on_optimizer=lambda opt: hook(opt, model))
    train(model, stream, val, tiny_config.train, tmp_path, progress=False, hooks=hooks)
    other = build_model(tiny_config.model, 0)
    gen = torch.Generator().manual_seed(99)
    apply(other, find_mask(other, "random", 0.3, targets=prunable_targets(other), generator=gen))
    with pytest.raises(InputError, match="another mask"):
        load_weights(other, tmp_path, "best")


def test_workers_prepare_the_same_batches(tiny_config, tiny_images):
    stream, _ = _setup(tiny_config, tiny_images)
    inline = list(stream.loader(2, 7, 3, workers=0))
    ahead = list(stream.loader(2, 7, 3, workers=2))
    assert len(inline) == len(ahead) == 5
    for a, b in zip(inline, ahead, strict=True):
        assert a.names == b.names
        for x, y in ((a.kspace, b.kspace), (a.mask, b.mask), (a.target, b.target)):
            assert torch.equal(x, y)
    assert all(torch.equal(a.kspace, stream.batch(2 + i, 3).kspace) for i, a in enumerate(inline))


def test_training_with_workers_equals_training_without(tiny_config, tiny_images, tmp_path):
    stream, val = _setup(tiny_config, tiny_images)
    plain = build_model(tiny_config.model, 0)
    train(plain, stream, val, tiny_config.train, tmp_path / "a", progress=False)
    ahead = build_model(tiny_config.model, 0)
    cfg = dataclasses.replace(tiny_config.train, workers=2)
    train(ahead, stream, val, cfg, tmp_path / "b", progress=False)
    for (n, p), (_, q) in zip(plain.state_dict().items(), ahead.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
