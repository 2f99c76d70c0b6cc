"""The generalization study behind ``docs/RESULTS.md``: its regimes and the statistics it reports.

A *regime* is one ``punmri run`` of ``configs/results.yaml`` with the overrides of
:data:`REGIMES`: the simulation drawn once per training slice (``fixed``) or for every sample
(``fresh``), on the whole training slab (``full``), on :data:`SMALL_SLICES` slices (``small``)
or on :data:`TINY_SLICES` slices without augmentation trained :data:`LONG_STEPS` steps
(``tiny-long``; ``tiny-noisy`` also at :data:`NOISY_SNR_DB`, where dense MoDL over-fits: with
fixed physics it learns each slice's one noise draw, docs/BENCHMARKS.md "overfit");
``-didn`` trains the DIDN denoiser
(:data:`DIDN`). The batch-normalisation ablation of the earlier BatchNorm grid trains
:data:`NO_BATCHNORM_METHODS` again with the overrides :data:`NO_BATCHNORM` (run directories
``REGIME-nobn``).

A finished run is read once into a :class:`RegimeRun` (metrics and per-slice records); the
functions here derive from it the numbers the document's tables show: paired differences between
two methods with bootstrap CIs over the seeds both trained (:func:`paired_summary`), the PSNR of
every network (:func:`psnr_by_network`), the shifts harder than ``id`` (:func:`harder_suites`),
PUN against its controls (:func:`pun_contrasts`), training instability (:func:`max_val_drop`)
and over-fitting (:func:`overfitting`). Networks tested at their final training step carry
``NAME~final`` (:mod:`punmri.evaluate.checkpoints`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..evaluate.checkpoints import checkpoint_name
from ..evaluate.statistics import split_seed, suite_statistics, summary_line
from ..evaluate.summary import replicate_suites
from ..evaluate.tables import SliceRecord, read_slice_csv
from ..specs import ModelSpec

#: Training slices of the ``small`` regimes (evenly spaced over the training slab).
SMALL_SLICES = 8

#: Training slices of the ``tiny`` regimes: few, with fixed physics and no augmentation.
TINY_SLICES = 4

#: SNR (dB) of the ``tiny-noisy`` regime. With fixed physics every training slice carries one
#: noise draw for the whole training, and dense MoDL over-fits it: at 4 slices its validation
#: PSNR peaks at step 200 and falls by 0.5 dB by step 850, while at the grid's 40 dB it stays at
#: its plateau even with one slice, a 4x wider ResNet or DIDN (``benchmarks/overfit.py``).
NOISY_SNR_DB = 20

#: Training steps (no early stopping) of the ``long`` regimes: twice results.yaml's 250, sized so
#: that the whole grid trains within one 3-hour session on 2 cores (configs/results.yaml).
LONG_STEPS = 500

#: The learning-rate schedule of the ``tiny-noisy`` regime: constant, so that dense keeps
#: memorising the slices' noise draws at the full rate. Dense, seed 0, 4 slices at 20 dB (by hand,
#: ``punmri train``): with the cosine schedule over 400 steps its validation PSNR peaked at
#: step 150 and ended 0.12 dB lower, below :data:`OVERFIT_DB` (over 1600 steps: 0.68 dB, docs/
#: BENCHMARKS.md "overfit"); with a constant rate it peaked at step 250 (22.65 dB) and ended
#: 0.25 dB lower at step 400, still falling.
NOISY_SCHEDULE = "constant"

#: The methods of the verdict: PUN and what it is compared with (:data:`VERDICT_REFERENCES`):
#: dense, and the controls of the same size and layer counts. All that the regimes other than
#: the over-fitting one train, to fit the grid into one session.
VERDICT_METHODS: tuple[str, ...] = ("dense", "dense-narrow", "pun", "pun-shuffled")

#: What the verdict compares PUN with: the verdict's other methods.
VERDICT_REFERENCES: tuple[str, ...] = tuple(m for m in VERDICT_METHODS if m != "pun")

#: Overrides of the DIDN regime: a small DIDN (two down-up blocks of 16 channels; DIDN takes
#: only norm none), the networks of the verdict that it can train: dense, PUN and its
#: layer-count control (``dense-narrow`` has no DIDN width of PUN's kept weights: the narrowest
#: DIDN, 4 channels, keeps about twice as many), at 3 seeds each (a DIDN step costs ~1.35 ResNet
#: steps).
DIDN: tuple[str, ...] = (
    "model.denoiser=didn",
    "model.channels=16",
    "model.depth=2",
    "model.norm=none",
    f"methods=[{','.join(m for m in VERDICT_METHODS if m != 'dense-narrow')}]",
    "method_seeds={}",
    "evaluate.checkpoints=[best]",
)

#: Regime name -> config overrides of its run.
REGIMES: dict[str, tuple[str, ...]] = {
    "fixed-tiny-long": (
        "physics.fresh=false",
        f"data.max_train_slices={TINY_SLICES}",
        "train.augment=false",
        f"train.steps={LONG_STEPS}",
        "train.patience=0",
    ),
    "fixed-tiny-noisy": (
        "physics.fresh=false",
        f"data.max_train_slices={TINY_SLICES}",
        f"physics.snr_db={NOISY_SNR_DB}",
        "train.augment=false",
        f"train.steps={LONG_STEPS}",
        f"train.schedule={NOISY_SCHEDULE}",
        "train.patience=0",
    ),
    "fixed-small": ("physics.fresh=false", f"data.max_train_slices={SMALL_SLICES}"),
    "fresh-small": ("physics.fresh=true", f"data.max_train_slices={SMALL_SLICES}"),
    "fixed-full": ("physics.fresh=false", "data.max_train_slices=0"),
    "fresh-full": (
        "physics.fresh=true",
        "data.max_train_slices=0",
        f"methods=[{','.join(VERDICT_METHODS)}]",
    ),
    "fresh-full-didn": ("physics.fresh=true", "data.max_train_slices=0", *DIDN),
}

#: The regimes of the current grid (docs/RESULTS.md), in the document's order: one where dense
#: over-fits (all methods), one where it does not, with the DIDN denoiser. ``fresh-full`` (the
#: same without over-fitting, with a ResNet and ``dense-narrow``) is the grid's third regime in
#: its first design; it did not fit into one session beside the other two on a slow day
#: (``python benchmarks/results.py --regimes fixed-tiny-noisy fresh-full fresh-full-didn``).
GRID: tuple[str, ...] = ("fixed-tiny-noisy", "fresh-full-didn")

#: The methods of the batch-normalisation ablation: dense, PUN and its random control.
NO_BATCHNORM_METHODS: tuple[str, ...] = ("dense", "pun", "random")

#: Overrides (on top of a regime's) of the ablation run: a ResNet denoiser without BatchNorm,
#: trained like the main grid, only :data:`NO_BATCHNORM_METHODS` and the zero-filled baseline.
NO_BATCHNORM: tuple[str, ...] = (
    "model.norm=none",
    f"methods=[{','.join(NO_BATCHNORM_METHODS)}]",
    "prune.densities=[]",
    "evaluate.baselines=[zero-filled]",
)

#: PUN's controls: a dense network as narrow as PUN's kept weights, PUN's mask shuffled within
#: each layer (its layer-count control), and a uniform per-layer random mask.
CONTROLS: tuple[str, ...] = ("dense-narrow", "pun-shuffled", "random")

#: Dense over-fits in a regime when, averaged over its seeds, its validation PSNR at the final
#: training step is more than this many dB below its best.
OVERFIT_DB = 0.2

#: The classical baselines (no training).
BASELINES: tuple[str, ...] = ("zero-filled", "cs-l1")

#: A paired-difference summary line (:func:`punmri.evaluate.statistics.summary_line`).
Summary = dict[str, Any]


@dataclass(frozen=True)
class RegimeRun:
    """One finished run of the study.

    Attributes:
        run_dir: the ``punmri run`` directory.
        metrics: its ``metrics.json`` contract (``docs/OUTPUTS.md``).
        records: its per-slice results (``eval/slices.csv``); method names carry ``#sS`` when
            the run has several seeds. :meth:`load` leaves out the suites that repeat the
            training distribution (:func:`~punmri.evaluate.summary.replicate_suites`), so that
            every OOD mean of the document is over shifts only.
    """

    run_dir: Path
    metrics: dict[str, Any]
    records: list[SliceRecord]

    @classmethod
    def load(cls, run_dir: str | Path, metrics: dict[str, Any] | None = None) -> RegimeRun:
        """Read a finished run; ``metrics`` (e.g. as just returned by the pipeline) replaces
        reading ``RUN/metrics.json``."""
        run_dir = Path(run_dir)
        if metrics is None:
            path = run_dir / "metrics.json"
            if not path.is_file():
                raise InputError(f"{run_dir} has no metrics.json; finish it with `punmri run`")
            metrics = json.loads(path.read_text())
        same = replicate_suites(metrics)
        records = read_slice_csv(run_dir / "eval" / "slices.csv")
        return cls(run_dir, metrics, [r for r in records if r.suite not in same])

    @property
    def config(self) -> dict[str, Any]:
        """The run's resolved configuration (as a nested dict)."""
        return self.metrics["config"]

    @property
    def checkpoints(self) -> tuple[str, ...]:
        """The checkpoints the run tested every network at (``evaluate.checkpoints``:
        ``best``, and ``final`` for ``NAME~final``)."""
        return tuple(self.config.get("evaluate", {}).get("checkpoints", ["best"]))

    @property
    def test_seed(self) -> int:
        """The seed of the run's bootstrap (``evaluate.test_seed``)."""
        return self.config["evaluate"]["test_seed"]

    @property
    def summary(self) -> dict[str, Summary]:
        """Per method, the ID / OOD differences to dense (empty without dense)."""
        return self.metrics.get("summary", {})

    def seeds(self, method: str) -> tuple[int, ...]:
        """The seeds the run trained ``method`` at (its ``method_seeds`` entry, else
        ``seeds``)."""
        cfg = self.config
        return tuple((cfg.get("method_seeds") or {}).get(method) or cfg["seeds"])

    def history(self, method: str, seed: int) -> list[dict[str, Any]]:
        """The training history (``TrainResult.history``) of the network ``method`` (a plain
        method name, e.g. ``pun``), seed ``seed``."""
        done = ModelSpec(method, seed).directory(self.run_dir) / "train" / "done.json"
        if not done.is_file():
            raise InputError(f"{done} does not exist: {method!r} seed {seed} did not finish")
        return json.loads(done.read_text())["history"]


def significance(entry: Mapping[str, float] | None) -> int:
    """+1 / -1 when the 95% CI of a ``{"mean", "ci_low", "ci_high"}`` entry lies above / below
    0, else 0 (also for a missing or ``nan`` interval)."""
    if not entry or entry.get("ci_low") is None or math.isnan(entry["ci_low"]):
        return 0
    return 1 if entry["ci_low"] > 0 else -1 if entry["ci_high"] < 0 else 0


def shared_seeds(
    records: Sequence[SliceRecord], method: str, reference: str
) -> list[SliceRecord] | None:
    """``records`` without the per-seed records (``NAME#sS``) of ``method`` and ``reference`` at
    seeds only one of the two has (e.g. PUN at 5 seeds, ``pun-shuffled`` at 3: seeds 0-2 are
    paired); None when they share no seed. Plain-named records (one network, e.g. a baseline)
    are kept: they pair with every seed."""
    seeds: dict[str, set[int | None]] = {method: set(), reference: set()}
    for r in records:
        name, seed = split_seed(r.method)
        if name in seeds:
            seeds[name].add(seed)
    if None in seeds[method] or None in seeds[reference]:
        return list(records)
    common = seeds[method] & seeds[reference]
    if not common:
        return None
    out = []
    for r in records:
        name, seed = split_seed(r.method)
        if name not in seeds or seed in common:
            out.append(r)
    return out


def paired_summary(
    records: Sequence[SliceRecord],
    method: str,
    reference: str,
    seed: int,
    suites: Collection[str] | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
) -> Summary | None:
    """ID and mean OOD paired differences ``method - reference`` (PSNR and SSIM, hierarchical
    bootstrap CIs at ``level`` from ``n_boot`` replicates) from per-slice records, over the
    seeds both methods trained (:func:`shared_seeds`).

    Args:
        records: per-slice records holding both methods (``NAME`` or ``NAME#sS``).
        method, reference: reported names without seed (``pun``, ``pun~final``).
        seed: the bootstrap seed (the run's ``evaluate.test_seed``).
        suites: shifted suites to average over (default: all); ``id`` is always kept.

    Returns:
        The :func:`~punmri.evaluate.statistics.summary_line` of ``method``; None when either
        method has no record or they share no seed.
    """
    names = {split_seed(r.method)[0] for r in records}
    if method not in names or reference not in names:
        return None
    records = shared_seeds(records, method, reference)
    if records is None:
        return None
    if suites is not None:
        records = [r for r in records if r.suite == "id" or r.suite in suites]
    stats = suite_statistics(
        records, [method], reference=reference, n_boot=n_boot, level=level, seed=seed
    )
    return summary_line(stats, method, n_boot=n_boot, level=level, seed=seed)


def psnr_by_network(records: Sequence[SliceRecord]) -> dict[tuple[str, int | None], dict]:
    """Per network ``(method, seed)`` (seed None for a run with one seed), the PSNR (dB) of each
    of its slices, split into ``{"id": [...], "ood": [...]}`` (``ood``: every shifted suite)."""
    per: dict[tuple[str, int | None], dict[str, list[float]]] = {}
    for r in records:
        part = "id" if r.suite == "id" else "ood"
        per.setdefault(split_seed(r.method), {"id": [], "ood": []})[part].append(r.psnr)
    return per


def harder_suites(metrics: Mapping[str, Any]) -> set[str]:
    """Shifted suites whose zero-filled PSNR is below the ``id`` suite's (harder inputs); empty
    when the run has no zero-filled ``id`` PSNR."""
    info = metrics.get("suites", {})
    ref = info.get("id", {}).get("zero-filled_psnr")
    if ref is None:
        return set()
    same = replicate_suites(metrics)
    return {
        s
        for s, i in info.items()
        if s != "id" and s not in same and i.get("zero-filled_psnr", math.inf) < ref
    }


def pun_contrasts(regimes: Mapping[str, RegimeRun]) -> dict[str, dict[str, Summary]]:
    """Per regime, the paired summary of PUN minus each of :data:`CONTROLS` the run has (over
    the same slices and seeds)."""
    out: dict[str, dict[str, Summary]] = {}
    for label, run in regimes.items():
        out[label] = {}
        for ref in CONTROLS:
            line = paired_summary(run.records, "pun", ref, run.test_seed)
            if line is not None:
                out[label][ref] = line
    return out


def max_val_drop(history: Sequence[Mapping[str, Any]]) -> float:
    """Largest fall of validation PSNR (dB) between consecutive checks of a training history
    (``TrainResult.history``); 0 when it never falls."""
    vals = [h["val_psnr"] for h in history if "val_psnr" in h]
    return max([a - b for a, b in zip(vals[:-1], vals[1:], strict=True)] + [0.0])


def final_drop(history: Sequence[Mapping[str, Any]]) -> float:
    """How far (dB) the validation PSNR of the last check of a training history lies below the
    best check's; 0 for a history that ends at its best (or has no check)."""
    vals = [h["val_psnr"] for h in history if "val_psnr" in h]
    return max(vals) - vals[-1] if vals else 0.0


@dataclass(frozen=True)
class Overfitting:
    """Over-fitting of one method's networks in a run, from their training histories.

    Attributes:
        seeds: the networks' seeds.
        drops: per seed, :func:`final_drop` (final-step validation PSNR below the best, dB).
        falls: per seed, :func:`max_val_drop` (largest fall between consecutive checks, dB).
        final: the test-set paired summary of the final-step checkpoint minus the
            best-validation one (``NAME~final - NAME``); None when the final checkpoints were
            not tested.
    """

    seeds: tuple[int, ...]
    drops: tuple[float, ...]
    falls: tuple[float, ...]
    final: Summary | None

    @property
    def mean_drop(self) -> float:
        """Mean over seeds of :attr:`drops` (dB)."""
        return sum(self.drops) / len(self.drops)

    @property
    def overfits(self) -> bool:
        """Whether the mean final-step drop exceeds :data:`OVERFIT_DB`."""
        return self.mean_drop > OVERFIT_DB

    @property
    def n_over(self) -> int:
        """Seeds whose final-step drop exceeds :data:`OVERFIT_DB`."""
        return sum(d > OVERFIT_DB for d in self.drops)


def overfitting(run: RegimeRun, method: str = "dense") -> Overfitting | None:
    """How much ``method``'s trainings in ``run`` over-fit (:class:`Overfitting`); None when
    the run has no records of ``method``."""
    if method not in {split_seed(r.method)[0] for r in run.records}:
        return None
    seeds = run.seeds(method)
    histories = [run.history(method, s) for s in seeds]
    final = paired_summary(run.records, checkpoint_name(method, "final"), method, run.test_seed)
    return Overfitting(
        tuple(seeds),
        tuple(final_drop(h) for h in histories),
        tuple(max_val_drop(h) for h in histories),
        final,
    )


def without_batchnorm(records: Sequence[SliceRecord]) -> list[SliceRecord]:
    """The records of an ablation run's :data:`NO_BATCHNORM_METHODS`, renamed ``NAME-nobn`` (a
    ``#sS`` suffix kept) so that they can be paired with the main run's records."""
    out = []
    for r in records:
        name, _ = split_seed(r.method)
        if name in NO_BATCHNORM_METHODS:
            out.append(dataclasses.replace(r, method=name + "-nobn" + r.method[len(name) :]))
    return out


__all__ = [
    "BASELINES",
    "CONTROLS",
    "DIDN",
    "GRID",
    "LONG_STEPS",
    "NOISY_SCHEDULE",
    "NOISY_SNR_DB",
    "NO_BATCHNORM",
    "NO_BATCHNORM_METHODS",
    "OVERFIT_DB",
    "REGIMES",
    "SMALL_SLICES",
    "TINY_SLICES",
    "VERDICT_METHODS",
    "VERDICT_REFERENCES",
    "Overfitting",
    "RegimeRun",
    "final_drop",
    "harder_suites",
    "max_val_drop",
    "overfitting",
    "paired_summary",
    "psnr_by_network",
    "pun_contrasts",
    "shared_seeds",
    "significance",
    "without_batchnorm",
]
