"""trevo — Transformer evolution: every published part of the Transformer block as a named, tested
component, and an arena that compares them under controlled variables."""

__version__ = "0.1.0"

from trevo import components, models, tasks  # noqa: E402,F401  (importing registers everything)
from trevo.registry import create, entries, get  # noqa: E402

__all__ = ["create", "entries", "get", "__version__"]
