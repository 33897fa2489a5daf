"""Inference-time methods (registry kind ``tool``): they wrap a trained model rather than being a part
of one. Every module here is imported (and so registered) on ``import trevo``."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "cli":
        importlib.import_module(f"{__name__}.{_module.name}")
