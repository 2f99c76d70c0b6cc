"""Which checkpoint of a trained network is tested, and how its results are named.

Every network is tested at its best-validation checkpoint (``train/best.pt``) under its plain
reported name (``dense``, ``pun``, ``pun@0.1``). With ``evaluate.checkpoints: [best, final]`` it
is also tested at its final training step (``train/last.pt``) under ``NAME~final``
(``dense~final``, ``pun@0.1~final``); per-seed records append ``#sS`` after it
(``pun~final#s2``), so :func:`~punmri.evaluate.statistics.split_seed` gives ``pun~final`` and
:func:`split_checkpoint` then ``("pun", "final")``.
"""

from __future__ import annotations

#: Checkpoint name in ``evaluate.checkpoints`` -> the file of a training directory it loads.
CHECKPOINT_FILES: dict[str, str] = {"best": "best", "final": "last"}

#: Separates a network's reported name from a checkpoint other than ``best``.
SEPARATOR = "~"


def checkpoint_name(name: str, checkpoint: str = "best") -> str:
    """The reported name of network ``name`` tested at ``checkpoint``: ``name`` itself for
    ``best``, else ``NAME~CHECKPOINT`` (``dense~final``)."""
    if checkpoint not in CHECKPOINT_FILES:
        raise ValueError(f"checkpoint {checkpoint!r}: expected one of {list(CHECKPOINT_FILES)}")
    return name if checkpoint == "best" else f"{name}{SEPARATOR}{checkpoint}"


def split_checkpoint(name: str) -> tuple[str, str]:
    """``"pun@0.1~final"`` -> ``("pun@0.1", "final")``; a plain name -> ``(name, "best")``
    (a seed suffix ``#sS`` must be split off first)."""
    base, sep, checkpoint = name.rpartition(SEPARATOR)
    if sep and checkpoint in CHECKPOINT_FILES:
        return base, checkpoint
    return name, "best"


__all__ = ["CHECKPOINT_FILES", "SEPARATOR", "checkpoint_name", "split_checkpoint"]
