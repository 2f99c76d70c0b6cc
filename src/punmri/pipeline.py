"""The main job: data -> (prune) -> train -> evaluate -> report, as resumable stages.

Run directory layout::

    RUN/config.yaml                 resolved configuration (a different config is refused)
    RUN/models/NAME/seedS/train/    checkpoints, metrics.jsonl, done.json of each trained model
                                    (tested at best.pt as NAME; with evaluate.checkpoints
                                    [best, final] also at last.pt as NAME~final)
    RUN/eval/cs_lambda.json         CS-L1 weight tuned on validation slices
    RUN/eval/slices.csv             per-slice metrics of every method on every suite
    RUN/metrics.json                aggregate metrics (schema in docs/OUTPUTS.md)
    RUN/report.md, report.html      the report, figures in RUN/figures/

Each stage whose output exists is skipped, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import yaml
from torch import nn

from . import __version__
from .config import RunConfig, load_config, to_dict
from .data.anatomy import training_splits
from .data.batches import SimulatedSlices, collate, rank_share
from .data.measured import (
    LazySamples,
    MeasuredSlices,
    check_root,
    measured_dataset,
    prepared_root,
)
from .errors import InputError
from .evaluate.baselines import tune_cs_lambda
from .evaluate.checkpoints import CHECKPOINT_FILES, checkpoint_name
from .evaluate.runner import ReconFn, baseline_recon, evaluate_methods, model_recon
from .evaluate.shared import evaluate_shared
from .evaluate.shifts import build_measured_suites, build_suites
from .evaluate.suites import Suite, simulated_suite
from .evaluate.summary import summarize
from .evaluate.tables import SliceRecord, aggregate, read_slice_csv, write_slice_csv
from .io import write_json_atomic
from .methods import RECIPES, MethodContext, run_method, trained_architecture, uses_channel_density
from .pruning import Masks, apply
from .report import write_report
from .rundir import (
    EVALUATION_IRRELEVANT_KEYS,
    load_run_config,
    prepare_run_dir,
    without,
)
from .specs import ModelSpec, RunData, TrainedModel
from .stages import fingerprint, mark_stage_done, source_stamp, stage_is_current
from .train import TrainResult, load_weights, resolve_device
from .train.distributed import is_main, main_first, on_main, world_size

CS_LAMBDA_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
#: Marker of a finished evaluation stage (the fingerprint of its inputs), written last.
EVALUATION_MARKER = "eval/done.json"


def model_specs(cfg: RunConfig) -> list[ModelSpec]:
    """Every (method, density, seed) network the config asks for, in config order; a method
    trains the seeds of its ``method_seeds`` entry, else ``seeds`` (:meth:`RunConfig.seeds_of`).

    ``dense`` has no density; every other method, ``dense-narrow`` included (its width matches the
    kept weights at its density), is trained at ``prune.density`` and at ``prune.densities`` when
    ``prune.sweep_methods`` is empty or names it; the channel-level methods (and ``dense-narrow``
    with ``prune.narrow_match: channels``) at ``prune.channel_density(ies)`` instead."""
    unknown = [m for m in cfg.methods if m not in RECIPES]
    if unknown:
        raise InputError(
            f"methods: unknown method {unknown[0]!r}; available: {', '.join(sorted(RECIPES))}"
        )
    outside = [m for m in cfg.prune.sweep_methods if m not in cfg.methods]
    if outside:
        raise InputError(
            f"prune.sweep_methods: {outside[0]!r} is not in methods {list(cfg.methods)}; "
            "list only methods the run trains"
        )
    specs = []
    for method in cfg.methods:
        if uses_channel_density(cfg, method):
            headline = cfg.prune.channel_density
            sweep = list(dict.fromkeys([headline, *cfg.prune.channel_densities]))
        else:
            headline = cfg.prune.density
            sweep = list(dict.fromkeys([headline, *cfg.prune.densities]))
        swept = not cfg.prune.sweep_methods or method in cfg.prune.sweep_methods
        densities = [None] if method == "dense" else sweep if swept else [headline]
        for density in densities:
            specs += [ModelSpec(method, seed, density, headline) for seed in cfg.seeds_of(method)]
    return specs


def load_run_data(cfg: RunConfig, extra_sources: Sequence[str] = ()) -> RunData:
    """Splits, validation batches and the test suites: ``evaluate.suites`` (``id`` first), then
    one per source in ``data.paths`` and ``extra_sources``."""
    if cfg.data.source == "fastmri":
        return _measured_run_data(cfg, extra_sources)
    splits = training_splits(cfg.data)
    val = simulated_suite("val", splits["val"], cfg.physics, cfg.evaluate.test_seed)
    suites = build_suites(cfg, splits, extra_sources)
    train = splits["train"]

    def train_source(seed: int) -> SimulatedSlices:
        return SimulatedSlices(train.images, train.names, cfg.physics, seed, cfg.train.augment)

    return RunData(splits, val, suites, cfg.train.batch_size, train_source)


def _measured_run_data(cfg: RunConfig, extra_sources: Sequence[str]) -> RunData:
    """The data of a ``data.source: fastmri`` run: ``data.root``'s train/val/test folders,
    prepared on first use, read lazily at native resolution."""
    root = check_root(cfg.data)
    cache = prepared_root(root, cfg.data.cache)
    seed = cfg.evaluate.test_seed
    val_data = measured_dataset(root, cache, "val", cfg.physics, seed, fixed_masks=True)
    val_samples = list(LazySamples(val_data, cfg.data.max_val_slices))
    val = Suite("val", val_samples, cfg.physics, "validation volumes")
    suites = build_measured_suites(cfg, cache, extra_sources)

    def train_source(seed: int) -> MeasuredSlices:
        data = measured_dataset(root, cache, "train", cfg.physics, seed, fixed_masks=False)
        return MeasuredSlices(data, cfg.physics.fresh)

    return RunData({}, val, suites, cfg.train.batch_size, train_source)


def train_spec(
    cfg: RunConfig, spec: ModelSpec, data: RunData, run_dir: Path, progress: bool
) -> TrainedModel:
    """Obtain the mask (if any) and train one network, or load it when finished."""
    out = run_method(MethodContext(cfg, run_dir, data, progress), spec)
    return TrainedModel(spec, out.model, out.result, out.costs, out.masks)


def cs_lambda(cfg: RunConfig, data: RunData, run_dir: Path) -> float:
    """The CS-L1 weight: ``evaluate.cs_lamda`` or the best of a grid on validation slices."""
    if cfg.evaluate.cs_lamda > 0:
        return cfg.evaluate.cs_lamda
    path = run_dir / "eval" / "cs_lambda.json"
    if path.is_file():
        return float(yaml.safe_load(path.read_text())["lamda"])
    val = collate(data.val.samples[:4])
    best, scores = tune_cs_lambda(
        val.kspace, val.maps, val.mask, val.target, CS_LAMBDA_GRID, cfg.evaluate.cs_iterations
    )
    write_json_atomic(path, {"lamda": best, "psnr": {str(k): v for k, v in scores.items()}})
    return best


def seed_method_name(name: str, seed: int, seeds: Sequence[int]) -> str:
    """Per-seed method key used in slice records (plain name when the run has one seed: pass
    :attr:`RunConfig.all_seeds` as ``seeds``)."""
    return name if len(seeds) == 1 else f"{name}#s{seed}"


def load_trained(
    cfg: RunConfig, spec: ModelSpec, run_dir: Path, checkpoint: str = "best"
) -> TrainedModel:
    """A finished model of a run directory (refuses unfinished training), with the weights of
    ``checkpoint`` (``best``: best validation PSNR; ``final``: the last training step)."""
    directory = spec.directory(run_dir)
    if not (directory / "costs.json").is_file():
        raise InputError(
            f"model {spec.name} (seed {spec.seed}) in {run_dir} has not finished training; "
            "finish it with `punmri run` or `punmri train` on the same config first"
        )
    model = trained_architecture(cfg, spec, directory)
    masks = Masks.load(directory / "mask.pt") if (directory / "mask.pt").is_file() else None
    if masks is not None:
        apply(model, masks)
    load_weights(model, directory / "train", CHECKPOINT_FILES[checkpoint])
    result = TrainResult(**json.loads((directory / "train" / "done.json").read_text()))
    costs = json.loads((directory / "costs.json").read_text())
    return TrainedModel(spec, model.eval(), result, costs, masks)


def train_all(
    cfg: RunConfig, run_dir: Path, data: RunData, progress: bool = True
) -> list[TrainedModel]:
    """Train every configured network (finished ones are loaded, unfinished ones resumed)."""
    return [train_spec(cfg, spec, data, run_dir, progress) for spec in model_specs(cfg)]


def other_checkpoints(
    cfg: RunConfig,
    models_dir: Path,
    specs: Sequence[ModelSpec],
    checkpoints: Sequence[str] | None = None,
) -> dict[str, nn.Module]:
    """Every network of ``specs`` (trained in ``models_dir``) at each checkpoint of
    ``checkpoints`` (default ``evaluate.checkpoints``) other than ``best``, keyed by the name
    its slice records carry (``dense~final#s0``; :mod:`punmri.evaluate.checkpoints`)."""
    out: dict[str, nn.Module] = {}
    for checkpoint in checkpoints or cfg.evaluate.checkpoints:
        if checkpoint == "best":
            continue
        for spec in specs:
            name = checkpoint_name(spec.name, checkpoint)
            key = seed_method_name(name, spec.seed, cfg.all_seeds)
            out[key] = load_trained(cfg, spec, models_dir, checkpoint).model
    return out


def _recons(
    cfg: RunConfig,
    out_dir: Path,
    data: RunData,
    trained: Sequence[TrainedModel],
    others: Mapping[str, nn.Module] | None = None,
) -> dict[str, ReconFn]:
    """Reconstruction functions of the baselines, every trained model (per seed) and the
    ``others`` (:func:`other_checkpoints`)."""
    device = resolve_device(cfg.train.device)  # checked: no silent fallback to the CPU
    recons: dict[str, ReconFn] = {}
    for name in cfg.evaluate.baselines:
        lam = on_main(lambda: cs_lambda(cfg, data, out_dir)) if name == "cs-l1" else 0.0
        recons[name] = baseline_recon(name, lam, cfg.evaluate.cs_iterations)
    models = {seed_method_name(t.spec.name, t.spec.seed, cfg.all_seeds): t.model for t in trained}
    for key, model in {**models, **(others or {})}.items():
        recons[key] = model_recon(model, device, cfg.evaluate.cg_tol, cfg.train.precision)
    return recons


def evaluation_fingerprint(
    cfg: RunConfig,
    models_dir: Path,
    specs: Sequence[ModelSpec],
    sources: Sequence[str] = (),
    reused: Sequence[Path] = (),
) -> str | None:
    """Digest of everything evaluation depends on: the config (less name, device and threads;
    ``evaluate.checkpoints`` included), every network's weights (``best.pt``, and ``last.pt``
    when the final checkpoints are tested), mask, training record and costs (from
    ``models_dir``), the test sources outside the run (size and modification time) and the
    record files it ``reused``; ``None`` while a network is unfinished."""
    files: list[Path] = [p for p in reused if p.is_file()]
    for spec in specs:
        directory = spec.directory(models_dir)
        if not (directory / "costs.json").is_file():
            return None
        files += [directory / "costs.json", directory / "train" / "done.json"]
        files += [
            directory / "train" / f"{CHECKPOINT_FILES[c]}.pt" for c in cfg.evaluate.checkpoints
        ]
        files += [directory / "mask.pt"] if (directory / "mask.pt").is_file() else []
    settings = {
        "config": without(to_dict(cfg), EVALUATION_IRRELEVANT_KEYS),
        "sources": [source_stamp(p) for p in [*cfg.data.paths, *sources]],
        "models": [f"{spec.name}#s{spec.seed}" for spec in specs],
        "punmri": __version__,
    }
    return fingerprint(settings, files)


def finished_evaluation(out_dir: Path, digest: str | None) -> dict | None:
    """The metrics of ``out_dir`` when its evaluation stage is current for ``digest``, else None."""
    outputs = [out_dir / "metrics.json", out_dir / "eval" / "slices.csv", out_dir / "report.md"]
    if digest is None or not stage_is_current(out_dir / EVALUATION_MARKER, digest, outputs):
        return None
    return json.loads((out_dir / "metrics.json").read_text())


def evaluate_and_report(
    cfg: RunConfig,
    out_dir: Path,
    data: RunData,
    trained: Sequence[TrainedModel],
    progress: bool = True,
    started: float | None = None,
    digest: str | None = None,
    cached: tuple[Sequence[SliceRecord], Sequence[SliceRecord]] = ((), ()),
    others: Mapping[str, nn.Module] | None = None,
) -> dict:
    """Score baselines and trained models on every suite; write slices.csv, metrics.json and the
    report into ``out_dir``; return the metrics.

    ``cached`` holds slice and volume records already computed (by the trained run, for
    ``punmri eval``): their suites are not evaluated again. ``others`` are the networks at the
    checkpoints of ``evaluate.checkpoints`` other than ``best`` (:func:`other_checkpoints`).

    With ``digest`` (:func:`evaluation_fingerprint`) the stage is skipped when ``out_dir`` holds
    an evaluation of the same inputs, and marked done after writing. ``wall_s`` in metrics.json
    adds the seconds since ``started`` (a ``time.perf_counter()`` value) to those recorded by
    earlier calls: a recorded cost is never replaced by a later call's.

    In a distributed run every process scores its share of each suite
    (:func:`evaluate_shared`) and the main process writes the outputs; all return its metrics.
    """
    done = on_main(lambda: finished_evaluation(out_dir, digest))
    if done is not None:
        return done
    recons = _recons(cfg, out_dir, data, trained, others)
    reused = {r.suite for r in cached[0]}
    todo = [s for s in data.suites if s.name not in reused]
    records, images, volumes = evaluate_shared(
        recons, todo, progress, keep_images=cfg.evaluate.figure_slices
    )
    records, volumes = [*cached[0], *records], [*cached[1], *volumes]
    written = (records, volumes, images, started, digest)
    return on_main(lambda: _write_evaluation(cfg, out_dir, data, trained, *written))


def _write_evaluation(
    cfg: RunConfig,
    out_dir: Path,
    data: RunData,
    trained: Sequence[TrainedModel],
    records: list[SliceRecord],
    volumes: list[SliceRecord],
    images: dict,
    started: float | None,
    digest: str | None,
) -> dict:
    """The outputs of :func:`evaluate_and_report` from its records: slices.csv (volumes.csv),
    metrics.json, the report and the stage marker; returns the metrics."""
    write_slice_csv(records, out_dir / "eval" / "slices.csv")
    metrics = summarize(records, trained, cfg, data.suites)
    if volumes:  # measured suites: fastMRI's per-volume metrics beside the per-slice ones
        write_slice_csv(volumes, out_dir / "eval" / "volumes.csv")
        metrics["volumes"] = aggregate(volumes)["methods"]
    previous = _recorded_wall_s(out_dir)
    if started is not None:
        metrics["wall_s"] = (previous or 0.0) + time.perf_counter() - started
    elif previous is not None:
        metrics["wall_s"] = previous
    metrics["world_size"] = world_size()  # processes that evaluated
    write_json_atomic(out_dir / "metrics.json", metrics)
    write_report(out_dir, cfg, metrics, data, images, trained)
    if digest is not None:
        mark_stage_done(out_dir / EVALUATION_MARKER, digest)
    return metrics


def _recorded_wall_s(out_dir: Path) -> float | None:
    """``wall_s`` of the metrics.json already in ``out_dir`` (None when there is none)."""
    path = out_dir / "metrics.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("wall_s")
    return None if value is None else float(value)


def run(
    cfg: RunConfig,
    out: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    train_only: bool = False,
    only: Sequence[str] = (),
) -> dict:
    """Run the whole job into ``out`` and return the aggregate metrics (resumable: a run whose
    networks are trained and whose evaluation is current returns its metrics at once and writes
    nothing).

    ``only`` (``METHOD:SEED`` entries, :func:`select_models`) trains just those networks and
    returns without evaluating (as ``train_only`` does for all): jobs of a cluster array train
    the networks of one run directory side by side, and a later plain run evaluates them.

    Under torchrun every process calls this: they train each network together, and the main
    process prepares the directory, decides what is done and writes every file.
    """
    t0 = time.perf_counter()
    specs = model_specs(cfg)  # unknown methods fail before anything is written
    chosen = select_models(specs, only) if only else specs
    rank_share(cfg.train.batch_size, 0, world_size())  # a batch that does not split fails now
    resolve_device(cfg.train.device)  # so does a device this machine does not have
    if only and overwrite:
        raise InputError(
            "--only with --overwrite would delete the networks other jobs train into the same "
            "run directory; remove the directory yourself, then start the jobs without --overwrite"
        )
    if cfg.train.threads > 0:  # mask searches and evaluation too, not only training
        torch.set_num_threads(cfg.train.threads)
    run_dir = on_main(lambda: prepare_run_dir(cfg, out, overwrite))
    progress = progress and is_main()
    train_only = train_only or bool(only)
    if not train_only:
        done = on_main(
            lambda: finished_evaluation(run_dir, evaluation_fingerprint(cfg, run_dir, specs))
        )
        if done is not None:
            return done
    data = main_first(lambda: load_run_data(cfg))  # the main process prepares data caches
    trained = [train_spec(cfg, spec, data, run_dir, progress) for spec in chosen]
    if train_only:
        return {"trained": [asdict(t.spec) for t in trained]}
    digest = on_main(lambda: evaluation_fingerprint(cfg, run_dir, specs))
    others = other_checkpoints(cfg, run_dir, specs)
    return evaluate_and_report(
        cfg, run_dir, data, trained, progress, started=t0, digest=digest, others=others
    )


def select_models(specs: Sequence[ModelSpec], only: Sequence[str]) -> list[ModelSpec]:
    """The networks of ``specs`` named in ``only``, in config order.

    Each entry is ``METHOD:SEED`` or a comma-separated list of them; ``METHOD`` is a network's
    reported name (``dense``, ``pun`` at the headline density, ``pun@0.03``) or
    ``METHOD@DENSITY`` with the headline density written out.

    Raises:
        InputError: for a malformed entry or one the config does not train.
    """
    wanted: list[tuple[str, str]] = []
    for entry in (e.strip() for value in only for e in value.split(",")):
        name, sep, seed = entry.rpartition(":")
        if not (sep and name and seed.strip().lstrip("-").isdigit()):
            raise InputError(
                f"--only {entry!r}: expected METHOD:SEED, e.g. dense:0 or pun@0.03:1 (several "
                "comma-separated or as repeated --only)"
            )
        wanted.append((name.strip(), seed.strip()))

    def matches(spec: ModelSpec, name: str, seed: str) -> bool:
        return int(seed) == spec.seed and spec.answers_to(name)

    for name, seed in wanted:
        if not any(matches(spec, name, seed) for spec in specs):
            known = ", ".join(f"{spec.name}:{spec.seed}" for spec in specs)
            raise InputError(
                f"--only {name}:{seed}: the config trains no such network; it trains {known} "
                "(methods, seeds and prune.densities of the config)"
            )
    return [s for s in specs if any(matches(s, name, seed) for name, seed in wanted)]


def report_run(run_dir: str | Path, progress: bool = True) -> dict:
    """Recompute ``metrics.json`` and rewrite the report of an evaluated run from its per-slice
    CSV (no retraining, no re-evaluation; only the figure slices are reconstructed again)."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    csv = run_dir / "eval" / "slices.csv"
    if not csv.is_file():
        raise InputError(f"{run_dir} has no eval/slices.csv; finish it with `punmri run` first")
    data = load_run_data(cfg)
    trained = [load_trained(cfg, spec, run_dir) for spec in model_specs(cfg)]
    others = other_checkpoints(cfg, run_dir, model_specs(cfg))
    k = cfg.evaluate.figure_slices
    heads = [dataclasses.replace(s, samples=s.samples[:k]) for s in data.suites]
    recons = _recons(cfg, run_dir, data, trained, others)
    _, images, _ = evaluate_methods(recons, heads, progress, k)
    metrics = summarize(read_slice_csv(csv), trained, cfg, data.suites)
    if (run_dir / "eval" / "volumes.csv").is_file():
        metrics["volumes"] = aggregate(read_slice_csv(run_dir / "eval" / "volumes.csv"))["methods"]
    recorded = _recorded_wall_s(run_dir)
    if recorded is not None:
        metrics["wall_s"] = recorded
    old = run_dir / "metrics.json"
    world = json.loads(old.read_text()).get("world_size") if old.is_file() else None
    if world is not None:  # the evaluation's processes, not this rewrite's
        metrics["world_size"] = world
    write_json_atomic(run_dir / "metrics.json", metrics)
    write_report(run_dir, cfg, metrics, data, images, trained)
    return metrics


def evaluate_run(
    run_dir: str | Path,
    out: str | Path,
    sources: Sequence[str] = (),
    overrides: Sequence[str] = (),
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Evaluate every trained model of ``run_dir`` and the baselines on each extra source (one
    suite per source) and on the run's own suites, with the run's settings unless ``overrides``
    change them; outputs go to ``out``. Without overrides the run's own suites are not evaluated
    again: their records are taken from the run's ``eval/`` CSVs."""
    run_dir = Path(run_dir)
    train_cfg = load_run_config(run_dir)
    cfg = load_config(run_dir / "config.yaml", overrides)
    changed = [k for k in ("model", "train") if getattr(cfg, k) != getattr(train_cfg, k)]
    if changed:
        raise InputError(
            f"eval overrides may not change the trained {changed[0]} section; change physics, "
            "data or evaluate settings only"
        )
    t0 = time.perf_counter()
    out_dir = on_main(lambda: prepare_run_dir(cfg, out, overwrite))
    specs = model_specs(train_cfg)
    reusable = _reusable_evaluation(run_dir, train_cfg, cfg)
    digest = on_main(lambda: evaluation_fingerprint(cfg, run_dir, specs, sources, reusable))
    done = on_main(lambda: finished_evaluation(out_dir, digest))
    if done is not None:
        return done
    data = main_first(lambda: load_run_data(cfg, sources))  # the main process prepares caches
    trained = [load_trained(train_cfg, spec, run_dir) for spec in specs]
    slices, volumes = [read_slice_csv(p) if p.is_file() else [] for p in reusable] or [[], []]
    return evaluate_and_report(
        cfg,
        out_dir,
        data,
        trained,
        progress,
        started=t0,
        digest=digest,
        cached=(slices, volumes),
        others=other_checkpoints(train_cfg, run_dir, specs, cfg.evaluate.checkpoints),
    )


def _reusable_evaluation(run_dir: Path, train_cfg: RunConfig, cfg: RunConfig) -> list[Path]:
    """The trained run's ``eval/slices.csv`` and ``eval/volumes.csv`` when ``punmri eval`` may
    reuse them: the run's evaluation is complete and ``cfg`` evaluates its suites as it did
    (only ``data.paths`` added); else an empty list (everything is evaluated)."""
    ignore = (("name",), ("data", "paths"))
    same = without(to_dict(cfg), ignore) == without(to_dict(train_cfg), ignore)
    if not same or not (run_dir / EVALUATION_MARKER).is_file():
        return []
    return [run_dir / "eval" / "slices.csv", run_dir / "eval" / "volumes.csv"]


__all__ = ["ModelSpec", "RunData", "TrainedModel", "load_run_data", "prepare_run_dir", "run"]
