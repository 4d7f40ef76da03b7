"""Where backend secrets (passphrase, PIN) come from — never the command line.

Order: an explicit override, then a file named in the config, then a systemd
credential (``$CREDENTIALS_DIRECTORY/<name>``), then an environment variable.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from edgesec.crypt.errors import BackendError

log = logging.getLogger(__name__)


def _read_secret_file(path: Path) -> bytes:
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise BackendError(f"cannot read secret file {path}: {exc.strerror}") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret file %s is accessible by group/others; chmod 600 it", path)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    return data


def find_secret(
    *,
    override: bytes | None,
    file: Path | None,
    credential: str | None,
    env_var: str,
    what: str,
) -> bytes:
    """Return the first non-empty secret from the sources; BackendError if none."""
    if override:
        return override
    if file is not None:
        data = _read_secret_file(file)
        if data:
            return data
        raise BackendError(f"{what} file {file} is empty")
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and credential and "/" not in credential:
        path = Path(cred_dir) / credential
        if path.exists():
            data = _read_secret_file(path)
            if data:
                return data
    value = os.environb.get(env_var.encode())
    if value:
        return value
    raise BackendError(
        f"no {what}: set {env_var}, a file in the config, or systemd credential {credential!r}"
    )
