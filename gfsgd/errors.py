"""The project's own error for bad input, and nothing else (docs/design.md#errors).

`InputError` is what gfsgd raises when a user's argument, file or setting is wrong: the message names the
argument, the value given and what is allowed. It subclasses ValueError, so `except ValueError` keeps working.
The command-line entry points turn an InputError (and only that, with the run store's own refusals) into one
line; any other exception is a bug and keeps its traceback.

This module imports nothing, so every floor of the package may use it.
"""
from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """A bad argument, file or setting given by the user (the message says what and what is allowed)."""
