"""trevo — Transformer evolution: every published part of the Transformer block as a named, tested
component, and an arena that compares them under controlled variables."""

__version__ = "0.1.0"

from trevo import components, models, objectives, peft, plugins, tasks, tools  # noqa: E402,F401  (importing registers everything)
from trevo.registry import build, create, entries, get  # noqa: E402

# Components of installed packages (entry points), then those a parent process loaded (TREVO_IMPORT).
plugins.load_installed()
plugins.load_environment()

# The Python API (trevo.api). The training module is loaded first, so that the name trevo.train is the
# function while ``from trevo.train import …`` still reads the module.
from trevo import arena  # noqa: E402,F401
from trevo import train as _train_module  # noqa: E402,F401
from trevo.api import create_model, load, train  # noqa: E402

__all__ = ["build", "create", "create_model", "entries", "get", "load", "train", "__version__"]
