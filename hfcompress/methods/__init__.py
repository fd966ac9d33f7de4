"""One folder per compression method; every folder here is imported by ``import hfcompress``, and importing it
registers its method (``register_method`` in the folder's ``__init__.py``). Adding a method is adding a folder."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.ispkg:
        importlib.import_module(f"{__name__}.{_module.name}")
