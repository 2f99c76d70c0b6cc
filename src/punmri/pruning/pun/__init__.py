"""PUN: pruning unrolled networks with a learned Bernoulli mask (PAPER.md).

Entry points:

- :func:`pun_search` with :class:`PunSearchConfig` (:mod:`~punmri.pruning.pun.search`): PUN-IT on
  freshly initialised weights, PUN-AT on trained ones; the weights stay frozen, only mask logits
  are learned, and the result is a hardened :class:`~punmri.pruning.Masks`.
- PUN-WT (:mod:`~punmri.pruning.pun.joint`): :func:`attach_gates` to a model, train weights and
  logits with any loop (:func:`gate_kl`, :func:`set_temperature_`, :func:`resample_` or
  :func:`register_resample_hook`), then :func:`harden`.

Both build on :class:`LogitGate` (:mod:`~punmri.pruning.pun.gate`: the learnable-logit mask, its
KL prior term and its hardening) and the binary concrete relaxation
(:mod:`~punmri.pruning.pun.relaxation`).
"""

from __future__ import annotations

from punmri.pruning.pun.gate import GateMode, LogitGate, prior_kl, top_logit_masks
from punmri.pruning.pun.joint import (
    attach_gates,
    gate_kl,
    gate_parameters,
    gates,
    harden,
    register_resample_hook,
    resample_,
    set_gate_mode_,
    set_temperature_,
    weight_parameters,
)
from punmri.pruning.pun.relaxation import (
    bernoulli_kl,
    concrete_mask,
    logistic_noise,
    sample_concrete,
)
from punmri.pruning.pun.search import PunSearchConfig, pun_search

__all__ = [
    "GateMode",
    "LogitGate",
    "PunSearchConfig",
    "attach_gates",
    "bernoulli_kl",
    "concrete_mask",
    "gate_kl",
    "gate_parameters",
    "gates",
    "harden",
    "logistic_noise",
    "prior_kl",
    "pun_search",
    "register_resample_hook",
    "resample_",
    "sample_concrete",
    "set_gate_mode_",
    "set_temperature_",
    "top_logit_masks",
    "weight_parameters",
]
