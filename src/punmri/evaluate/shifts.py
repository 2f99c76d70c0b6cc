"""Distribution-shift test suites declared in the config (``evaluate.suites``).

Each :class:`~punmri.config.SuiteConfig` names a source of images (the held-out ``test`` slab,
another ``coronal``/``sagittal`` view of the volume cropped to the test slab's extent, or a
file/folder path), overrides of the
physics section (e.g. ``{acceleration: 8}``) and whether to insert synthetic lesions. Users add
suites in YAML without code; :func:`build_suites` turns them into fixed, seeded
:class:`~punmri.evaluate.suites.Suite` objects whose descriptions say what shifted relative to
training. :data:`SHIFT_SUITES` is the standard generalization suite (:func:`shift_suites_yaml`
prints it as a config block) and :data:`SUITE_GROUPS` groups its suites for the report.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..config import PhysicsConfig, RunConfig, SuiteConfig, _convert
from ..data.anatomy import load_source_volume, other_view, view_crop_note
from ..data.batches import fixed_samples
from ..data.lesions import lesion_images
from ..data.simulate import Sample
from ..data.sources import ImageSet, load_images
from ..errors import InputError
from .suites import Suite, path_suite_name

VIEW_SOURCES: tuple[str, ...] = ("axial", "coronal", "sagittal")
"""Suite sources that name a view of the training volume."""

SHIFT_SUITES: tuple[SuiteConfig, ...] = (
    SuiteConfig(name="id"),
    SuiteConfig(name="equispaced", physics={"mask_kind": "equispaced"}),
    SuiteConfig(name="gaussian1d", physics={"mask_kind": "gaussian1d"}),
    SuiteConfig(name="poisson2d", physics={"mask_kind": "poisson2d"}),
    SuiteConfig(name="radial", physics={"mask_kind": "radial"}),
    SuiteConfig(name="acc2", physics={"acceleration": 2.0}),
    SuiteConfig(name="acc6", physics={"acceleration": 6.0}),
    SuiteConfig(name="acc8", physics={"acceleration": 8.0}),
    SuiteConfig(name="coronal", source="coronal"),
    SuiteConfig(name="sagittal", source="sagittal"),
    SuiteConfig(name="snr30", physics={"snr_db": 30.0}),
    SuiteConfig(name="snr20", physics={"snr_db": 20.0}),
    SuiteConfig(name="coils4", physics={"coils": 4}),
    SuiteConfig(name="coils16", physics={"coils": 16}),
    SuiteConfig(name="coil-geometry", physics={"coil_radius": 1.1, "coil_jitter": 0.5}),
    SuiteConfig(name="single-coil", physics={"coils": 1}),
    SuiteConfig(name="lesions", lesions=True),
)
"""The standard generalization suite for a model trained with random 1D 4x sampling, 8 coils and
SNR 40 dB: in-distribution, then one shift at a time (sampling pattern at the training
acceleration, acceleration, anatomy/view, noise, coils, pathology)."""

SUITE_GROUPS: dict[str, tuple[str, ...]] = {
    "sampling": ("equispaced", "gaussian1d", "poisson2d", "radial"),
    "acceleration": ("acc2", "acc6", "acc8"),
    "anatomy": ("coronal", "sagittal"),
    "noise": ("snr30", "snr20"),
    "coils": ("coils4", "coils16", "coil-geometry", "single-coil"),
    "pathology": ("lesions",),
}
"""Kinds of shift -> suite names of :data:`SHIFT_SUITES`, for the report."""

_LABELS: dict[str, str] = {
    "mask_kind": "mask",
    "acceleration": "acceleration",
    "center_fraction": "center fraction",
    "coils": "coils",
    "coil_radius": "coil radius",
    "coil_jitter": "coil jitter",
    "snr_db": "SNR",
    "phase_amplitude": "phase amplitude",
}
"""Report labels of the physics fields that change a fixed test set (``fresh`` only affects
training and is not reported)."""

KSPACE_PHYSICS: tuple[str, ...] = ("mask_kind", "acceleration", "center_fraction")
"""Physics fields that apply to measured k-space sources (the data keeps its own coils, phase and
noise; see :mod:`punmri.data.kspace_sources`)."""


def is_kspace_source(source: str | Path) -> bool:
    """Whether a suite source is measured k-space: a ``.h5`` file or a folder holding some."""
    path = Path(source)
    if path.name.lower().endswith(".h5"):
        return True
    return path.is_dir() and any(
        p.is_file() and p.name.lower().endswith(".h5") for p in path.iterdir()
    )


def suite_group(name: str) -> str | None:
    """The :data:`SUITE_GROUPS` kind of a suite name, or ``None`` (``id``, user suites)."""
    for group, names in SUITE_GROUPS.items():
        if name in names:
            return group
    return None


def suite_physics(base: PhysicsConfig, overrides: Mapping[str, Any], where: str) -> PhysicsConfig:
    """``base`` with ``overrides`` applied, each value validated against the field's type.

    Args:
        base: the run's physics section.
        overrides: field name -> value (YAML scalars; e.g. ``{"acceleration": 8}``).
        where: config location for error messages (e.g. ``evaluate.suites[3].physics``).

    Raises:
        InputError: an unknown field (the message lists the accepted ones) or a bad value.
    """
    hints = typing.get_type_hints(PhysicsConfig)
    names = [f.name for f in dataclasses.fields(PhysicsConfig)]
    changes = {}
    for key, value in overrides.items():
        if key not in hints:
            raise InputError(
                f"unknown config key {where}.{key}; accepted physics keys: {', '.join(names)}"
            )
        changes[key] = _convert(value, hints[key], f"{where}.{key}")
    return dataclasses.replace(base, **changes)


def _fmt(key: str, value: Any) -> str:
    if key == "snr_db":
        return "noiseless" if value is None else f"{value:g}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


#: What :func:`describe_shift` says when nothing differs from training.
IN_DISTRIBUTION = "in distribution"


def describe_shift(
    train_physics: PhysicsConfig,
    physics: PhysicsConfig,
    train_view: str,
    source: str,
    lesions: bool,
    kspace: bool = False,
) -> str:
    """One line saying what differs from training, e.g. ``acceleration 4 -> 8, lesions``.

    ``in distribution`` when nothing differs. For a measured k-space source (``kspace``) only the
    sampling fields :data:`KSPACE_PHYSICS` are compared; its own ``test`` split (a measured run)
    is the training data's distribution, another source is named.
    """
    parts = []
    if kspace and source != "test":
        parts.append(f"measured k-space from {source}")
    elif source in VIEW_SOURCES and source != train_view:
        parts.append(f"view {train_view} -> {source}")
    elif source not in ("test", *VIEW_SOURCES):
        parts.append(f"images from {source}")
    for key, label in _LABELS.items():
        if kspace and key not in KSPACE_PHYSICS:
            continue
        old, new = getattr(train_physics, key), getattr(physics, key)
        if old != new:
            unit = " dB" if key == "snr_db" and new is not None else ""
            parts.append(f"{label} {_fmt(key, old)} -> {_fmt(key, new)}{unit}")
    if lesions:
        parts.append("lesions")
    return ", ".join(parts) or IN_DISTRIBUTION


def _check_suites(suites: Sequence[SuiteConfig], extra_names: Sequence[str]) -> None:
    if not suites:
        raise InputError("evaluate.suites: expected at least the in-distribution suite 'id'")
    first = suites[0]
    if first.name != "id" or first.source != "test" or first.physics or first.lesions:
        raise InputError(
            "evaluate.suites[0]: the first suite must be the in-distribution suite "
            f"{{name: id, source: test}} without physics overrides or lesions; got name "
            f"{first.name!r}, source {first.source!r}, physics {first.physics!r}, "
            f"lesions {first.lesions}"
        )
    seen: set[str] = set()
    for i, name in enumerate([*(s.name for s in suites), *extra_names]):
        if not name:
            raise InputError(f"evaluate.suites[{i}].name: expected a non-empty suite name")
        if name in seen:
            raise InputError(
                f"evaluate.suites: duplicate suite name {name!r} (extra sources are named after "
                "their file); suite names must be unique"
            )
        seen.add(name)


def _suite_images(
    cfg: RunConfig,
    splits: Mapping[str, ImageSet],
    source: str,
    views: dict[str, tuple[ImageSet, str]],
) -> tuple[ImageSet, str]:
    """Magnitude images of a suite source and a note for its description (views, cropped to the
    test slab by :func:`~punmri.data.anatomy.other_view`, are cached in ``views`` within one
    build)."""
    if source == "test":
        if "test" not in splits:
            raise InputError("splits: expected a 'test' image set for suites with source 'test'")
        return splits["test"], ""
    if source in VIEW_SOURCES:
        if source == cfg.data.view:
            raise InputError(
                f"evaluate.suites source {source!r} is the training view (data.view), whose "
                "slices include the training slab; use source 'test' instead"
            )
        if source not in views:
            volume = load_source_volume(cfg.data)
            views[source] = (
                other_view(cfg.data, source, volume),
                view_crop_note(cfg.data, source, volume),
            )
        return views[source]
    return load_images(source, shape=cfg.data.image_size, min_tissue=cfg.data.min_tissue), ""


def _kspace_samples(cfg: RunConfig, path: str, physics: PhysicsConfig) -> list[Sample]:
    """Samples from measured fastMRI k-space (HDF5) at its native resolution, retrospectively
    undersampled with ``physics`` and scored against each file's stored reconstruction (files of
    the test split, which have none, are refused)."""
    from ..data.kspace_sources import fastmri_samples

    run = dataclasses.replace(cfg, physics=physics)
    return fastmri_samples(path, run, cfg.evaluate.test_seed, max_slices=cfg.data.max_test_slices)


def build_suite(
    cfg: RunConfig,
    splits: Mapping[str, ImageSet],
    suite: SuiteConfig,
    where: str = "evaluate.suites",
    views: dict[str, tuple[ImageSet, str]] | None = None,
) -> Suite:
    """One fixed, seeded test suite from its config (see :func:`build_suites`)."""
    physics = suite_physics(cfg.physics, suite.physics, f"{where}.physics")
    kspace = suite.source not in ("test", *VIEW_SOURCES) and is_kspace_source(suite.source)
    shift = describe_shift(cfg.physics, physics, cfg.data.view, suite.source, suite.lesions, kspace)
    description = suite.description or shift
    same = shift == IN_DISTRIBUTION
    seed = cfg.evaluate.test_seed
    if kspace:
        if suite.lesions:
            raise InputError(
                f"{where}.lesions: lesions cannot be inserted into measured k-space "
                f"({suite.source}); use an image source"
            )
        ignored = sorted(set(suite.physics) - set(KSPACE_PHYSICS))
        if ignored:
            raise InputError(
                f"{where}.physics.{ignored[0]}: has no effect on measured k-space "
                f"({suite.source}); only {', '.join(KSPACE_PHYSICS)} apply"
            )
        samples = _kspace_samples(cfg, suite.source, physics)
        return Suite(suite.name, samples, physics, description, same)
    images, note = _suite_images(cfg, splits, suite.source, {} if views is None else views)
    if note and not suite.description:
        description = f"{description}, {note}"
    if not suite.lesions:
        samples = fixed_samples(images.images, images.names, physics, seed, suite.name)
        return Suite(suite.name, samples, physics, description, same)
    with_lesions, rois = lesion_images(images.images, seed, suite.name)
    samples = fixed_samples(with_lesions, images.names, physics, seed, suite.name)
    for sample, roi in zip(samples, rois, strict=True):
        sample.extras["roi"] = roi
    return Suite(suite.name, samples, physics, description, same)


def build_suites(
    cfg: RunConfig,
    splits: Mapping[str, ImageSet],
    extra_sources: Sequence[str | Path] = (),
) -> list[Suite]:
    """The run's test suites: ``cfg.evaluate.suites``, then one per extra image source.

    Extra sources are ``cfg.data.paths`` followed by ``extra_sources`` (a path listed twice is
    used once); each is simulated with the run's physics and named by
    :func:`~punmri.evaluate.suites.path_suite_name`. Slice ``i`` of suite ``S`` is simulated with
    the generator ``(evaluate.test_seed, S, i)``, so two builds give bitwise identical suites.

    Args:
        cfg: run configuration.
        splits: the run's image sets (``test`` is used by suites with source ``test``).
        extra_sources: further files/folders (NIfTI/DICOM/NumPy/PNG/TIFF, or fastMRI ``.h5``
            files/folders, read at their native resolution by
            :func:`punmri.data.kspace_sources.fastmri_samples` with at most
            ``data.max_test_slices`` slices per file).

    Raises:
        InputError: the first suite is not ``{name: id, source: test}`` without overrides, a
            suite name is repeated, a physics override is unknown or has a bad value.
    """
    paths = list(dict.fromkeys(str(p) for p in [*cfg.data.paths, *extra_sources]))
    extras = [SuiteConfig(name=path_suite_name(p), source=p) for p in paths]
    _check_suites(cfg.evaluate.suites, [s.name for s in extras])
    views: dict[str, tuple[ImageSet, str]] = {}
    suites = [
        build_suite(cfg, splits, suite, f"evaluate.suites[{i}]", views)
        for i, suite in enumerate(cfg.evaluate.suites)
    ]
    suites += [build_suite(cfg, splits, suite, f"source {suite.source}") for suite in extras]
    return suites


def build_measured_suites(
    cfg: RunConfig, cache: Path, extra_sources: Sequence[str | Path] = ()
) -> list[Suite]:
    """The test suites of a measured-k-space run (``data.source: fastmri``), lazily read.

    Source ``test`` is ``data.root/test``; any other source is a folder (or file) of fastMRI
    files, prepared on first use: an anatomy shift such as ``{name: knee, source: PATH}``.
    Physics overrides may change the sampling only (``mask_kind`` random/equispaced,
    ``acceleration(s)``, ``center_fraction(s)``). Each volume has one mask, seeded by
    ``evaluate.test_seed`` and the volume's name (the same for every method and run); the suite
    keeps whole volumes up to ``data.max_test_slices`` slices.
    """
    from ..data.measured import LazySamples, measured_dataset, prepared_root

    paths = list(dict.fromkeys(str(p) for p in [*cfg.data.paths, *extra_sources]))
    extras = [SuiteConfig(name=path_suite_name(p), source=p) for p in paths]
    _check_suites(cfg.evaluate.suites, [s.name for s in extras])
    sampling = {*KSPACE_PHYSICS, "accelerations", "center_fractions"}
    suites = []
    for i, suite in enumerate([*cfg.evaluate.suites, *extras]):
        where = (
            f"evaluate.suites[{i}]" if i < len(cfg.evaluate.suites) else f"source {suite.source}"
        )
        ignored = sorted(set(suite.physics) - sampling)
        if ignored or suite.lesions:
            what = "lesions" if suite.lesions else f"physics.{ignored[0]}"
            raise InputError(
                f"{where}.{what}: has no effect on measured k-space; only the sampling "
                f"({', '.join(sorted(sampling))}) can shift"
            )
        physics = suite_physics(cfg.physics, suite.physics, f"{where}.physics")
        if suite.source == "test":
            folder, suite_cache, split = Path(cfg.data.root), cache, "test"
        else:
            folder, split = Path(suite.source), None
            if folder.is_file():
                folder, split = folder.parent, [folder.name]
            suite_cache = prepared_root(folder)
        data = measured_dataset(
            folder, suite_cache, split, physics, cfg.evaluate.test_seed, True, f"{where}.physics"
        )
        shift = describe_shift(cfg.physics, physics, cfg.data.view, suite.source, False, True)
        samples = LazySamples(data, cfg.data.max_test_slices)
        suites.append(
            Suite(
                suite.name, samples, physics, suite.description or shift, shift == IN_DISTRIBUTION
            )  # type: ignore[arg-type]
        )
    return suites


def shift_suites_yaml(suites: Sequence[SuiteConfig] = SHIFT_SUITES) -> str:
    """An ``evaluate: suites:`` YAML block for ``suites`` (defaults left out), for configs."""
    entries = []
    for suite in suites:
        entry: dict[str, Any] = {"name": suite.name}
        if suite.source != "test":
            entry["source"] = suite.source
        if suite.physics:
            entry["physics"] = dict(suite.physics)
        if suite.lesions:
            entry["lesions"] = True
        if suite.description:
            entry["description"] = suite.description
        entries.append(entry)
    return yaml.safe_dump(
        {"evaluate": {"suites": entries}}, sort_keys=False, default_flow_style=None
    )
