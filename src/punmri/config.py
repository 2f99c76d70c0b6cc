"""Run configuration: nested frozen dataclasses loaded from YAML with ``key=value`` overrides.

Each field carries its help text in ``metadata["help"]``; each default lives only here. Values are
validated and converted to the declared types (real lists, literal choices), and an unknown key is
an error naming the key and the accepted ones. The resolved configuration is saved in every run
directory (``config.yaml``) so a run can always be reproduced and re-evaluated.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import InputError


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a default and a one-line help text (``None`` for a dict field
    means an empty mapping)."""
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata={"help": help})


def _require(ok: bool, name: str, expected: str, value: Any) -> None:
    """Raise an InputError naming the config field when a constraint fails."""
    if not ok:
        raise InputError(f"config {name}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how they are split."""

    source: str = _f(
        "colin27",
        "'colin27' (mricron-data T1 head), 'phantom' (procedural, tests), a NIfTI path, or "
        "'fastmri' (measured multi-coil k-space under data.root)",
    )
    root: str = _f("", "source fastmri: folder with train/ val/ test/ of fastMRI .h5 files")
    cache: str = _f("", "source fastmri: prepared cache; empty = ROOT/.punmri-cache")
    paths: tuple[str, ...] = _f((), "extra image sources (NIfTI/DICOM/NumPy/PNG/fastMRI) for eval")
    resolution_mm: float = _f(2.0, "isotropic resampling of the volume in mm")
    image_size: tuple[int, int] = _f((96, 80), "image size (H, W) after centre crop/pad")
    view: Literal["axial", "coronal", "sagittal"] = _f("axial", "training view of the volume")
    min_tissue: float = _f(0.2, "skip slices with a smaller fraction of tissue pixels")
    slab_fractions: tuple[float, float, float] = _f((0.7, 0.1, 0.2), "train/val/test slab sizes")
    slab_gap: int = _f(3, "slices skipped between neighbouring slabs (no leakage)")
    max_train_slices: int = _f(0, "use only this many (evenly spaced) training slices; 0 = all")
    max_val_slices: int = _f(0, "cap on validation slices (evenly spaced); 0 = all")
    max_test_slices: int = _f(0, "cap on test slices per suite (evenly spaced); 0 = all")

    def __post_init__(self) -> None:
        _require(
            self.resolution_mm > 0, "data.resolution_mm", "a size in mm > 0", self.resolution_mm
        )
        _require(min(self.image_size) >= 8, "data.image_size", "both sizes >= 8", self.image_size)
        _require(
            0 <= self.min_tissue < 1, "data.min_tissue", "a fraction in [0, 1)", self.min_tissue
        )
        _require(
            min(self.slab_fractions) >= 0 and sum(self.slab_fractions) > 0,
            "data.slab_fractions",
            "three non-negative fractions",
            self.slab_fractions,
        )
        _require(self.slab_gap >= 0, "data.slab_gap", "an integer >= 0", self.slab_gap)
        _require(
            self.source != "fastmri" or bool(self.root),
            "data.root",
            "a folder with train/ val/ test/ when data.source is fastmri",
            self.root,
        )


@dataclass(frozen=True)
class PhysicsConfig:
    """How measurements are simulated from magnitude images."""

    mask_kind: Literal["random", "equispaced", "gaussian1d", "poisson2d", "radial"] = _f(
        "random", "k-space sampling pattern"
    )
    acceleration: float = _f(4.0, "undersampling factor")
    center_fraction: float = _f(0.08, "fully sampled low-frequency fraction")
    coils: int = _f(8, "number of simulated receive coils (1 = single-coil)")
    coil_radius: float = _f(1.5, "coil ring radius in half fields of view")
    coil_jitter: float = _f(0.2, "random rotation + radius scaling of the coil ring per draw")
    snr_db: float | None = _f(40.0, "k-space SNR in dB over sampled points; null = noiseless")
    phase_amplitude: float = _f(3.14159, "peak amplitude of the smooth random phase in radians")
    fresh: bool = _f(True, "redraw mask, phase, coils and noise for every training sample")
    accelerations: tuple[float, ...] = _f(
        (),
        "measured k-space: accelerations drawn per sample (fastMRI style); empty = [acceleration]",
    )
    center_fractions: tuple[float, ...] = _f(
        (),
        "measured k-space: centre fractions paired with accelerations; empty = [center_fraction]",
    )

    def __post_init__(self) -> None:
        _require(self.acceleration >= 1, "physics.acceleration", "a factor >= 1", self.acceleration)
        _require(
            0 < self.center_fraction < 1,
            "physics.center_fraction",
            "a fraction in (0, 1)",
            self.center_fraction,
        )
        _require(self.coils >= 1, "physics.coils", "at least 1 coil", self.coils)
        _require(
            len(self.center_fractions) in (0, len(self.accelerations)),
            "physics.center_fractions",
            "one fraction per entry of physics.accelerations (or none)",
            self.center_fractions,
        )


@dataclass(frozen=True)
class ModelConfig:
    """The unrolled network."""

    denoiser: Literal["resnet", "unet", "didn"] = _f("resnet", "denoiser architecture")
    channels: int = _f(32, "denoiser width (feature channels)")
    depth: int = _f(5, "resnet: conv layers; unet: levels; didn: down-up blocks")
    unrolls: int = _f(5, "number of MoDL iterations K")
    cg_iterations: int = _f(8, "conjugate-gradient steps per data-consistency block")
    lam: float = _f(0.05, "initial data-consistency weight lambda (> 0)")
    learn_lam: bool = _f(True, "learn lambda (kept positive)")
    shared: bool = _f(True, "one denoiser shared by all unrolls (else one per unroll)")
    norm: Literal["none", "batch", "batch-per-unroll", "instance"] | None = _f(
        None,
        "normalisation in the denoiser: 'none'; 'batch' (BatchNorm, as in MoDL, shared by the "
        "unrolls); 'batch-per-unroll' (shared convolutions, one BatchNorm per unroll; needs "
        "model.shared); 'instance' (InstanceNorm; unet: fastMRI's, without affine parameters). "
        "resnet takes all four, unet all four, didn only 'none'. Unset: model.batchnorm decides "
        "for resnet (else 'none'); unet 'instance', didn 'none' (as published). Saved resolved",
    )
    batchnorm: bool | None = _f(
        None,
        "older switch, read only when model.norm is unset: true = norm 'batch', false = 'none' "
        "(resnet); saved as the resolved norm's answer to 'is it BatchNorm?'",
    )
    init: Literal["kaiming_normal", "kaiming_uniform", "xavier_normal"] = _f(
        "kaiming_normal", "weight initialisation scheme (seeded)"
    )
    init_output_gain: float = _f(
        0.0,
        "factor on each denoiser's output layer at initialisation, i.e. on its residual "
        "D(x) - x; 0 = 1/unrolls, which keeps the untrained MoDL's output within a small factor "
        "of its input for any K; 1 = the plain draw (resnet/unet then initialise as before)",
    )
    checkpoint_unrolls: bool = _f(
        False,
        "recompute each unroll (denoiser + CG) in backward instead of storing its activations: "
        "less memory, about one more forward pass of compute; same gradients",
    )
    dc_backward: Literal["unrolled", "implicit"] = _f(
        "unrolled",
        "gradients of the CG data consistency: 'unrolled' backpropagates through every CG step; "
        "'implicit' solves the normal equations once more in backward (no stored CG iterates; "
        "exact only when CG has converged)",
    )

    #: The resnet's normalisation when neither model.norm nor model.batchnorm is given: none,
    #: by measurement (BatchNorm shared by all unrolls trains dense MoDL unstably, docs/RESULTS.md;
    #: without it the demo's dense MoDL is 3.5 dB above CS-L1, see the session notes of stop 8).
    DEFAULT_NORM: typing.ClassVar[str] = "none"
    #: The normalisations each denoiser accepts.
    DENOISER_NORMS: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "resnet": ("none", "batch", "batch-per-unroll", "instance"),
        "unet": ("none", "batch", "batch-per-unroll", "instance"),
        "didn": ("none",),
    }

    def __post_init__(self) -> None:
        for name in ("channels", "depth", "unrolls", "cg_iterations"):
            value = getattr(self, name)
            _require(value >= 1, f"model.{name}", "an integer >= 1", value)
        _require(self.lam > 0, "model.lam", "a weight > 0", self.lam)
        _require(
            math.isfinite(self.init_output_gain) and self.init_output_gain >= 0,
            "model.init_output_gain",
            "a factor > 0, or 0 for 1/unrolls",
            self.init_output_gain,
        )
        # Resolve norm once, so the saved config states it: an explicit norm wins; else the
        # older batchnorm switch (resnet; run directories saved before norm existed hold it);
        # else the denoiser's default. batchnorm is then rewritten to agree with the norm, so
        # that a resolved config compares equal to the old one it came from (rundir resumes).
        norm = self.norm
        if norm is None and self.denoiser == "resnet":
            legacy = {True: "batch", False: "none", None: self.DEFAULT_NORM}
            norm = legacy[self.batchnorm]
        elif norm is None:
            norm = "instance" if self.denoiser == "unet" else "none"
        accepted = self.DENOISER_NORMS.get(self.denoiser, ())
        _require(
            norm in accepted,
            "model.norm",
            f"one of {list(accepted)} for the {self.denoiser} denoiser",
            norm,
        )
        _require(
            self.shared or norm != "batch-per-unroll",
            "model.norm",
            "'batch' with model.shared=false (each unroll's own denoiser already has its own "
            "BatchNorm), or model.shared=true",
            norm,
        )
        object.__setattr__(self, "norm", norm)
        object.__setattr__(self, "batchnorm", norm in ("batch", "batch-per-unroll"))
        _require(
            self.dc_backward in ("unrolled", "implicit"),
            "model.dc_backward",
            "'unrolled' or 'implicit'",
            self.dc_backward,
        )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation."""

    steps: int = _f(600, "maximum optimizer steps")
    batch_size: int = _f(4, "slices per step")
    lr: float = _f(1e-3, "Adam learning rate")
    weight_decay: float = _f(0.0, "Adam weight decay")
    loss: Literal["l1", "mse", "ssim-l1"] = _f("l1", "training loss on complex images")
    schedule: Literal["constant", "cosine", "step"] = _f("cosine", "learning-rate schedule")
    warmup_steps: int = _f(20, "linear learning-rate warm-up steps")
    grad_clip: float = _f(1.0, "max gradient norm; 0 = off")
    val_every: int = _f(100, "validate every N steps (and at the end)")
    patience: int = _f(0, "stop after N validations without improvement; 0 = off")
    augment: bool = _f(True, "random flips, small rotations and intensity scaling")
    device: str = _f("auto", "'auto', 'cpu', 'cuda' or 'cuda:N'")
    threads: int = _f(0, "torch CPU threads; 0 = torch default")
    workers: int = _f(
        0, "DataLoader worker processes preparing training batches ahead; 0 = in the loop"
    )
    precision: Literal["fp32", "bf16", "fp16"] = _f(
        "fp32",
        "denoiser compute precision under autocast (FFTs, SENSE and CG stay complex64; weights "
        "stay float32); fp16 needs CUDA and uses a gradient scaler, bf16 also runs on CPU",
    )

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "val_every"):
            value = getattr(self, name)
            _require(value >= 1, f"train.{name}", "an integer >= 1", value)
        for name in ("warmup_steps", "patience", "threads", "workers"):
            value = getattr(self, name)
            _require(value >= 0, f"train.{name}", "an integer >= 0", value)
        _require(self.lr > 0, "train.lr", "a learning rate > 0", self.lr)
        _require(
            self.precision in ("fp32", "bf16", "fp16"),
            "train.precision",
            "'fp32', 'bf16' or 'fp16'",
            self.precision,
        )
        _require(
            not (self.precision == "fp16" and self.device == "cpu"),
            "train.precision",
            "'bf16' or 'fp32' with train.device cpu (fp16 needs CUDA; use bf16 on CPU)",
            self.precision,
        )


@dataclass(frozen=True)
class SuiteConfig:
    """One named, seeded test suite: which images, simulated how."""

    name: str = _f("id", "suite name (unique; 'id' is the in-distribution suite)")
    source: str = _f(
        "test", "'test' (held-out slab), 'coronal'/'sagittal' (other views), or a path"
    )
    physics: dict[str, Any] = _f(None, "overrides of the physics section, e.g. {acceleration: 8}")
    lesions: bool = _f(False, "insert synthetic lesions before simulation (ROI metrics)")
    description: str = _f("", "one line for the report")

    def __post_init__(self) -> None:
        if self.physics is None:
            object.__setattr__(self, "physics", {})


@dataclass(frozen=True)
class EvalConfig:
    """Testing."""

    test_seed: int = _f(1234, "seed of validation/test simulation (same for every run and method)")
    baselines: tuple[str, ...] = _f(("zero-filled", "cs-l1"), "classical reconstructions")
    cs_lamda: float = _f(0.0, "L1-wavelet weight; 0 = tune on validation slices")
    cs_iterations: int = _f(60, "iterations of the L1-wavelet solver")
    cg_tol: float = _f(0.0, "early-stop tolerance for CG at inference; 0 = fixed count")
    figure_slices: int = _f(3, "example slices in the reconstruction figure")
    suites: tuple[SuiteConfig, ...] = _f(
        (SuiteConfig(),), "test suites; the first must be 'id' (see configs/ for shift suites)"
    )
    checkpoints: tuple[Literal["best", "final"], ...] = _f(
        ("best",),
        "checkpoints of every trained network to test: 'best' (best validation PSNR, reported "
        "as NAME) and 'final' (the last training step, train/last.pt, reported as NAME~final)",
    )

    def __post_init__(self) -> None:
        _require(
            self.cg_tol >= 0, "evaluate.cg_tol", "a tolerance >= 0 (0: fixed count)", self.cg_tol
        )
        _require(
            "best" in self.checkpoints and len(set(self.checkpoints)) == len(self.checkpoints),
            "evaluate.checkpoints",
            "'best' (the reference of every paired difference), optionally with 'final', each once",
            list(self.checkpoints),
        )


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class PunSearchConfig:
    """Every knob of :func:`pun_search`; ``PunSearchConfig.help()`` gives one-line help texts."""

    # Defaults tuned on the demo MoDL (benchmarks/pun_search.py, docs/BENCHMARKS.md): with them
    # the hardened mask gives the untrained network a loss ~5 std below layer-shuffled controls
    # and the expected density ends within ~15% of the target.
    steps: int = field(default=300, metadata=_help("number of Adam steps on the logits"))
    lr: float = field(default=5e-2, metadata=_help("Adam learning rate of the logits"))
    tau0: float = field(default=1.0, metadata=_help("concrete temperature at the first step"))
    tau1: float = field(default=0.2, metadata=_help("concrete temperature at the last step"))
    beta: float = field(default=1.0, metadata=_help("weight of the KL prior term"))
    beta_warmup: int = field(
        default=0, metadata=_help("steps over which beta ramps linearly from 0 (0 = constant)")
    )
    kl_reduction: Literal["mean", "sum"] = field(
        default="mean", metadata=_help("reduce the per-entry KL by 'mean' or 'sum' (paper)")
    )
    init_prob: float | None = field(
        default=None, metadata=_help("initial keep probability; None = the prior p0")
    )
    init_noise: float = field(
        default=1e-3, metadata=_help("std of Gaussian noise added to the initial logits")
    )
    log_every: int = field(default=50, metadata=_help("log diagnostics every N steps (and last)"))
    eval_batches: int = field(
        default=0, metadata=_help("batches to evaluate the hard top-s mask on per log (0 = off)")
    )

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, minimum: int) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InputError(
                    f"PunSearchConfig.{name} must be an int >= {minimum}, got {value!r}"
                )

        def positive(name: str, value: Any, allow_zero: bool = False) -> None:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
            if not ok:
                bound = ">= 0" if allow_zero else "> 0"
                raise InputError(
                    f"PunSearchConfig.{name} must be a finite number {bound}, got {value!r}"
                )

        positive_int("steps", self.steps, 1)
        positive_int("beta_warmup", self.beta_warmup, 0)
        positive_int("log_every", self.log_every, 1)
        positive_int("eval_batches", self.eval_batches, 0)
        positive("lr", self.lr)
        positive("tau0", self.tau0)
        positive("tau1", self.tau1)
        positive("beta", self.beta, allow_zero=True)
        positive("init_noise", self.init_noise, allow_zero=True)
        if self.kl_reduction not in ("mean", "sum"):
            raise InputError(
                f"PunSearchConfig.kl_reduction must be 'mean' or 'sum', got {self.kl_reduction!r}"
            )
        if self.init_prob is not None and not (
            isinstance(self.init_prob, (int, float)) and 0.0 < self.init_prob < 1.0
        ):
            raise InputError(
                f"PunSearchConfig.init_prob must be in (0, 1) or None, got {self.init_prob!r}"
            )

    @classmethod
    def help(cls) -> dict[str, str]:
        """``{field: one-line help}``."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all fields."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def tau_at(self, step: int) -> float:
        """Temperature at ``step`` (0-based): exponential from ``tau0`` to ``tau1``."""
        frac = step / (self.steps - 1) if self.steps > 1 else 1.0
        return self.tau0 * (self.tau1 / self.tau0) ** frac

    def beta_at(self, step: int) -> float:
        """KL weight at ``step`` (0-based), with the linear warm-up."""
        if self.beta_warmup == 0:
            return self.beta
        return self.beta * min(1.0, (step + 1) / self.beta_warmup)


@dataclass(frozen=True)
class PaperPunSearchConfig(PunSearchConfig):
    """The search of the paper's PUN-IT (method ``pun``): :class:`PunSearchConfig` with defaults
    from PAPER.md where it states them, and ours where it does not.

    - ``kl_reduction="sum"``: the paper's ``beta * sum_j KL(Bern(p_j) || Bern(p0))``.
    - ``steps=3000``: "many thousands of search steps" in the co-authors' recipe; the low end,
      since a step costs about a training step with a fresh batch (measured on 2 CPU cores:
      0.75 s on ``configs/demo.yaml``, so about 37 minutes a search; 0.16-0.22 s on
      ``configs/results.yaml``, about 8-11 minutes).
    - ``lr=1e-2``: Adam on the logits, "lr ~1e-2".
    - ``tau0=1.0`` -> ``tau1=0.2``: "fixed or annealed temperature around 0.2-1", annealed.
    - ``init_prob=None``: start at the prior ``p0``, the kept fraction.
    - ``beta=3.5e-5``: not in the paper. With the KL summed, ``beta`` sets the prior's pull per
      weight; ``3.5e-5 ~ 1 / 28,800`` gives the demo and results ResNet (28,800 prunable
      weights) the per-weight pull of the tuned mean-KL search (``pun-uniform``, ``beta=1``), and
      a network with more weights a proportionally stronger prior, as the paper's sum does.

    Its own class, so that overriding one field (``prune.pun.steps=20``) keeps the others at
    these defaults rather than at :class:`PunSearchConfig`'s.
    """

    steps: int = field(default=3000, metadata=_help("number of Adam steps on the logits"))
    lr: float = field(default=1e-2, metadata=_help("Adam learning rate of the logits"))
    beta: float = field(
        default=3.5e-5, metadata=_help("weight of the KL prior term (summed over weights)")
    )
    kl_reduction: Literal["mean", "sum"] = field(
        default="sum", metadata=_help("reduce the per-entry KL by 'mean' or 'sum' (paper)")
    )
    log_every: int = field(default=100, metadata=_help("log diagnostics every N steps (and last)"))


@dataclass(frozen=True)
class PruneConfig:
    """Pruning: densities, allocation and per-method settings (see ``punmri.methods``)."""

    density: float = _f(0.05, "headline kept fraction; methods at it keep their plain name")
    densities: tuple[float, ...] = _f((), "further densities, reported as METHOD@DENSITY")
    sweep_methods: tuple[str, ...] = _f(
        (), "methods trained at the further densities too; empty = every pruning method"
    )
    allocation: Literal["global", "uniform", "erk"] = _f(
        "global", "score ranking: one global ranking, or exact per-layer counts"
    )
    pun_allocation: Literal["global", "uniform", "erk"] = _f(
        "uniform",
        "allocation of the pun-uniform, pun-at and pun-wt masks (pun ranks globally, guarded by "
        "prune.pun_guard): a bare global ranking at initialisation prunes the denoiser's output "
        "layer away (see docs/BENCHMARKS.md)",
    )
    pun_guard: Literal["channel-min", "first-last", "none"] = _f(
        "channel-min",
        "pun's global ranking keeps, counted in the density: 'channel-min' the best-ranked "
        "weight of every output channel of every layer; 'first-last' the first and last layer "
        "of each denoiser whole; 'none' nothing (prunes the output layer away at init here)",
    )
    magnitude_guard: Literal["channel-min", "none"] = _f(
        "channel-min",
        "magnitude and magnitude-at with allocation global keep, counted in the density, "
        "'channel-min' the largest weight of every output channel of every layer, or 'none' "
        "nothing: the bare global magnitude ranking pruned the ResNet denoiser's output layer "
        "to 0 of 576 weights at 3% here, at initialisation and after training (snip, grasp and "
        "synflow rank as published)",
    )
    include: tuple[str, ...] = _f(
        (),
        "only prune weights matching these fnmatch patterns (channel-level methods: only the "
        "output channels of matching layers)",
    )
    exclude: tuple[str, ...] = _f(
        (),
        "never prune weights matching these patterns (channel-level methods: matching layers "
        "keep all output channels)",
    )
    score_batches: int = _f(4, "training batches scored by snip/grasp")
    synflow_iterations: int = _f(100, "SynFlow pruning rounds")
    pun: PaperPunSearchConfig = field(
        default_factory=PaperPunSearchConfig,
        metadata={"help": "search of pun, the paper's PUN-IT (global ranking, KL summed)"},
    )
    pun_uniform: PunSearchConfig = field(
        default_factory=PunSearchConfig,
        metadata={"help": "search of pun-uniform, pun-at and pun-wt (tuned on the demo MoDL)"},
    )
    channel_density: float = _f(
        0.25,
        "headline kept fraction of feature channels of the channel-level methods (pun-channel, "
        "random-channel, norm-channel, snip-channel; dense-narrow with narrow_match: channels)",
    )
    channel_densities: tuple[float, ...] = _f(
        (), "further channel fractions of the channel-level methods, reported as METHOD@FRACTION"
    )
    channel_allocation: Literal["uniform", "global"] = _f(
        "uniform",
        "kept channels: 'uniform' max(1, round(fraction * channels)) in every slot (so every "
        "channel method and dense-narrow share one architecture), 'global' one ranking over all "
        "slots (one channel per slot kept; widths differ between methods)",
    )
    pun_channel: PunSearchConfig = field(
        default_factory=PunSearchConfig,
        metadata={"help": "search of pun-channel (one logit per feature channel)"},
    )
    narrow_match: Literal["weights", "channels"] = _f(
        "weights",
        "dense-narrow's size: 'weights' the uniform width nearest the pruned networks' kept "
        "weights at prune.density(ies); 'channels' the kept channel widths of the channel-level "
        "methods at prune.channel_density(ies), freshly initialised",
    )
    search_batch_size: int = _f(0, "batch size of the PUN search; 0 = train.batch_size")
    check_batches: int = _f(4, "held-out training batches for the mask-vs-control loss check")
    check_shuffles: int = _f(3, "layer-shuffled control masks averaged in that check")
    imp_rounds: int = _f(3, "IMP rounds (train, prune, rewind) to reach the density")
    imp_allocation: Literal["uniform", "erk", "global"] = _f(
        "uniform",
        "IMP's magnitude ranking: within each layer, 'uniform' (every layer keeps the round's "
        "density; the same per-layer counts as random and pun-uniform) or 'erk', or 'global' one "
        "ranking over all layers (it pruned the trained ResNet denoiser's output layer to 0 of "
        "576 weights at 3% here; see imp_guard)",
    )
    imp_guard: Literal["channel-min", "none"] = _f(
        "channel-min",
        "with imp_allocation global, keep (counted in the density) 'channel-min' the largest "
        "weight of every output channel of every layer, or 'none' nothing",
    )
    imp_rewind_step: int = _f(0, "IMP rewinds to the weights at this step (0 = initialisation)")
    imp_round_steps: int = _f(0, "training steps per IMP round before the last; 0 = train.steps")
    finetune_steps: int = _f(0, "fine-tuning steps after pun-at/magnitude-at/pun-wt; 0 = steps/2")
    wt_logit_lr: float = _f(1e-2, "pun-wt: Adam learning rate of the mask logits")

    def __post_init__(self) -> None:
        for d in (self.density, *self.densities):
            _require(0 < d <= 1, "prune.density/densities", "fractions in (0, 1]", d)
        for d in (self.channel_density, *self.channel_densities):
            _require(
                0 < d <= 1, "prune.channel_density/channel_densities", "fractions in (0, 1]", d
            )
        for name in ("score_batches", "synflow_iterations", "check_batches", "imp_rounds"):
            value = getattr(self, name)
            _require(value >= 1, f"prune.{name}", "an integer >= 1", value)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; saved as ``config.yaml`` in the run directory."""

    name: str = _f("run", "run name (used in the report)")
    seeds: tuple[int, ...] = _f((0,), "seeds; each sets initialisation, data order, mask search")
    methods: tuple[str, ...] = _f(("dense",), "methods to train: dense and pruning methods")
    method_seeds: dict[str, tuple[int, ...]] = _f(
        None,
        "seeds of particular methods, e.g. {dense: [0,1,2,3,4]}; the methods not named train "
        "the seeds of 'seeds'. With dense trained, every method's seeds must be dense's too "
        "(the paired differences to dense pair seed s with seed s)",
    )
    data: DataConfig = field(default_factory=DataConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)

    def __post_init__(self) -> None:
        seeds = {}
        for method, values in (self.method_seeds or {}).items():
            where = f"method_seeds.{method}"
            _require(
                method in self.methods,
                "method_seeds",
                f"only methods the run trains ({', '.join(self.methods)})",
                method,
            )
            values = _convert(values, tuple[int, ...], where)
            _require(
                len(values) > 0 and len(set(values)) == len(values),
                where,
                "a non-empty list of distinct seeds",
                list(values),
            )
            seeds[method] = values
        object.__setattr__(self, "method_seeds", seeds)
        if "dense" in self.methods:
            dense = set(self.seeds_of("dense"))
            for method in self.methods:
                extra = [s for s in self.seeds_of(method) if s not in dense]
                _require(
                    not extra,
                    f"method_seeds.{method}" if method in seeds else "seeds",
                    f"seeds dense trains too (dense: {sorted(dense)}; every paired difference "
                    f"to dense needs dense at the method's seeds), but {method} has {extra}",
                    list(self.seeds_of(method)),
                )

    def seeds_of(self, method: str) -> tuple[int, ...]:
        """The seeds ``method`` trains: its ``method_seeds`` entry, else ``seeds``."""
        return self.method_seeds.get(method, self.seeds)

    @property
    def all_seeds(self) -> tuple[int, ...]:
        """Every seed some method trains, in order of first appearance (``seeds`` first)."""
        every = [*self.seeds, *(s for m in self.methods for s in self.seeds_of(m))]
        return tuple(dict.fromkeys(every))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Validate ``value`` against the annotation ``tp`` and convert it (lists -> tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InputError(f"config {where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except InputError as exc:
                errors.append(str(exc))
        raise InputError(errors[0] if errors else f"config {where}: bad value {value!r}")
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InputError(f"config {where}: expected a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if origin is Literal:
        if value not in args:
            raise InputError(f"config {where}: {value!r} is not one of {list(args)}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise InputError(f"config {where}: expected {len(args)} values, got {list(value)}")
        return tuple(_convert(v, a, where) for v, a in zip(value, args, strict=True))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise InputError(f"config {where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            raise InputError(f"config {where}: expected an integer, got {value!r}")
        try:
            out = int(value) if not isinstance(value, float) or value.is_integer() else None
        except ValueError:
            out = None
        if out is None:
            raise InputError(f"config {where}: expected an integer, got {value!r}")
        return out
    if tp is float:
        if isinstance(value, bool):
            raise InputError(f"config {where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"config {where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise InputError(f"config {where}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config annotation {tp!r} at {where}")


def from_dict(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """Build the dataclass ``cls`` from a (nested) mapping, validating every key and value."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        prefix = f"{where}." if where else ""
        raise InputError(
            f"unknown config key {prefix}{unknown[0]}; accepted keys in "
            f"{where or 'the top level'}: {', '.join(names)}"
        )
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) of a config dataclass, suitable for YAML/JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.steps=100'`` -> (['train', 'steps'], 100) with the value parsed as YAML."""
    if "=" not in text:
        raise InputError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Load a YAML config (defaults when ``path`` is None) and apply ``key=value`` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"config file {p} not found; see configs/ for examples")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise InputError(f"config file {p} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise InputError(f"config file {p} must hold a mapping of sections, got {loaded!r}")
        values = loaded or {}
    for text in overrides:
        keys, value = parse_override(text)
        node = values
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise InputError(f"override {text!r}: {k} is not a section")
        node[keys[-1]] = value
    try:
        return from_dict(RunConfig, values)
    except InputError as exc:
        src = f" (in {path})" if path is not None else ""
        raise InputError(f"{exc}{src}") from None


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from .io import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def replace(config: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` accepting dotted keys: ``replace(c, **{"train.steps": 5})``."""
    nested: dict[str, dict[str, Any]] = {}
    flat = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    for head, sub in nested.items():
        flat[head] = replace(getattr(config, head), **sub)
    return dataclasses.replace(config, **flat)
