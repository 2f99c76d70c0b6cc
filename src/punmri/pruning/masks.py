"""A set of binary masks keyed by parameter name, with statistics, validation and storage."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from punmri.errors import InputError
from punmri.pruning.targets import owner, raw_tensor, targets_from_type_names

FORMAT = "punmri.masks/1"


class Masks(Mapping[str, torch.Tensor]):
    """Read-only mapping ``parameter name -> bool tensor of that parameter's shape``.

    ``True`` keeps an entry, ``False`` prunes it. Tensors live on the CPU, sorted by name.

    Attributes:
        metadata: JSON-friendly dict: ``method``, ``density`` (requested), ``seed``, ``signature``
            (sorted ``[[name, shape], ...]`` of the targets), ``targets`` (the filter that chose
            them), ``cost`` and method diagnostics, as far as the producer knows them.
    """

    def __init__(
        self, masks: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None
    ) -> None:
        if not isinstance(masks, Mapping) or not masks:
            raise InputError("masks must be a non-empty mapping of parameter name -> bool tensor")
        store: dict[str, torch.Tensor] = {}
        for name in sorted(masks):
            mask = masks[name]
            if not isinstance(name, str):
                raise InputError(f"mask names must be strings, got {name!r}")
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
                raise InputError(f"mask {name!r} must be a torch.bool tensor")
            store[name] = mask.detach().to("cpu")
        self._masks = store
        self.metadata: dict[str, Any] = dict(metadata or {})

    # Mapping protocol
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __repr__(self) -> str:
        method = self.metadata.get("method", "?")
        return f"Masks({len(self)} tensors, kept {self.kept}/{self.total}, method={method!r})"

    # statistics
    @property
    def kept(self) -> int:
        """Number of kept (True) entries over all tensors."""
        return int(sum(int(m.sum()) for m in self._masks.values()))

    @property
    def total(self) -> int:
        """Number of entries over all tensors."""
        return int(sum(m.numel() for m in self._masks.values()))

    @property
    def density(self) -> float:
        """``kept / total`` in [0, 1]."""
        return self.kept / self.total

    def layer_stats(self) -> list[dict[str, Any]]:
        """One dict per tensor: ``name``, ``shape``, ``kept``, ``total``, ``density``."""
        rows = []
        for name, m in self._masks.items():
            kept, total = int(m.sum()), m.numel()
            rows.append(
                {
                    "name": name,
                    "shape": list(m.shape),
                    "kept": kept,
                    "total": total,
                    "density": kept / total if total else 0.0,
                }
            )
        return rows

    def summary(self) -> str:
        """Printable per-layer table with a total line."""
        rows = self.layer_stats()
        width = max([len("layer")] + [len(r["name"]) for r in rows])
        head = f"{'layer':<{width}}  {'shape':>18}  {'kept':>10}  {'total':>10}  {'density':>8}"
        lines = [head, "-" * len(head)]
        for r in rows:
            shape = "x".join(str(s) for s in r["shape"])
            lines.append(
                f"{r['name']:<{width}}  {shape:>18}  {r['kept']:>10}  {r['total']:>10}"
                f"  {r['density']:>8.4f}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'total':<{width}}  {'':>18}  {self.kept:>10}  {self.total:>10}  {self.density:>8.4f}"
        )
        return "\n".join(lines)

    def to_json(self) -> str:
        """JSON report (no mask bits): overall counts, per-layer stats and metadata."""
        report = {
            "kept": self.kept,
            "total": self.total,
            "density": self.density,
            "layers": self.layer_stats(),
            "metadata": self.metadata,
        }
        return json.dumps(report, indent=2, sort_keys=True, default=str)

    # validation
    def check_fits(self, model: nn.Module, targets: Sequence[str] | None = None) -> None:
        """Raise :class:`InputError` unless these masks fit ``model``.

        Checks that every mask names a tensor of ``model`` with the same shape, and that no
        expected target lacks a mask. Expected targets are ``targets`` when given, else those the
        filter in ``metadata["targets"]`` selects on ``model`` (skipped when that is absent).
        """
        extra, misshaped = [], []
        for name, mask in self._masks.items():
            found = owner(model, name)
            if found is None:
                extra.append(name)
                continue
            tensor = raw_tensor(*found)
            if tensor is None or tuple(tensor.shape) != tuple(mask.shape):
                shape = None if tensor is None else tuple(tensor.shape)
                misshaped.append(f"{name} (mask {tuple(mask.shape)}, model {shape})")
        if targets is None:
            spec = self.metadata.get("targets")
            if isinstance(spec, Mapping) and "types" in spec:
                targets = targets_from_type_names(
                    model, spec.get("include", ()), spec.get("exclude", ()), spec["types"]
                )
            else:
                targets = []
        missing = [t for t in targets if t not in self._masks]
        problems = []
        if missing:
            problems.append(f"missing masks for model weights {missing}")
        if extra:
            problems.append(f"masks for names the model does not have {extra}")
        if misshaped:
            problems.append(f"shape mismatches {misshaped}")
        if problems:
            raise InputError("masks do not fit the model: " + "; ".join(problems))

    # transformations
    def apply(self, model: nn.Module) -> nn.Module:
        """Mask ``model`` in place (see :func:`punmri.pruning.apply.apply`); returns it."""
        from punmri.pruning.apply import apply

        return apply(model, self)

    def shuffled_within_layers(self, generator: torch.Generator) -> Masks:
        """Sanity ablation (Frankle et al. 2021): same kept count per tensor, random positions."""
        if not isinstance(generator, torch.Generator):
            raise InputError("generator must be a torch.Generator")
        out = {}
        for name, m in self._masks.items():
            perm = torch.randperm(m.numel(), generator=generator, device=generator.device)
            flat = torch.zeros(m.numel(), dtype=torch.bool)
            flat[perm[: int(m.sum())].cpu()] = True
            out[name] = flat.view(m.shape)
        meta = dict(self.metadata)
        meta["method"] = f"shuffled({self.metadata.get('method', '?')})"
        meta["shuffle_seed"] = generator.initial_seed()
        return Masks(out, meta)

    def emptied(self) -> Masks:
        """The same tensors with nothing kept (every weight pruned): the reference of the
        mask check's ``loss_pruned``."""
        return Masks({name: torch.zeros_like(m) for name, m in self._masks.items()})

    # storage
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write masks and metadata with :func:`torch.save`, atomically via ``os.replace``."""
        path = Path(path)
        if path.is_dir():
            raise InputError(f"mask path {str(path)!r} is a directory; give a file name")
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, "masks": dict(self._masks), "metadata": self.metadata}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: nn.Module | None = None) -> Masks:
        """Read masks written by :meth:`save`; with ``model``, also :meth:`check_fits` it."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"mask file {str(path)!r} does not exist")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unpickling failure means a bad file
            raise InputError(
                f"mask file {str(path)!r} is not a readable torch file: {exc}"
            ) from exc
        if (
            not isinstance(payload, dict)
            or payload.get("format") != FORMAT
            or not isinstance(payload.get("masks"), dict)
        ):
            raise InputError(f"mask file {str(path)!r} is not a punmri mask file ({FORMAT})")
        masks = cls(payload["masks"], payload.get("metadata") or {})
        if model is not None:
            masks.check_fits(model)
        return masks

    def equals(self, other: Mapping[str, torch.Tensor]) -> bool:
        """True when ``other`` has the same names and identical mask bits (metadata ignored)."""
        return set(self) == set(other) and all(torch.equal(self[n], other[n]) for n in self)
