"""Every trainable method as a recipe: how it obtains its mask and trains its network.

A recipe takes a :class:`MethodContext` and a :class:`~punmri.pipeline.ModelSpec` and returns a
trained model with its costs. All recipes write into ``RUN/models/NAME/seedS/``: ``mask.pt`` and
``mask.json`` (the mask, per-layer statistics, search diagnostics), intermediate training
directories, and the final ``train/`` directory; every stage whose output exists is skipped.

Methods (PAPER.md names in brackets):

- ``dense``: the unpruned network.
- ``dense-narrow``: a dense network whose denoiser width (``model.channels``) is reduced until its
  prunable weights match the kept weights of the pruned networks at the same density; trained
  like ``dense`` (the parameter-count control, :func:`narrow_width`).
- ``pun`` [PUN-IT]: Gumbel-softmax mask search on the frozen initial weights, then training; the
  paper's recipe: one global top-s ranking, the KL summed over weights, thousands of search steps
  (``prune.pun``, :class:`~punmri.config.PaperPunSearchConfig`), guarded against pruning a layer
  away (``prune.pun_guard``, see :func:`pun_options`).
- ``pun-uniform``: the same search with exact per-layer counts (``prune.pun_allocation``), the KL
  averaged and 300 steps (``prune.pun_uniform``): what ``pun`` was before the paper preset.
- ``random``, ``random-erk``, ``magnitude``, ``snip``, ``grasp``, ``synflow``: pruning at
  initialisation by other scores, then training.
- ``pun-shuffled``: ``pun``'s mask shuffled within each layer (a random mask with PUN's
  per-layer counts: the layer-count control); ``pun-reinit``: ``pun``'s mask on re-initialised
  weights (Frankle et al. 2021 sanity checks).
- ``pun-wt`` [PUN-WT]: mask logits learned jointly with the weights, hardened, then fine-tuned
  (``pun-uniform``'s settings).
- ``pun-at`` [PUN-AT]: the ``pun-uniform`` search on the trained dense weights, then fine-tuning.
- ``magnitude-at``: one-shot magnitude pruning of the trained dense network plus fine-tuning.
- ``imp``: iterative magnitude pruning with rewinding (lottery tickets).
- ``pun-channel``, ``random-channel``, ``norm-channel``, ``snip-channel``: channel-level
  (structured) pruning at initialisation at ``prune.channel_density`` of the feature channels:
  the PUN search with one logit per channel, random channels, filter norm, SNIP summed per
  channel (:mod:`punmri.pruning.channels`). The masked network is compacted into a physically
  smaller one, which is what trains and what the checkpoints hold (its widths in
  ``channels.json``); ``dense-narrow`` with ``prune.narrow_match: channels`` trains the same
  widths from a fresh initialisation (the control that decides whether the choice matters).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ModelConfig, PruneConfig, RunConfig
from .data.batches import TrainingStream
from .errors import InputError
from .io import write_json_atomic
from .models import build_model, count_parameters, initialise
from .models.channels import ChannelGraph, channel_graph
from .pruning import (
    Masks,
    apply,
    attach_gates,
    boundary_targets,
    find_mask,
    gate_kl,
    gate_parameters,
    harden,
    imp_density_schedule,
    kept_count,
    magnitude_prune_step,
    prunable_targets,
    register_optimizer_hook,
    resample_,
    rescale_kept_,
    select_by_counts,
    set_temperature_,
    weight_parameters,
)
from .pruning.channels import (
    channel_counts,
    channel_search,
    compact,
    first_channels,
    kept_indices,
    masked_loss,
    narrow_to,
    per_channel,
    random_scores,
    select_channels,
    whole_slots,
)
from .pruning.scorers import SCORERS
from .specs import ModelSpec, RunData
from .train import TrainHooks, TrainResult, get_loss, load_weights, resolve_device, train
from .train.distributed import is_main, on_main

#: Steps of the training stream from which search and check batches are drawn (never trained on
#: as such: they are other draws of augmentation and physics of the training slices).
SEARCH_OFFSET = 1_000_000
CHECK_OFFSET = 2_000_000
#: Seed offset of re-initialised weights (``pun-reinit``) and of layer shuffles.
REINIT_OFFSET = 10_007


class SearchBatches:
    """Re-iterable ``((kspace, op), target)`` training batches for mask searches and scorers.

    Iterating yields ``n`` batches taken from the training stream at steps ``offset + i``; they
    are simulated on the fly on the CPU (each pass yields the same batches) and, with ``device``,
    moved there before the SENSE operator is built from them (so the operator lives there too).
    """

    def __init__(
        self,
        stream: TrainingStream,
        batch_size: int,
        n: int,
        offset: int,
        device: torch.device | str | None = None,
    ) -> None:
        self.stream, self.batch_size, self.n, self.offset = stream, batch_size, n, offset
        self.device = None if device is None else torch.device(device)

    def __iter__(self) -> Iterator[tuple[tuple[torch.Tensor, Any], torch.Tensor]]:
        for i in range(self.n):
            b = self.stream.batch(self.offset + i, self.batch_size)
            if self.device is not None:
                b = b.to(self.device)
            yield (b.kspace, b.operator()), b.target

    def __len__(self) -> int:
        return self.n


@dataclass
class MethodResult:
    """A trained network, its training record and its costs."""

    model: nn.Module
    result: TrainResult
    costs: dict[str, float]
    masks: Masks | None = None


@dataclass
class MethodContext:
    """What every recipe needs: config, run directory, data, progress flag, and the device every
    stage computes on (``train.device``, resolved and checked once here by
    :func:`~punmri.train.resolve_device`)."""

    cfg: RunConfig
    run_dir: Path
    data: RunData
    progress: bool = True
    device: torch.device = field(init=False)

    def __post_init__(self) -> None:
        self.device = resolve_device(self.cfg.train.device)

    def stream(self, seed: int) -> TrainingStream:
        """The deterministic training stream of ``seed``."""
        return TrainingStream(self.data.train_source(seed), seed)

    def batches(
        self, seed: int, n: int, offset: int, batch_size: int | None = None
    ) -> SearchBatches:
        """``n`` search/check batches from the training slices (of ``batch_size`` slices, by
        default ``prune.search_batch_size`` or ``train.batch_size``), on :attr:`device`."""
        bs = batch_size or self.cfg.prune.search_batch_size or self.cfg.train.batch_size
        return SearchBatches(self.stream(seed), bs, n, offset, self.device)

    def targets(self, model: nn.Module) -> list[str]:
        """Prunable weight names of ``model`` after include/exclude patterns."""
        p = self.cfg.prune
        names = prunable_targets(model, include=p.include, exclude=p.exclude)
        if not names:
            raise InputError("prune.include/exclude leave no prunable weights")
        return names

    def train(
        self,
        spec: ModelSpec,
        model: nn.Module,
        subdir: str,
        masks: Masks | None = None,
        steps: int | None = None,
        hooks: TrainHooks | None = None,
    ) -> TrainResult:
        """Train ``model`` (masked by ``masks``, pruned entries held at zero) into ``subdir``."""
        if masks is not None:
            apply(model, masks)
            hooks = hooks or TrainHooks()
            hooks = dataclasses.replace(
                hooks, on_optimizer=lambda opt: register_optimizer_hook(opt, model)
            )
        cfg = self.cfg.train if steps is None else dataclasses.replace(self.cfg.train, steps=steps)
        return train(
            model,
            self.stream(spec.seed),
            self.data.val_batches,
            cfg,
            spec.directory(self.run_dir) / subdir,
            seed=spec.seed,
            progress=self.progress,
            desc=f"{spec.name} s{spec.seed} {subdir}",
            hooks=hooks,
        )

    def finetune_steps(self) -> int:
        """Fine-tuning steps after pruning a trained network."""
        return self.cfg.prune.finetune_steps or max(1, self.cfg.train.steps // 2)


# --------------------------------------------------------------------------- stages and costs


def _train_costs(result: TrainResult, prefix: str = "train") -> dict[str, float]:
    return {
        f"{prefix}_wall_s": result.wall_s,
        f"{prefix}_forward": float(result.forward_passes),
        f"{prefix}_backward": float(result.backward_passes),
    }


def _add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in {*a, *b}}


def _mask_costs(masks: Masks) -> dict[str, float]:
    c = masks.metadata.get("cost", {})
    return {
        "mask_wall_s": float(c.get("seconds", 0.0)),
        "mask_forward": float(c.get("forward_passes", 0)),
        "mask_backward": float(c.get("backward_passes", 0)),
    }


def _load_best(model: nn.Module, directory: Path) -> nn.Module:
    load_weights(model, directory, "best")
    return model.eval()


@torch.no_grad()
def mask_check(ctx: MethodContext, spec: ModelSpec, masks: Masks) -> dict[str, Any]:
    """Loss of the *untrained* network on held-out training batches: dense, under ``masks``, and
    under layer-shuffled copies of ``masks`` (same per-layer counts; the fair control), computed
    on ``ctx.device`` (the shuffles are drawn on the CPU, so they are the same on any device)."""
    data = check_batches(ctx, spec.seed)

    def loss_of(m: Masks | None) -> float:
        return untrained_loss(ctx, spec.seed, m, data)

    gen = torch.Generator().manual_seed(spec.seed + REINIT_OFFSET)
    shuffled = [
        loss_of(masks.shuffled_within_layers(gen)) for _ in range(ctx.cfg.prune.check_shuffles)
    ]
    silent = masks.emptied()
    return check_record(loss_of(None), loss_of(masks), shuffled, loss_of(silent))


def check_batches(ctx: MethodContext, seed: int) -> list[Any]:
    """The held-out training batches of :func:`mask_check` for ``seed`` (on ``ctx.device``)."""
    return list(ctx.batches(seed, ctx.cfg.prune.check_batches, CHECK_OFFSET))


def untrained_loss(
    ctx: MethodContext, seed: int, masks: Masks | None, data: list[Any], rescale: bool = False
) -> float:
    """Mean training loss on ``data`` of the freshly initialised network of ``seed`` (under
    ``masks``, or dense for None), in training mode (the mode PUN's search runs in: batch
    statistics in normalisation layers), on ``ctx.device``; ``rescale`` scales the kept weights
    of each layer by ``1 / sqrt(its kept fraction)`` first
    (:func:`~punmri.pruning.rescale_kept_`)."""
    loss_fn = get_loss(ctx.cfg.train.loss)
    model = build_model(ctx.cfg.model, seed).to(ctx.device)
    if masks is not None:
        if rescale:
            rescale_kept_(model, masks)
        apply(model, masks)
    model.train()
    with torch.no_grad():
        return sum(float(loss_fn(model(*x), y)) for x, y in data) / len(data)


def check_record(
    dense: float, mask: float, controls: list[float], pruned: float | None = None
) -> dict[str, Any]:
    """The ``check`` entry of a mask's metadata: the untrained network's loss dense, under the
    mask and under its control masks (same per-layer or per-slot counts), with their mean, and
    (``loss_pruned``, weight masks) with every weight pruned: a mask whose loss equals that one
    has only silenced the denoiser (docs/BENCHMARKS.md, ``search-objective``)."""
    record = {
        "loss_dense": dense,
        "loss_mask": mask,
        "loss_shuffled": controls,
        "loss_shuffled_mean": sum(controls) / max(len(controls), 1),
    }
    if pruned is not None:
        record["loss_pruned"] = pruned
    return record


def mask_stage(
    ctx: MethodContext, spec: ModelSpec, compute: Callable[[], Masks], check: bool = True
) -> Masks:
    """Load ``mask.pt`` or compute, check and save the mask (with ``mask.json`` beside it).

    In a distributed run the main process alone loads or computes the mask and every process
    receives it (:func:`~punmri.train.distributed.on_main`); training verifies that they agree.
    """
    directory = spec.directory(ctx.run_dir)
    path = directory / "mask.pt"

    def load_or_compute() -> Masks:
        if path.is_file():
            return check_preset(Masks.load(path), spec.method, path)
        masks = compute()
        if check:
            masks.metadata["check"] = mask_check(ctx, spec, masks)
        save_mask(masks, directory)
        return masks

    return on_main(load_or_compute)


def save_mask(masks: Masks, directory: Path) -> None:
    """Write ``mask.pt`` and ``mask.json`` (metadata, counts, per-layer statistics)."""
    masks.save(directory / "mask.pt")
    summary = {
        "metadata": masks.metadata,
        "kept": masks.kept,
        "total": masks.total,
        "density": masks.density,
        "layers": masks.layer_stats(),
    }
    write_json_atomic(directory / "mask.json", summary)


#: Which PUN search a method's mask comes from (``metadata["preset"]``): ``pun`` (the paper's
#: PUN-IT) or ``pun-uniform``; the controls derive theirs from ``pun``'s mask.
PRESET_OF: dict[str, str] = {
    "pun": "pun",
    "pun-uniform": "pun-uniform",
    "pun-shuffled": "pun",
    "pun-reinit": "pun",
}


def check_preset(masks: Masks, method: str, path: Path) -> Masks:
    """``masks`` (loaded from ``path``) when it comes from ``method``'s PUN search, else an
    :class:`InputError` saying what to do.

    ``pun`` is the paper preset since the per-layer search was renamed ``pun-uniform``: a run
    directory written before holds a per-layer mask under ``models/pun`` (and controls derived from
    it), which must not be trained or reported as the paper's. Such a mask has no ``preset``; it
    is accepted as ``pun-uniform``'s (after moving the directory there).
    """
    expected = PRESET_OF.get(method)
    found = masks.metadata.get("preset")
    if expected is None or found == expected:
        return masks
    if found is None and expected == "pun-uniform" and masks.metadata.get("method") == "pun":
        return masks  # a per-layer PUN mask written before the rename
    origin = f"the {found!r} search" if found else "the per-layer PUN search of earlier punmri"
    model_dir = path.parent.parent
    if method == "pun":
        renamed = model_dir.with_name(model_dir.name.replace("pun", "pun-uniform", 1))
        advice = (
            f"Move {model_dir} to {renamed} (and list pun-uniform in methods) to keep it, or "
            "delete it and the pun-shuffled/pun-reinit directories to search anew"
        )
    else:
        advice = f"Delete {model_dir} to derive it anew"
    raise InputError(
        f"{path} was found by {origin}, not by {expected!r}: method `pun` is now the paper's "
        f"PUN-IT (global ranking, KL summed) and the per-layer search is `pun-uniform`. {advice}"
    )


#: Methods whose mask is found on the initial weights (what ``punmri prune`` offers):
#: ``(mask method for find_method_mask, allocation or None for the config's)``.
INIT_METHODS: dict[str, tuple[str, str | None]] = {
    "pun": ("pun", None),
    "pun-uniform": ("pun-uniform", None),
    "random": ("random", "uniform"),
    "random-erk": ("random", "erk"),
    "magnitude": ("magnitude", None),
    "snip": ("snip", None),
    "grasp": ("grasp", None),
    "synflow": ("synflow", None),
}


def mask_file(method: str) -> str:
    """The file ``punmri prune`` writes for ``method``: ``channels.pt`` for the channel-level
    methods, ``mask.pt`` for weight masks."""
    return "channels.pt" if method in CHANNEL_METHODS else "mask.pt"


def prune_at_init(ctx: MethodContext, method: str, density: float, seed: int, out: Path) -> Masks:
    """Find the ``method`` mask of the seeded initial network, check it against controls of the
    same per-layer counts (layer-shuffled weights, or random channels of the same widths) and
    write it to ``out`` (``punmri prune``): ``mask.pt``/``mask.json``, or for the channel-level
    methods ``channels.pt``/``channels.json`` with ``density`` the kept fraction of channels."""
    if method not in INIT_METHODS and method not in CHANNEL_METHODS:
        raise InputError(
            f"--method {method!r}: punmri prune finds masks at initialisation; choose one of "
            f"{sorted(INIT_METHODS)} or a channel-level method {sorted(CHANNEL_METHODS)} "
            "(after-training methods run inside `punmri run`)"
        )
    spec = ModelSpec(method, seed, density, density)
    model = build_model(ctx.cfg.model, seed)
    if method in CHANNEL_METHODS:
        graph = channel_graph(model)
        masks = find_channel_mask(ctx, spec, model, graph, CHANNEL_METHODS[method])
        masks.metadata["parameters"] = {
            "compact": count_parameters(compact(model.cpu(), graph, masks)),
            "dense": count_parameters(model),
        }
        save_channels(masks, out, graph)
        return masks
    scorer, allocation = INIT_METHODS[method]
    masks = find_method_mask(ctx, spec, model, scorer, allocation)
    masks.metadata["check"] = mask_check(ctx, spec, masks)
    save_mask(masks, out)
    return masks


def _pruning_at_init(method: str, allocation: str | None = None) -> Callable:
    """Recipe: a score-based mask on the initial weights, then training from them."""

    def recipe(ctx: MethodContext, spec: ModelSpec) -> MethodResult:
        model = build_model(ctx.cfg.model, spec.seed)
        masks = mask_stage(
            ctx, spec, lambda: find_method_mask(ctx, spec, model, method, allocation)
        )
        result = ctx.train(spec, model, "train", masks)
        return MethodResult(
            _load_best(model, spec.directory(ctx.run_dir) / "train"),
            result,
            {**_mask_costs(masks), **_train_costs(result)},
            masks,
        )

    return recipe


def pun_options(prune: PruneConfig, model: nn.Module, targets: list[str]) -> dict[str, Any]:
    """:func:`~punmri.pruning.find_mask` options of ``pun``, the paper's PUN-IT (PAPER.md).

    The search is ``prune.pun`` (:class:`~punmri.config.PaperPunSearchConfig`: KL summed over
    weights, 3000 steps, Adam lr 1e-2 on the logits, temperature 1 -> 0.2) and the mask is one
    global top-s ranking of the keep probabilities, as the paper has it, with one guard
    (``prune.pun_guard``), because at initialisation the bare global ranking prunes the denoiser's
    output layer to nothing here (0 or 1 of its 576 weights on the demo MoDL, docs/BENCHMARKS.md):
    the untrained denoiser only hurts the loss, so the search learns to switch it off, and a
    network without an output layer cannot be trained.

    The default guard, ``channel-min``, keeps the best-ranked weight of every output channel of
    every layer (counted in the density: the global ranking shares the rest). We chose it over
    keeping the first and last layers dense (``first-last``, the common practice, also offered)
    because in the shallow, narrow denoisers here those two layers are a large share of the
    weights: 1,152 of the 28,800 of the demo and results ResNet (4.0%), more than the 3% and 1%
    the results run keeps, so ``first-last`` cannot be counted in those densities at all, and at
    5% it would leave 1% to the remaining layers, an allocation fixed by hand rather than by the
    ranking. ``channel-min`` fixes 130 weights there (0.45%) and otherwise leaves the ranking
    alone; no layer and no output channel (the real and imaginary outputs in particular) is
    emptied. For the paper's 64-channel DIDN (millions of weights) both guards fix well under 1%
    of the weights, and ``first-last`` is the closer to common practice there.
    """
    opts: dict[str, Any] = {"config": prune.pun}
    if prune.pun_guard == "first-last":
        opts["dense_layers"] = boundary_targets(model, targets)
    elif prune.pun_guard == "channel-min":
        opts["channel_min"] = 1
    return opts


def find_method_mask(
    ctx: MethodContext, spec: ModelSpec, model: nn.Module, method: str, allocation: str | None
) -> Masks:
    """The ``method`` mask of ``model`` at ``spec.density``, searched on ``ctx.device`` (``model``
    is moved there in place; its batches are built there). Randomness comes from a CPU generator
    seeded with ``spec.seed``, and the mask is returned on the CPU, whatever the device.

    ``method`` is a :data:`~punmri.pruning.METHODS` name, where ``pun`` is the paper preset
    (:func:`pun_options`, global ranking), or ``pun-uniform`` (``prune.pun_uniform`` with
    ``prune.pun_allocation``). ``allocation`` None takes the config's (``prune.allocation``,
    ``prune.pun_allocation`` for pun-uniform, global for pun)."""
    p = ctx.cfg.prune
    model.to(ctx.device)
    opts: dict[str, Any] = {}
    data = None
    scorer = "pun" if method == "pun-uniform" else method
    if method in ("snip", "grasp"):
        data = ctx.batches(spec.seed, p.score_batches, SEARCH_OFFSET)
    elif method == "pun":
        opts = pun_options(p, model, ctx.targets(model))
        data = ctx.batches(spec.seed, p.pun.steps, SEARCH_OFFSET)
        allocation = allocation or "global"
    elif method == "pun-uniform":
        data = ctx.batches(spec.seed, p.pun_uniform.steps, SEARCH_OFFSET)
        opts["config"] = p.pun_uniform
        allocation = allocation or p.pun_allocation
    elif method == "magnitude" and (allocation or p.allocation) == "global":
        opts["channel_min"] = 1 if p.magnitude_guard == "channel-min" else 0
    elif method == "synflow":
        # data-free: the batch only supplies the input shape and an operator (the input is all
        # ones), so one slice is enough (a quarter of the cost of a batch of four)
        data = ctx.batches(spec.seed, 1, SEARCH_OFFSET, batch_size=1)
        opts["iterations"] = p.synflow_iterations
    masks = find_mask(
        model,
        scorer,
        spec.density,
        data=data,
        loss_fn=get_loss(ctx.cfg.train.loss),
        targets=ctx.targets(model),
        allocation=allocation or p.allocation,
        generator=torch.Generator().manual_seed(spec.seed),
        **opts,
    )
    if scorer == "pun":
        masks.metadata["preset"] = method
        if method == "pun":
            masks.metadata["guard"] = p.pun_guard
    if "channel_min" in opts and method == "magnitude":
        masks.metadata["guard"] = p.magnitude_guard
    return masks


def _pun_masks(ctx: MethodContext, spec: ModelSpec) -> tuple[Masks, dict[str, float]]:
    """The PUN mask of (density, seed), computed once in the ``pun`` directory."""
    pun_spec = dataclasses.replace(spec, method="pun")
    model = build_model(ctx.cfg.model, spec.seed)
    masks = mask_stage(ctx, pun_spec, lambda: find_method_mask(ctx, pun_spec, model, "pun", None))
    return masks, _mask_costs(masks)


def _derived_metadata(pun: Masks, method: str, source: str) -> dict[str, Any]:
    """Metadata of a mask derived from PUN's, without PUN's own search diagnostics."""
    skip = ("check", "pun", "pun_history", "cost")
    return {
        **{k: v for k, v in pun.metadata.items() if k not in skip},
        "method": method,
        "source": source,
    }


def _pun_shuffled(ctx: MethodContext, spec: ModelSpec) -> MethodResult:
    pun, costs = _pun_masks(ctx, spec)

    def shuffle() -> Masks:
        gen = torch.Generator().manual_seed(spec.seed + REINIT_OFFSET)
        out = pun.shuffled_within_layers(gen)
        meta = _derived_metadata(pun, "pun-shuffled", "pun mask shuffled within each layer")
        return Masks(dict(out), meta)

    masks = mask_stage(ctx, spec, shuffle, check=False)
    model = build_model(ctx.cfg.model, spec.seed)
    result = ctx.train(spec, model, "train", masks)
    model = _load_best(model, spec.directory(ctx.run_dir) / "train")
    return MethodResult(model, result, {**costs, **_train_costs(result)}, masks)


def _pun_reinit(ctx: MethodContext, spec: ModelSpec) -> MethodResult:
    pun, costs = _pun_masks(ctx, spec)
    meta = _derived_metadata(pun, "pun-reinit", "pun mask on re-initialised weights")
    masks = mask_stage(ctx, spec, lambda: Masks(dict(pun), meta), check=False)
    model = build_model(ctx.cfg.model, spec.seed + REINIT_OFFSET)
    result = ctx.train(spec, model, "train", masks)
    model = _load_best(model, spec.directory(ctx.run_dir) / "train")
    return MethodResult(model, result, {**costs, **_train_costs(result)}, masks)


def _dense(ctx: MethodContext, spec: ModelSpec) -> MethodResult:
    model = build_model(ctx.cfg.model, spec.seed)
    result = ctx.train(spec, model, "train")
    model = _load_best(model, spec.directory(ctx.run_dir) / "train")
    return MethodResult(model, result, _train_costs(result))


def prunable_count(model_cfg: ModelConfig, prune: PruneConfig) -> int:
    """Prunable weights of the network ``model_cfg`` describes (``prune.include``/``exclude``)."""
    model = build_model(model_cfg, seed=0)
    names = prunable_targets(model, include=prune.include, exclude=prune.exclude)
    return sum(model.get_parameter(n).numel() for n in names)


def narrow_width(cfg: RunConfig, density: float) -> dict[str, Any]:
    """The denoiser width of ``dense-narrow`` at ``density``, with the counts behind it.

    The target is what the pruned networks keep, ``round(density * N)`` of the dense network's
    ``N`` prunable weights; the width is the integer ``model.channels`` in ``[1, channels]`` whose
    (all kept) prunable weights are *nearest* the target, ties to the narrower. Nearest rather than
    the widest from below (DIDN widths are multiples of 4): the count grows about quadratically
    with the width, so one width step can be a large fraction of a small target (on the demo
    ResNet at 5%: 1,188 or 1,575 weights for a target of 1,440), and the nearest keeps the
    mismatch smallest whichever way it falls;
    ``prunable`` and ``target`` record it. Biases and normalisation parameters, which pruning
    keeps whole, are not counted in either (``parameters`` counts everything).

    Returns:
        ``{"density", "target", "channels", "prunable", "parameters", "dense_channels",
        "dense_prunable", "dense_parameters", "choice"}``.
    """
    if density is None:
        raise InputError("dense-narrow needs a density (prune.density or prune.densities)")
    full = cfg.model.channels
    dense_total = prunable_count(cfg.model, cfg.prune)
    target = kept_count(dense_total, density)
    best, best_count = full, dense_total
    step = 4 if cfg.model.denoiser == "didn" else 1  # DIDN's PixelShuffle needs multiples of 4
    for width in range(step, full + 1, step):
        count = prunable_count(dataclasses.replace(cfg.model, channels=width), cfg.prune)
        if abs(count - target) < abs(best_count - target) or (
            abs(count - target) == abs(best_count - target) and width < best
        ):
            best, best_count = width, count
        if count >= target:  # counts grow with the width: wider ones are only farther away
            break
    narrow_cfg = dataclasses.replace(cfg.model, channels=best)
    return {
        "density": density,
        "target": target,
        "channels": best,
        "prunable": best_count,
        "parameters": count_parameters(build_model(narrow_cfg, seed=0)),
        "dense_channels": full,
        "dense_prunable": dense_total,
        "dense_parameters": count_parameters(build_model(cfg.model, seed=0)),
        "choice": "nearest width (ties to the narrower)",
    }


def model_config(cfg: RunConfig, spec: ModelSpec) -> ModelConfig:
    """The :class:`ModelConfig` ``spec``'s network is built from: ``cfg.model``, with the width of
    :func:`narrow_width` for ``dense-narrow`` (load a trained network with it)."""
    if spec.method != "dense-narrow" or cfg.prune.narrow_match == "channels":
        return cfg.model
    return dataclasses.replace(cfg.model, channels=narrow_width(cfg, spec.density)["channels"])


def _dense_narrow(ctx: MethodContext, spec: ModelSpec) -> MethodResult:
    """A dense network of the pruned networks' kept size (:func:`narrow_width`), trained like
    ``dense``; its width and counts go to ``narrow.json`` and into its costs. With
    ``prune.narrow_match: channels`` it has the channel methods' kept widths instead
    (:func:`_dense_narrow_channels`)."""
    if ctx.cfg.prune.narrow_match == "channels":
        return _dense_narrow_channels(ctx, spec)
    info = narrow_width(ctx.cfg, spec.density)
    directory = spec.directory(ctx.run_dir)
    if is_main():
        write_json_atomic(directory / "narrow.json", info)
    model = build_model(model_config(ctx.cfg, spec), spec.seed)
    result = ctx.train(spec, model, "train")
    model = _load_best(model, directory / "train")
    sizes = {f"narrow_{k}": float(info[k]) for k in ("channels", "prunable", "target")}
    return MethodResult(model, result, {**_train_costs(result), **sizes})


# --------------------------------------------------------------------------- channel level

#: Channel-level methods (issue: structured PUN) -> their channel score.
CHANNEL_METHODS: dict[str, str] = {
    "pun-channel": "pun",
    "random-channel": "random",
    "norm-channel": "norm",
    "snip-channel": "snip",
}


def uses_channel_density(cfg: RunConfig, method: str) -> bool:
    """Whether ``method`` is sized by ``prune.channel_density(ies)`` (the channel-level methods,
    and ``dense-narrow`` with ``prune.narrow_match: channels``)."""
    return method in CHANNEL_METHODS or (
        method == "dense-narrow" and cfg.prune.narrow_match == "channels"
    )


def find_channel_mask(
    ctx: MethodContext, spec: ModelSpec, model: nn.Module, graph: ChannelGraph, score: str
) -> Masks:
    """The channel mask of ``model`` by ``score`` (``pun``, ``random``, ``norm``, ``snip``) at
    ``spec.density`` of its channels, on ``ctx.device``, with its cost and the loss check of
    the untrained network (masked, dense, and under random masks of the same counts)."""
    p = ctx.cfg.prune
    model.to(ctx.device)
    generator = torch.Generator().manual_seed(spec.seed)
    loss_fn = get_loss(ctx.cfg.train.loss)
    whole = whole_slots(graph, ctx.targets(model))
    t0 = time.perf_counter()
    passes = 0
    meta: dict[str, Any] = {}
    if score == "pun":
        data = ctx.batches(spec.seed, p.pun_channel.steps, SEARCH_OFFSET)
        model.train()
        masks, history = channel_search(
            model,
            graph,
            data,
            loss_fn,
            spec.density,
            p.pun_channel,
            p.channel_allocation,
            generator,
            whole,
        )
        passes = p.pun_channel.steps
        meta["pun_channel_history"] = history
    else:
        if score == "random":
            scores = random_scores(graph, generator)
        else:
            targets = sorted(graph.writes)
            if score == "norm":
                raw = {t: model.get_parameter(t).detach() ** 2 for t in targets}
            else:
                data = ctx.batches(spec.seed, p.score_batches, SEARCH_OFFSET)
                model.train()
                raw = SCORERS["snip"](model, targets, data, loss_fn, generator)
                passes = p.score_batches
            scores = per_channel(graph, raw)
        masks = select_channels(graph, scores, spec.density, p.channel_allocation, whole)
    seconds = time.perf_counter() - t0
    masks.metadata.update(
        meta,
        method=spec.method,
        score=score,
        channel_density=spec.density,
        allocation=p.channel_allocation,
        whole_slots=sorted(whole),
        seed=spec.seed,
        cost={"seconds": seconds, "forward_passes": passes, "backward_passes": passes},
    )
    masks.metadata["check"] = _channel_check(ctx, spec, model, graph, masks)
    return masks


def _channel_check(
    ctx: MethodContext, spec: ModelSpec, model: nn.Module, graph: ChannelGraph, masks: Masks
) -> dict[str, Any]:
    """Loss of the untrained network on held-out training batches: dense, under ``masks`` and
    under random channel masks with the same per-slot counts (the width control)."""
    p = ctx.cfg.prune
    loss_fn = get_loss(ctx.cfg.train.loss)
    data = list(ctx.batches(spec.seed, p.check_batches, CHECK_OFFSET))
    model.train()
    counts = {s: int(m.sum()) for s, m in masks.items()}
    full = {s: torch.ones_like(m) for s, m in masks.items()}
    gen = torch.Generator().manual_seed(spec.seed + REINIT_OFFSET)
    randoms = [
        masked_loss(
            model, graph, select_by_counts(random_scores(graph, gen), counts), data, loss_fn
        )
        for _ in range(p.check_shuffles)
    ]
    dense = masked_loss(model, graph, full, data, loss_fn)
    return check_record(dense, masked_loss(model, graph, masks, data, loss_fn), randoms)


def save_channels(masks: Masks, directory: Path, graph: ChannelGraph) -> None:
    """Write ``channels.pt`` (the channel mask) and ``channels.json``: the kept widths (what a
    trained compact network is loaded with), kept indices, and metadata."""
    directory.mkdir(parents=True, exist_ok=True)
    masks.save(directory / "channels.pt")
    kept = kept_indices(masks)
    summary = {
        "widths": {s: len(kept[s]) for s in sorted(kept)},
        "full_widths": graph.widths(),
        "kept_channels": sum(len(k) for k in kept.values()),
        "total_channels": sum(graph.widths().values()),
        "kept": {s: kept[s].tolist() for s in sorted(kept)},
        "metadata": {k: v for k, v in masks.metadata.items() if k != "pun_channel_history"},
    }
    write_json_atomic(directory / "channels.json", summary)


def channel_stage(
    ctx: MethodContext, spec: ModelSpec, graph: ChannelGraph, compute: Callable[[], Masks]
) -> Masks:
    """Load ``channels.pt`` or compute and save the channel mask (main process; shared)."""
    directory = spec.directory(ctx.run_dir)
    path = directory / "channels.pt"

    def load_or_compute() -> Masks:
        if path.is_file():
            return Masks.load(path)
        masks = compute()
        save_channels(masks, directory, graph)
        return masks

    return on_main(load_or_compute)


def channel_widths(directory: Path) -> dict[str, int] | None:
    """The kept widths of a channel-level model directory (``channels.json``), or None."""
    path = directory / "channels.json"
    if not path.is_file():
        return None
    try:
        return {s: int(w) for s, w in json.loads(path.read_text())["widths"].items()}
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: expected a JSON object with 'widths' ({err})") from err


def trained_architecture(cfg: RunConfig, spec: ModelSpec, directory: Path) -> nn.Module:
    """The network ``spec``'s trained weights load into: ``model_config``'s MoDL, compacted to the
    widths of ``channels.json`` for channel-level models (no mask needed)."""
    model = build_model(model_config(cfg, spec), seed=spec.seed)
    widths = channel_widths(directory)
    if widths is None:
        return model
    return narrow_to(model, channel_graph(model), widths)


def _channel_pruning(score: str) -> Callable:
    """Recipe: a channel mask of the initial network, compacted, then trained (the compact
    network is what trains and what the checkpoints hold)."""

    def recipe(ctx: MethodContext, spec: ModelSpec) -> MethodResult:
        full = build_model(ctx.cfg.model, spec.seed)
        graph = channel_graph(full)
        masks = channel_stage(
            ctx, spec, graph, lambda: find_channel_mask(ctx, spec, full, graph, score)
        )
        model = compact(full.cpu(), graph, masks)
        return _train_compact(ctx, spec, model, full, {**_mask_costs(masks)})

    return recipe


def _train_compact(
    ctx: MethodContext, spec: ModelSpec, model: nn.Module, full: nn.Module, costs: dict
) -> MethodResult:
    result = ctx.train(spec, model, "train")
    model = _load_best(model, spec.directory(ctx.run_dir) / "train")
    sizes = {
        "parameters": float(count_parameters(model)),
        "dense_parameters": float(count_parameters(full)),
    }
    return MethodResult(model, result, {**costs, **_train_costs(result), **sizes})


def _dense_narrow_channels(ctx: MethodContext, spec: ModelSpec) -> MethodResult:
    """``dense-narrow`` at the channel methods' kept widths (``uniform``: the same for every
    method; ``global``: ``pun-channel``'s of this seed and fraction), freshly initialised."""
    full = build_model(ctx.cfg.model, spec.seed)
    graph = channel_graph(full)
    if ctx.cfg.prune.channel_allocation == "global":
        pun_spec = dataclasses.replace(spec, method="pun-channel")
        pun = channel_stage(
            ctx,
            pun_spec,
            graph,
            lambda: find_channel_mask(ctx, pun_spec, full, graph, "pun"),
        )
        widths = {s: int(m.sum()) for s, m in pun.items()}
    else:
        widths = channel_counts(graph, spec.density, whole_slots(graph, ctx.targets(full)))

    def first() -> Masks:
        out = first_channels(widths, graph)
        out.metadata.update(
            method="dense-narrow",
            channel_density=spec.density,
            seed=spec.seed,
            note="widths only: the network is re-initialised at these widths",
        )
        return out

    channel_stage(ctx, spec, graph, first)
    model = initialise(narrow_to(full.cpu(), graph, widths), ctx.cfg.model, spec.seed)
    return _train_compact(ctx, spec, model, full, {})


def _trained_dense(ctx: MethodContext, seed: int) -> MethodResult:
    """The dense network of ``seed`` (trained once, shared by the after-training methods)."""
    return _dense(ctx, ModelSpec("dense", seed, None, ctx.cfg.prune.density))


def _after_training(method: str) -> Callable:
    """Recipe: prune the trained dense network (``pun-uniform`` search or magnitude), then
    fine-tune."""

    def recipe(ctx: MethodContext, spec: ModelSpec) -> MethodResult:
        dense = _trained_dense(ctx, spec.seed)
        masks = mask_stage(
            ctx, spec, lambda: find_method_mask(ctx, spec, dense.model, method, None), False
        )
        model = copy.deepcopy(dense.model).train()
        result = ctx.train(spec, model, "train", masks, steps=ctx.finetune_steps())
        model = _load_best(model, spec.directory(ctx.run_dir) / "train")
        dense_cost = _train_costs(dense.result, "mask")
        costs = {**_add(_mask_costs(masks), dense_cost), **_train_costs(result)}
        return MethodResult(model, result, costs, masks)

    return recipe


def _pun_wt(ctx: MethodContext, spec: ModelSpec) -> MethodResult:
    """Joint training of weights and mask logits, hardening, then fine-tuning (PUN-WT), with
    ``pun-uniform``'s settings (``prune.pun_uniform``, ``prune.pun_allocation``)."""
    p = ctx.cfg.prune
    search = p.pun_uniform
    directory = spec.directory(ctx.run_dir)
    model = build_model(ctx.cfg.model, spec.seed)
    targets = ctx.targets(model)
    attach_gates(
        model,
        spec.density,
        targets,
        generator=torch.Generator().manual_seed(spec.seed),
        init_prob=search.init_prob,
        init_noise=search.init_noise,
        tau=search.tau0,
    )
    steps = ctx.cfg.train.steps
    search_cfg = dataclasses.replace(search, steps=steps)

    def after_step(step: int) -> None:
        # noise is a function of (seed, step) so a resumed run draws the same samples
        set_temperature_(model, search_cfg.tau_at(min(step + 1, steps - 1)))
        resample_(model, torch.Generator().manual_seed(spec.seed * 1_000_003 + step))

    hooks = TrainHooks(
        param_groups=lambda m: [
            {"params": weight_parameters(m)},
            {"params": gate_parameters(m), "lr": p.wt_logit_lr, "weight_decay": 0.0},
        ],
        regularizer=lambda step: (
            search_cfg.beta_at(step) * gate_kl(model, spec.density, search.kl_reduction)
        ),
        after_step=after_step,
    )
    joint = ctx.train(spec, model, "joint", hooks=hooks)

    def hardened() -> Masks:
        out = harden(model, spec.density, p.pun_allocation)
        out.metadata.update(method="pun-wt", density=spec.density, seed=spec.seed)
        return out

    masks = mask_stage(ctx, spec, hardened, check=False)
    if any("parametrizations" in n for n, _ in model.named_parameters()):
        harden(model, spec.density, p.pun_allocation)  # a loaded mask: drop the gates only
    result = ctx.train(spec, model, "train", masks, steps=ctx.finetune_steps())
    model = _load_best(model, directory / "train")
    costs = {**_train_costs(joint, "mask"), **_train_costs(result)}
    return MethodResult(model, result, costs, masks)


def _imp(ctx: MethodContext, spec: ModelSpec) -> MethodResult:
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020)."""
    p = ctx.cfg.prune
    directory = spec.directory(ctx.run_dir)
    rewind_path = directory / "rewind.pt"
    round_steps = p.imp_round_steps or ctx.cfg.train.steps
    reuse_dense = p.imp_rewind_step == 0 and round_steps == ctx.cfg.train.steps
    initial = build_model(ctx.cfg.model, spec.seed)
    mask_cost: dict[str, float] = {}
    if reuse_dense:
        trained = _trained_dense(ctx, spec.seed)
        rewind_state = initial.state_dict()
        mask_cost = _train_costs(trained.result, "mask")
        current_model = trained.model
    else:
        if p.imp_rewind_step > round_steps:
            raise InputError(
                f"prune.imp_rewind_step={p.imp_rewind_step} is past the {round_steps} training "
                "steps of an IMP round: set it to at most prune.imp_round_steps (or train.steps "
                "when that is 0), or to 0 to rewind to initialisation"
            )

        def keep_rewind(step: int) -> None:
            if step + 1 == p.imp_rewind_step and not rewind_path.is_file() and is_main():
                # a CPU copy, so that a run trained on a GPU resumes anywhere
                cpu_state = {k: v.detach().cpu().clone() for k, v in initial.state_dict().items()}
                torch.save(cpu_state, rewind_path)

        model0 = initial
        r0 = ctx.train(
            spec, model0, "round0", steps=round_steps, hooks=TrainHooks(after_step=keep_rewind)
        )
        mask_cost = _train_costs(r0, "mask")
        current_model = _load_best(model0, directory / "round0")
        if p.imp_rewind_step == 0:  # rewind to the initial weights
            rewind_state = build_model(ctx.cfg.model, spec.seed).state_dict()
        elif rewind_path.is_file():
            rewind_state = torch.load(rewind_path, map_location="cpu")
        else:
            raise InputError(
                f"IMP rewind checkpoint {rewind_path} is missing (the weights after step "
                f"{p.imp_rewind_step} of round 0, saved while round 0 trains); round 0 cannot be "
                f"rewound without it. Delete the IMP model directory {directory} and rerun with "
                "the same config to train round 0 again and write it"
            )
    masks: Masks | None = None
    schedule = imp_density_schedule(spec.density, p.imp_rounds)
    guard = 1 if p.imp_guard == "channel-min" else 0
    for r, density in enumerate(schedule, start=1):
        plain = _plain_copy(current_model).to(ctx.device)
        masks = magnitude_prune_step(
            plain, masks, density, ctx.targets(plain), guard, p.imp_allocation
        )
        model = build_model(ctx.cfg.model, spec.seed)
        model.load_state_dict(rewind_state)
        if r < len(schedule):
            res = ctx.train(spec, model, f"round{r}", masks, steps=round_steps)
            mask_cost = _add(mask_cost, _train_costs(res, "mask"))
            current_model = _load_best(model, directory / f"round{r}")
    if masks is None:
        raise InputError("prune.imp_rounds must be >= 1")
    masks.metadata.update(
        method="imp",
        density=spec.density,
        seed=spec.seed,
        rounds=schedule,
        allocation=p.imp_allocation,
        guard=p.imp_guard if p.imp_allocation == "global" else None,
    )
    masks = mask_stage(ctx, spec, lambda: masks, check=False)
    result = ctx.train(spec, model, "train", masks)
    model = _load_best(model, directory / "train")
    return MethodResult(model, result, {**mask_cost, **_train_costs(result)}, masks)


def _plain_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with masks folded into plain weights (for magnitude scoring)."""
    from .pruning import remove

    out = copy.deepcopy(model)
    if any("parametrizations" in n for n, _ in out.named_parameters()):
        remove(out)
    return out


RECIPES: dict[str, Callable[[MethodContext, Any], MethodResult]] = {
    "dense": _dense,
    "dense-narrow": _dense_narrow,
    **{name: _pruning_at_init(*args) for name, args in INIT_METHODS.items()},
    "pun-shuffled": _pun_shuffled,
    "pun-reinit": _pun_reinit,
    "pun-wt": _pun_wt,
    "pun-at": _after_training("pun-uniform"),
    "magnitude-at": _after_training("magnitude"),
    "imp": _imp,
    **{name: _channel_pruning(score) for name, score in CHANNEL_METHODS.items()},
}


def run_method(ctx: MethodContext, spec: ModelSpec) -> MethodResult:
    """Train (or load, when finished) the network of ``spec`` and record its costs."""
    if spec.method not in RECIPES:
        raise InputError(f"methods: unknown method {spec.method!r}; available: {sorted(RECIPES)}")
    out = RECIPES[spec.method](ctx, spec)
    if is_main():  # the main process writes a distributed run's files
        write_json_atomic(spec.directory(ctx.run_dir) / "costs.json", out.costs)
    return out


__all__ = [
    "CHANNEL_METHODS",
    "INIT_METHODS",
    "mask_file",
    "RECIPES",
    "MethodContext",
    "MethodResult",
    "SearchBatches",
    "check_preset",
    "find_method_mask",
    "model_config",
    "narrow_width",
    "pun_options",
    "run_method",
    "trained_architecture",
    "uses_channel_density",
]
