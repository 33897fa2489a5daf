"""Models, one architecture family per module; all are registered on ``import trevo``."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from trevo.models.metaformer import build_model  # noqa: E402

__all__ = ["build_model"]
