"""YAML documents named by a packaged preset or by a file path: the arena's sweeps, evolve's specs."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import yaml

from trevo.errors import TrevoError


def preset_names(package: str) -> list[str]:
    """The presets shipped in ``package``'s ``presets`` folder, by name."""
    folder = importlib.resources.files(package) / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_yaml(package: str, source: str, what: str, error: type[TrevoError]) -> tuple[Any, str]:
    """The parsed document of preset ``source`` of ``package`` or of the file ``source`` (a ``what`` file),
    and where it came from; a missing file or invalid YAML is one ``error``."""
    names = preset_names(package)
    if source in names:
        text = (importlib.resources.files(package) / "presets" / f"{source}.yaml").read_text()
        where = f"preset {source!r}"
    else:
        path = Path(source)
        if not path.is_file():
            raise error(f"{source!r} is neither a preset ({', '.join(names)}) nor a {what} file")
        text, where = path.read_text(), str(path)
    try:
        return yaml.safe_load(text), where
    except yaml.YAMLError as e:
        raise error(f"{where} is not valid YAML: {e}") from None
