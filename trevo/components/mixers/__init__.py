"""Token mixers, one family per module. Every module here is imported (and so registered) on
``import trevo``: adding a family is adding a file."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
