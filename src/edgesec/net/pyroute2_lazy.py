"""Import pyroute2's parts without its package ``__init__``, which imports them all.

``import pyroute2`` (and so ``from pyroute2.iproute.linux import ...``, which
runs the package first) loads NDB, IPDB, IPVS, nl80211, plan9 and ~160
modules: +11.8 MB resident for the daemon's lifetime, where the daemon uses
``AsyncIPRoute`` and, on a NAT flip, ``Conntrack`` (+5.7 MB for those).

:func:`install` puts a lazy ``pyroute2`` package in ``sys.modules`` (same
``__path__`` and spec, so submodules import as usual); only reading a name
that is not a submodule (``from pyroute2 import IPRoute``) runs the real
``__init__`` into it, so other code sees the whole library as before.  When
pyroute2 is already imported, nothing is changed.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

PACKAGE = "pyroute2"


class _LazyPackage(types.ModuleType):
    """``pyroute2`` whose ``__init__`` runs on the first public name read."""

    _loaded = False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if importlib.util.find_spec(f"{PACKAGE}.{name}") is not None:
            return importlib.import_module(f"{PACKAGE}.{name}")
        if not self._loaded:
            self._loaded = True
            spec = self.__spec__
            assert spec is not None and spec.loader is not None
            spec.loader.exec_module(self)  # the real __init__, into this module
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")


def install() -> None:
    """Make ``pyroute2`` a lazy package unless it is imported already."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        return  # not installed: the real import reports it
    module = _LazyPackage(PACKAGE)
    module.__spec__ = spec
    module.__path__ = list(spec.submodule_search_locations)
    module.__file__ = spec.origin
    module.__package__ = PACKAGE
    sys.modules[PACKAGE] = module
