"""Pruning in three steps: score -> select -> apply, plus the PUN probabilistic mask search.

- :mod:`~punmri.pruning.targets`: which weights are prunable, by fully qualified name.
- :mod:`~punmri.pruning.scorers`: one small module per score (random, magnitude, SNIP, GraSP,
  SynFlow) behind one signature, registered in :data:`SCORERS`.
- :mod:`~punmri.pruning.allocation` / :mod:`~punmri.pruning.selection`: exact kept counts, global or
  per layer, deterministic ties, no revival of pruned weights.
- :mod:`~punmri.pruning.masks`: :class:`Masks`, a validated, savable dict of bool tensors.
- :mod:`~punmri.pruning.apply` / :mod:`~punmri.pruning.state_dict`: masks as parametrizations,
  pruned entries kept at exactly zero, state dicts with plain names.
- :mod:`~punmri.pruning.pun`: the paper's Gumbel mask search, :func:`pun_search` (PUN-IT, PUN-AT),
  and joint training of weights and mask logits (PUN-WT, :func:`attach_gates` ... :func:`harden`).
- :mod:`~punmri.pruning.model_calls`: running a model on batches with substitute weights while
  its state is preserved (shared by the scorers and the PUN search).
- :mod:`~punmri.pruning.imp`: iterative magnitude pruning steps and schedule.
- :func:`find_mask`: one call for every method, with cost accounting.
"""

from __future__ import annotations

from punmri.pruning.allocation import ALLOCATIONS, erk_densities, kept_count, layer_counts
from punmri.pruning.apply import (
    MaskParametrization,
    apply,
    current_masks,
    register_optimizer_hook,
    remove,
    rescale_kept_,
    zero_pruned_,
)
from punmri.pruning.cost import PassCount, count_passes
from punmri.pruning.find import DATA_METHODS, METHOD_OPTIONS, METHODS, find_mask
from punmri.pruning.imp import imp_density_schedule, magnitude_prune_step
from punmri.pruning.masks import Masks
from punmri.pruning.pun import (
    LogitGate,
    PunSearchConfig,
    attach_gates,
    bernoulli_kl,
    concrete_mask,
    gate_kl,
    gate_parameters,
    harden,
    logistic_noise,
    pun_search,
    register_resample_hook,
    resample_,
    sample_concrete,
    set_gate_mode_,
    set_temperature_,
    weight_parameters,
)
from punmri.pruning.scorers import SCORERS, Scorer
from punmri.pruning.selection import (
    channel_floor,
    select_by_counts,
    select_top_k,
    select_top_k_channel_min,
    select_top_k_with_floor,
)
from punmri.pruning.state_dict import load_masked_state_dict, masked_state_dict
from punmri.pruning.targets import (
    DEFAULT_TYPES,
    boundary_targets,
    output_channel_dim,
    prunable_targets,
)

__all__ = [
    "ALLOCATIONS",
    "DATA_METHODS",
    "DEFAULT_TYPES",
    "METHODS",
    "METHOD_OPTIONS",
    "SCORERS",
    "LogitGate",
    "MaskParametrization",
    "Masks",
    "PassCount",
    "PunSearchConfig",
    "Scorer",
    "apply",
    "attach_gates",
    "bernoulli_kl",
    "boundary_targets",
    "channel_floor",
    "concrete_mask",
    "count_passes",
    "current_masks",
    "erk_densities",
    "find_mask",
    "gate_kl",
    "gate_parameters",
    "harden",
    "imp_density_schedule",
    "kept_count",
    "layer_counts",
    "load_masked_state_dict",
    "logistic_noise",
    "magnitude_prune_step",
    "masked_state_dict",
    "output_channel_dim",
    "prunable_targets",
    "pun_search",
    "register_optimizer_hook",
    "register_resample_hook",
    "remove",
    "rescale_kept_",
    "resample_",
    "sample_concrete",
    "select_by_counts",
    "select_top_k",
    "select_top_k_channel_min",
    "select_top_k_with_floor",
    "set_gate_mode_",
    "set_temperature_",
    "weight_parameters",
    "zero_pruned_",
]
