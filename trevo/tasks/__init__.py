"""Tasks, one per module; every module here is imported (and so registered) on ``import trevo``."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
