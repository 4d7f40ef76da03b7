"""One daemon per state: exclusive locks on the registry DB, the vault and the control socket.

A second ``edgesec run`` on the same state (a copied config with only
``pidFilePath`` changed, say) would otherwise take over the control socket and
delete it on exit, and write the same SQLite files.  Each state path gets a
sibling ``<path>.lock`` file holding an ``flock`` for the life of the daemon
(released by the kernel when the process dies, even on ``kill -9``; never
inherited by children, so an orphaned dnsmasq cannot keep it).  The lock
files are left in place: removing one would let two daemons lock two
different files of the same name.

Also here: the process umask for state files, and the one-line warning about
state directories other users can read or write.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgesec.config import Settings

log = logging.getLogger(__name__)

STATE_UMASK = 0o077  # state files are the daemon's own: 0600 / 0700


class StateLocked(RuntimeError):
    """Another process holds this state."""


def lock_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.lock")


@dataclass
class StateLocks:
    """The held locks; :meth:`release` (or process exit) gives them up."""

    fds: list[int] = field(default_factory=list)

    def release(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode().strip()
        if text:
            return f"pid {int(text)}"
    return "another process"


def acquire(paths: Iterable[tuple[str, Path]]) -> StateLocks:
    """Lock every ``(label, path)``; raise :class:`StateLocked` naming the first one held.

    Nothing of a daemon that holds the locks is touched: the lock file is
    opened without truncation, and only written after our lock succeeded.
    """
    locks = StateLocks()
    try:
        for label, path in paths:
            lpath = lock_path(path)
            lpath.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lpath, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _holder(fd)
                os.close(fd)
                raise StateLocked(
                    f"{label} '{path}' is in use by another edgesec ({holder}, lock "
                    f"'{lpath}'): refusing to run a second daemon on the same state") from None
            locks.fds.append(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        locks.release()
        raise
    return locks


def state_paths(settings: Settings) -> list[tuple[str, Path]]:
    """The paths a daemon owns exclusively: connection DB, crypt DB (when the vault
    runs), control socket."""
    system = settings.system
    crypt = system.crypt_db_path if system.exec_crypt else None
    out: list[tuple[str, Path]] = []
    for label, value in (("[system] connectionDbPath", system.connection_db_path),
                         ("[system] cryptDbPath", crypt),
                         ("[supervisor] supervisorControlPath",
                          settings.supervisor.supervisor_control_path)):
        if value is not None and str(value) not in ("", ":memory:"):
            out.append((label, Path(value)))
    return out


def open_directories(paths: Iterable[Path]) -> list[tuple[Path, int]]:
    """(directory, mode) of each existing parent other users may read or write."""
    out: list[tuple[Path, int]] = []
    for directory in dict.fromkeys(p.parent for p in paths):
        try:
            mode = stat.S_IMODE(directory.stat().st_mode)
        except OSError:
            continue
        if mode & 0o006:
            out.append((directory, mode))
    return out


def warn_open_directories(paths: Iterable[Path]) -> None:
    """One warning line naming the state directories open to other users."""
    found = open_directories(paths)
    if found:
        listed = ", ".join(f"{d} ({m:04o})" for d, m in found)
        log.warning("state directory open to other users: %s; edgesec's files there are "
                    "0600, but make the directory 0700 or 0750 (chmod o-rwx)", listed)
