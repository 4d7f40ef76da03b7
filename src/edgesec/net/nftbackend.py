"""How edgesec talks to nftables: the libnftables binding, or the ``nft`` binary.

Owns choosing and wrapping one of two interchangeable backends, both speaking
the same libnftables JSON:

* ``library`` — Debian's ``python3-nftables`` binding (``import nftables``),
  in-process, the fastest;
* ``binary`` — the ``nft`` program: a JSON document on ``nft -j -f -`` and
  listings from ``nft -j [-t] list ...``. Used automatically when the binding
  cannot be imported (edgesec pip-installed into a venv without system site
  packages), so that the firewall never silently goes missing.

:func:`open_backend` picks one (``auto`` tries the library, then the binary),
logs which, and raises :class:`NftUnavailable` with both reasons when neither
works. Both backends answer ``json_cmd(doc)`` and ``cmd(text, terse=False)``
with ``(rc, stdout, stderr)`` like ``nftables.Nftables``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edgesec.config import Settings

log = logging.getLogger(__name__)

BACKENDS = ("auto", "library", "binary")
NFT_TIMEOUT_S = 30.0
#: environment override of the nft binary (tests; takes precedence over the config)
NFT_BIN_ENV = "EDGESEC_NFT_BIN"


class NftUnavailable(RuntimeError):
    """No nftables backend can be used: the firewall cannot be enforced."""


class NftBackend(Protocol):
    name: str

    def json_cmd(self, doc: dict[str, Any]) -> tuple[int, str, str]: ...

    def cmd(self, text: str, terse: bool = False) -> tuple[int, str, str]: ...

    def own_pids(self) -> frozenset[int]: ...


class LibraryBackend:
    """libnftables through ``python3-nftables`` (JSON in and out)."""

    name = "library"

    def __init__(self) -> None:
        import nftables

        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)
        self._lock = threading.Lock()

    def json_cmd(self, doc: dict[str, Any]) -> tuple[int, str, str]:
        with self._lock:
            rc, out, err = self._nft.json_cmd(doc)
        return rc, json.dumps(out) if isinstance(out, dict) else str(out or ""), err or ""

    def cmd(self, text: str, terse: bool = False) -> tuple[int, str, str]:
        with self._lock:
            self._nft.set_terse_output(terse)
            try:
                result: tuple[int, str, str] = self._nft.cmd(text)
                return result
            finally:
                self._nft.set_terse_output(False)

    def own_pids(self) -> frozenset[int]:
        return frozenset({os.getpid()})


class BinaryBackend:
    """The ``nft`` program, fed the same JSON on stdin (``nft -j -f -``)."""

    name = "binary"

    def __init__(self, path: str) -> None:
        self.path = path
        self._recent: deque[int] = deque(maxlen=32)  # our nft children: their commits are ours
        self._lock = threading.Lock()

    def _run(self, argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
        try:
            proc = subprocess.Popen([self.path, *argv], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            return 127, "", f"{self.path}: {exc.strerror or exc}"
        with self._lock:
            self._recent.append(proc.pid)
        try:
            out, err = proc.communicate(stdin, timeout=NFT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return 124, "", f"{self.path} timed out after {NFT_TIMEOUT_S:.0f}s"
        return proc.returncode, out, err

    def json_cmd(self, doc: dict[str, Any]) -> tuple[int, str, str]:
        return self._run(["-j", "-f", "-"], json.dumps(doc))

    def cmd(self, text: str, terse: bool = False) -> tuple[int, str, str]:
        return self._run(["-j", *(["-t"] if terse else []), *text.split()])

    def own_pids(self) -> frozenset[int]:
        with self._lock:
            return frozenset({os.getpid(), *self._recent})


def find_nft(configured: str = "", search: Iterable[str] = ()) -> str:
    """The nft binary: ``$EDGESEC_NFT_BIN``, else ``configured``, else found on ``search``/PATH."""
    explicit = os.environ.get(NFT_BIN_ENV) or configured
    if explicit:
        return explicit
    path = os.pathsep.join([*search, os.environ.get("PATH", "")])
    return shutil.which("nft", path=path) or "nft"


def _try_binary(path: str) -> BinaryBackend:
    backend = BinaryBackend(path)
    rc, _out, err = backend.cmd("list tables")
    if rc != 0:
        raise NftUnavailable(f"{path}: {err.strip() or f'exit {rc}'}")
    return backend


def open_backend(choice: str = "auto", nft_path: str = "",
                 search: Iterable[str] = ()) -> NftBackend:
    """A working backend: ``library``, ``binary`` or ``auto`` (library, else binary)."""
    if choice not in BACKENDS:
        raise NftUnavailable(f"unknown nftables backend {choice!r} (one of {', '.join(BACKENDS)})")
    reasons = []
    if choice in ("auto", "library"):
        try:
            backend: NftBackend = LibraryBackend()
            log.info("nftables backend: library (python3-nftables)")
            return backend
        except Exception as exc:  # ImportError, OSError of a missing libnftables.so
            reasons.append(f"libnftables binding: {exc}")
    if choice in ("auto", "binary"):
        path = find_nft(nft_path, search)
        try:
            backend = _try_binary(path)
            log.info("nftables backend: binary (%s -j)%s", path,
                     f", because {reasons[0]}" if reasons else "")
            return backend
        except NftUnavailable as exc:
            reasons.append(f"nft binary: {exc}")
    raise NftUnavailable("no nftables backend works: " + "; ".join(reasons))


_shared: dict[tuple[str, str], NftBackend] = {}
_shared_lock = threading.Lock()


def shared_backend(choice: str = "auto", nft_path: str = "",
                   search: Iterable[str] = ()) -> NftBackend:
    """One backend per (choice, path) for the process (firewall and mDNS share it)."""
    key = (choice, find_nft(nft_path, search))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = open_backend(choice, nft_path, search)
        return _shared[key]


def backend_for(settings: Settings) -> NftBackend:
    """The shared backend chosen by ``[firewall] nftBackend`` / ``nftBinPath``."""
    fw = settings.firewall
    return shared_backend(fw.nft_backend, fw.nft_bin_path, settings.system.bin_path)
