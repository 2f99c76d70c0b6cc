"""``python -m punmri``: the command line, as the ``punmri`` script runs it.

This is what ``torchrun --nproc_per_node N -m punmri run --config C`` starts in each of its
processes (``punmri run``, ``train`` and ``eval`` join the process group torchrun describes).
"""

from __future__ import annotations

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
