"""API bearer tokens: shown once when created, stored only as SHA-256 hashes.

A token reads ``est_<id>_<secret>``: the id finds the record, the secret is
checked against its stored hash in constant time. The store is a small JSON
file (mode 0600, replaced atomically and fsynced); the daemon re-reads it when
its modification time changes, so ``edgesec api token create`` works against a
running gateway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgesec.atomic import write_atomic

SCOPES = ("read", "operator", "admin")
PREFIX = "est"


class TokenError(ValueError):
    """A bad scope, label or token file."""


def scope_allows(have: str, need: str) -> bool:
    """``admin`` includes ``operator`` includes ``read``."""
    return SCOPES.index(have) >= SCOPES.index(need)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    scope: str
    label: str
    digest: str  # hex SHA-256 of the secret part
    created: int  # unix seconds


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    """The token file; every method re-reads it if it changed on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, TokenRecord] = {}
        self._stamp: tuple[int, int] | None = None

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._records, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            rows = json.loads(self.path.read_text())
            records = {r["id"]: TokenRecord(**r) for r in rows}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise TokenError(f"{self.path}: unreadable token file: {exc}") from None
        self._records, self._stamp = records, stamp

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps([asdict(r) for r in self._records.values()],
                                           indent=1), 0o600)
        self._stamp = None

    def records(self) -> list[TokenRecord]:
        self._refresh()
        return sorted(self._records.values(), key=lambda r: r.created)

    def create(self, scope: str, label: str = "") -> tuple[str, TokenRecord]:
        """A new token (returned once, never stored in clear) and its record."""
        if scope not in SCOPES:
            raise TokenError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if len(label) > 64 or any(not c.isprintable() for c in label):
            raise TokenError("label: at most 64 printable characters")
        self._refresh()
        token_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(24)
        record = TokenRecord(token_id, scope, label, _digest(secret), int(time.time()))
        self._records[token_id] = record
        self._write()
        return f"{PREFIX}_{token_id}_{secret}", record

    def revoke(self, token_id: str) -> bool:
        self._refresh()
        if self._records.pop(token_id, None) is None:
            return False
        self._write()
        return True

    def verify(self, token: str) -> TokenRecord | None:
        """The record of a valid token, else None (constant time in the secret)."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        try:
            self._refresh()
        except TokenError:
            return None
        record = self._records.get(parts[1])
        if record is None:
            return None
        return record if hmac.compare_digest(record.digest, _digest(parts[2])) else None
