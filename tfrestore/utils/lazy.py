"""Names of a package imported on first access (PEP 562), so that ``import tfrestore`` and the
command line's ``--help`` do not load TensorFlow."""

from __future__ import annotations

import importlib
import sys

__all__ = ["lazy_attributes"]


def lazy_attributes(package, modules):
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package`` (a module name).

    ``modules`` maps each submodule (relative to ``package``) to the public names it defines;
    the key ``None`` lists names that are subpackages themselves. A value is cached in the
    package after its first access.
    """
    namespace = sys.modules[package].__dict__
    exports = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        source = exports[name]
        if source is None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            value = getattr(importlib.import_module(f"{package}.{source}"), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__, list(exports)
