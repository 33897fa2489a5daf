"""trevo — Transformer evolution: every published part of the Transformer block as a named, tested
component, and an arena that compares them under controlled variables."""

__version__ = "0.1.0"

from trevo import (  # noqa: E402,F401  (importing registers everything)
    components,
    models,
    plugins,  # noqa: E402
    tasks,
)
from trevo.registry import build, create, entries, get  # noqa: E402

# Components of installed packages (entry points), then those a parent process loaded (TREVO_IMPORT).
plugins.load_installed()
plugins.load_environment()

__all__ = ["build", "create", "entries", "get", "__version__"]
