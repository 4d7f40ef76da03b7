"""Is anyone serving a UNIX socket path? (a connect attempt, nothing sent)."""

from __future__ import annotations

import socket
from pathlib import Path


def answers(path: Path | str, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    """True when a socket of ``kind`` at ``path`` accepts a connection."""
    with socket.socket(socket.AF_UNIX, kind) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
