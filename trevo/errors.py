"""The errors trevo raises for bad input. Each message names what is wrong and the fix; the CLI prints
it on one line and exits with status 2. Anything else that escapes is a bug and keeps its traceback."""

from __future__ import annotations


class TrevoError(Exception):
    """Base of the errors trevo raises for bad input."""


class UnknownComponentError(TrevoError, KeyError):
    """A registry name that does not exist (the message lists the valid ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class IncompatibleError(TrevoError, ValueError):
    """A combination of components or options that cannot work together (found at build time)."""
