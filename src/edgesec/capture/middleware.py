"""The middleware plugin interface and its discovery.

A middleware is a class with a ``name`` and three methods — the original's
``init``/``process``/``free`` idea::

    class MyMiddleware:
        name = "mine"
        def init(self, ctx: Context) -> None: ...      # open files, create tables
        def process(self, batch: Batch) -> None: ...   # called per batch of frames
        def close(self) -> None: ...                   # flush and release

Plugins are found through the Python entry-point group
``edgesec.capture.middlewares`` (``name = "package.module:Class"``); the
built-ins are registered the same way in edgesec's pyproject.toml.
"""

from __future__ import annotations

import importlib
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from edgesec.capture.columnar import Columns
from edgesec.capture.decode import Rows
from edgesec.capture.options import CaptureOptions
from edgesec.capture.pcapfile import Packet

ENTRY_POINT_GROUP = "edgesec.capture.middlewares"
# The built-ins' entry points (pyproject.toml; a unit test keeps the two equal),
# loaded without scanning every installed distribution's metadata: that scan
# costs the capture worker ~4 MiB of RSS and start-up time.
BUILTINS = {
    "header": "edgesec.capture.header:HeaderMiddleware",
    "pcap": "edgesec.capture.pcapstore:PcapMiddleware",
    "cleaner": "edgesec.capture.cleaner:CleanerMiddleware",
    "flows": "edgesec.capture.flows:FlowsMiddleware",
    "eve": "edgesec.capture.eve:EveMiddleware",
    "protobuf": "edgesec.capture.protobuf:ProtobufMiddleware",
}


@dataclass(slots=True)
class Context:
    """What a middleware gets at init.

    ``db`` is the shared capture-DB connection (WAL); the pipeline commits it
    after every batch (or once at the end in single-transaction mode), so a
    middleware only executes statements on it. ``bulk`` is set for an
    import (recap): secondary indexes may be built at close. ``stats`` holds counters the
    service reports; ``shared`` lets cooperating middlewares exchange state
    (the pcap middleware publishes its open file names for the cleaner).
    """

    db: sqlite3.Connection
    options: CaptureOptions
    linktype: int = 1
    transaction: bool = False
    bulk: bool = False
    stats: dict[str, int] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Batch:
    """Frames captured on one interface; ``frames[i]`` decodes ``packets[i]``.

    ``frames`` is empty when every middleware of the pipeline declared
    ``needs_decode = False`` (e.g. pcap + cleaner only). A pipeline
    whose decoding middlewares all declare ``columnar = True`` (header)
    gets ``columns`` instead of ``frames``: per table, the column values of
    its rows in one flat list (:mod:`edgesec.capture.columnar`).
    """

    ifname: str
    packets: list[Packet]
    frames: list[Rows]
    columns: Columns | None = None


@runtime_checkable
class Middleware(Protocol):
    """The plugin interface (see module docstring)."""

    name: str

    def init(self, ctx: Context) -> None: ...

    def process(self, batch: Batch) -> None: ...

    def close(self) -> None: ...


class MiddlewareError(Exception):
    """A middleware could not be found or loaded."""


def available() -> dict[str, str]:
    """Registered middleware names -> ``module:Class``."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load_class(value: str) -> Any:
    module, _, attr = value.partition(":")
    return getattr(importlib.import_module(module), attr)


def load(name: str) -> Middleware:
    """Instantiate the middleware registered as ``name``."""
    value = BUILTINS.get(name) or available().get(name)
    if value is None:
        known = ", ".join(sorted(available())) or "none"
        raise MiddlewareError(f"unknown capture middleware {name!r} (registered: {known})")
    try:
        cls = _load_class(value)
        mw = cls()
    except Exception as exc:  # a plugin's import error must not look like ours
        raise MiddlewareError(f"cannot load middleware {name!r}: {exc}") from exc
    if not isinstance(mw, Middleware):
        raise MiddlewareError(f"middleware {name!r} lacks init/process/close")
    return mw
