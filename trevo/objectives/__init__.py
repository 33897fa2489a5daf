"""Training objectives (registry kind ``objective``): the loss a run minimises, given the model and a
task's batch. A task names its default (``Task.objective``); ``train.objective`` chooses another.
Every module here is imported (and so registered) on ``import trevo``."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
