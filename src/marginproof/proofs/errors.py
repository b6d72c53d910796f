"""Verification failures: a machine-readable code plus a one-line reason.

A :class:`VerificationError` means "the evidence does not check out" (tampering, a fork, a
wrong key): the CLI prints ``REJECT <code>: <reason>`` and exits 1. Malformed files that cannot
even be parsed raise :class:`marginproof.errors.InputError` instead (exit 2, like the rest of the
CLI); see ``docs/proofs.md``.
"""

from __future__ import annotations

from marginproof.errors import MarginproofError


class VerificationError(MarginproofError):
    """A proof, record, signature or log failed verification.

    Parameters
    ----------
    code : str
        Stable dotted identifier of the failed check, e.g. ``path[3].sums.range``.
    message : str
        What exactly did not match, in one line.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")

    def __reduce__(self) -> tuple[type[VerificationError], tuple[str, str]]:
        return (type(self), (self.code, self.message))
