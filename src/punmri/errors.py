"""Exceptions raised for bad user input.

Every error a user can trigger with a file, a config value or a command-line argument is an
:class:`InputError`: its message names the offending input and says what was expected, and the CLI
prints it as one line instead of a traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (file, config field, array shape/dtype); the message says how to fix it."""


class SharedError(InputError):
    """Another process's error raised again in this one (a distributed run stops every process
    when its main process fails; the CLI prints the message once, on the main process)."""
