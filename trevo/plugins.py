"""Components of your own, without editing trevo.

A plug-in is any module that calls ``trevo.registry.register`` when imported (see the worked example
in docs/components.md). It is loaded

- by ``--import MODULE_OR_FILE`` on every ``trevo`` verb (a dotted module name on ``sys.path`` or the
  path of a ``.py`` file), or ``trevo.plugins.load(...)`` in Python;
- for installed packages, through the ``trevo.plugins`` entry-point group
  (``[project.entry-points."trevo.plugins"] my_mixers = "my_package.mixers"``), on ``import trevo``.

Every plug-in loaded is also recorded in the environment variable ``TREVO_IMPORT`` (paths joined by
``os.pathsep``), and ``import trevo`` loads what it lists: processes that a run starts (the arena's
workers, torchrun's ranks) inherit the environment, so they know the same components.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from trevo.errors import TrevoError

ENV = "TREVO_IMPORT"
GROUP = "trevo.plugins"


class PluginError(TrevoError, ImportError):
    """A plug-in that cannot be found or fails on import."""


def _file_module_name(path: Path) -> str:
    return f"trevo_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def load(spec: str) -> ModuleType:
    """Import the plug-in ``spec`` (a module name or a ``.py`` file) once, and record it in TREVO_IMPORT."""
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        path = path.resolve()
        if not path.is_file():
            raise PluginError(f"--import {spec!r}: no such file")
        name = _file_module_name(path)
        module = sys.modules.get(name)
        if module is None:
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except Exception as e:
                del sys.modules[name]
                raise PluginError(f"--import {spec!r} failed: {type(e).__name__}: {e}") from e
        recorded = str(path)
    else:
        try:
            module = importlib.import_module(spec)
        except ModuleNotFoundError as e:
            raise PluginError(f"--import {spec!r}: no module of that name on the Python path ({e}); give a "
                              f"module name that `python -c 'import {spec}'` finds, or the path of a .py file") from e
        except Exception as e:
            raise PluginError(f"--import {spec!r} failed: {type(e).__name__}: {e}") from e
        recorded = spec
    listed = [s for s in os.environ.get(ENV, "").split(os.pathsep) if s]
    if recorded not in listed:
        os.environ[ENV] = os.pathsep.join([*listed, recorded])
    return module


def load_environment() -> None:
    """Load every plug-in that TREVO_IMPORT lists (a parent process loaded them)."""
    for spec in [s for s in os.environ.get(ENV, "").split(os.pathsep) if s]:
        load(spec)


def load_installed() -> list[str]:
    """Load the modules that installed packages declare in the ``trevo.plugins`` entry-point group."""
    loaded = []
    for point in importlib.metadata.entry_points(group=GROUP):
        try:
            point.load()
        except Exception as e:
            raise PluginError(f"the installed plug-in {point.name!r} ({point.value}) failed on import: "
                              f"{type(e).__name__}: {e}; uninstall it or fix it") from e
        loaded.append(point.value)
    return loaded
