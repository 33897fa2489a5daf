"""Parameter-efficient fine-tuning (registry kind ``peft``): wrappers around a trained trevo model that
train a few parameters for a new task (``trevo.peft.base.fine_tune``). Every module here is imported (and
so registered) on ``import trevo``."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
