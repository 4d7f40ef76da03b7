"""Create the daemon's vault in a short-lived child process.

Creating a vault encrypts: its verifier and first data key are wrapped with
AES-256-GCM, which loads cryptography's bindings, ~7 MB resident that a daemon
would keep for its whole life though it may never encrypt again. So on a first
boot the daemon runs ``python -m edgesec.crypt.firstboot``, which creates the
vault and exits, and then opens it like any other start: by the key check,
without cryptography (see :mod:`edgesec.crypt.vault`).

The child reads the settings (and a test's secret override) as JSON on stdin
and finds the passphrase or PIN where the daemon would (environment, file,
systemd credential: it inherits them). It answers one JSON line on stdout,
``{"ok": true}`` or ``{"error": "<CryptError subclass>", "message": "..."}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from edgesec.crypt import errors
from edgesec.crypt.errors import CryptError
from edgesec.crypt.settings import CryptSettings

TIMEOUT_S = 300.0  # scrypt at its largest allowed cost, or a slow token, with room


def _encode(settings: CryptSettings) -> dict[str, Any]:
    return {f.name: str(v) if isinstance(v := getattr(settings, f.name), Path) else v
            for f in fields(settings)}


def _decode(values: dict[str, Any]) -> CryptSettings:
    known = {f.name: str(f.type) for f in fields(CryptSettings)}
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            raise ValueError(f"unknown crypt setting {name!r}")
        out[name] = Path(value) if value is not None and "Path" in known[name] else value
    return CryptSettings(**out)


def create_in_child(settings: CryptSettings, secret: bytes | None = None) -> None:
    """Create the vault at ``settings.db_path`` in a child; CryptError with its reason."""
    request = json.dumps({"settings": _encode(settings),
                          "secret": None if secret is None else secret.hex()})
    try:
        done = subprocess.run([sys.executable, "-m", "edgesec.crypt.firstboot"],
                              input=request, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CryptError(f"creating the vault failed: {exc}") from exc
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        detail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise CryptError(f"creating the vault failed: {detail}") from None
    if answer.get("ok") is True and done.returncode == 0:
        return
    kind = getattr(errors, str(answer.get("error")), CryptError)
    if not (isinstance(kind, type) and issubclass(kind, CryptError)):
        kind = CryptError
    raise kind(str(answer.get("message", "creating the vault failed")))


def main() -> int:
    """The child: create the vault described on stdin, answer on stdout."""
    from edgesec.crypt.backends import load_backend
    from edgesec.crypt.vault import Vault

    try:
        request = json.loads(sys.stdin.read())
        settings = _decode(request["settings"])
        secret = None if request.get("secret") is None else bytes.fromhex(request["secret"])
        if settings.db_path is None:
            raise errors.VaultFormatError(
                "no crypt database path configured (system.cryptDbPath)")
        Vault.create(settings.db_path, load_backend(settings.backend, settings, secret)).close()
    except CryptError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        return 1
    except OSError as exc:
        print(json.dumps({"error": "VaultFormatError", "message": str(exc)}))
        return 1
    except (KeyError, TypeError, ValueError) as exc:
        print(json.dumps({"error": "CryptError", "message": f"bad request: {exc}"}))
        return 2
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
