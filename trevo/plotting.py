"""matplotlib, an optional dependency (the `report` extra), imported only where a plot is drawn."""

from __future__ import annotations

from typing import Any

from trevo.errors import TrevoError


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend, or one clear error naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise TrevoError("plots need matplotlib, an optional dependency of trevo: pip install 'trevo[report]'"
                         ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
