"""Typed errors shared by the core and the shell.

Every rejection of bad input is an :class:`InputError` that names the offending field, so
the CLI can print one line and exit with code 2 and the service can answer 4xx.
"""

from __future__ import annotations


class MarginproofError(Exception):
    """Base class of all marginproof errors."""


class InputError(MarginproofError, ValueError):
    """Bad input: names the field and says what is wrong with it.

    Parameters
    ----------
    field : str
        Dotted path of the offending field, e.g. ``positions[2].instrument``.
    message : str
        What is wrong, in one line.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str]]:
        # pickled across the worker pools: rebuild from both fields, not from ``args``
        return (type(self), (self.field, self.message))


class UnsupportedInstrumentError(InputError):
    """A model or preset was asked to margin an instrument it does not cover."""
