"""Components: token mixers (``mixers/``), channel mixers, norms, positions, activations.

Every module in this package and in ``mixers/`` is imported on ``import trevo``, which registers its
components: adding a family is adding a file."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
