"""matplotlib, an optional dependency (the ``report`` extra): imported only where a plot is drawn,
with a clear message where it is missing."""

from __future__ import annotations

import importlib.util
from typing import Any

from trevo.errors import TrevoError

INSTALL = "pip install 'trevo[report]'"


class MissingExtraError(TrevoError, ImportError):
    """An optional dependency that the asked-for output needs is not installed."""


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def pyplot(what: str = "plots") -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError(f"{what} need matplotlib, which is not installed: {INSTALL}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
