"""trevo — Transformer evolution: every published part of the Transformer block as a named, tested
component, and an arena that compares them under controlled variables."""

__version__ = "0.1.0"

from trevo import components, models, plugins, tasks  # noqa: E402,F401  (importing registers everything)
from trevo.registry import build, create, entries, get  # noqa: E402

# Components of installed packages (entry points), then those a parent process loaded (TREVO_IMPORT).
plugins.load_installed()
plugins.load_environment()

__all__ = ["build", "create", "entries", "get", "__version__"]
