"""Root-key backends of the vault: the small interface and the entry-point loader.

A backend owns the vault's *root key* and nothing else: it creates one, opens
an existing one from the public parameters the vault stored for it, and wraps
or unwraps data keys with it.  Backends are found through the entry-point
group ``edgesec.crypt.backends``; the built-ins (registered there too) are
loaded from their own modules first, so a plug-in cannot shadow them.  A backend
class is called as ``cls(settings: CryptSettings, secret: bytes | None)``
where ``secret`` optionally overrides the backend's own secret source
(passphrase, PIN) — used by tests and interactive CLI prompts.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

from edgesec.crypt.errors import BackendError
from edgesec.crypt.settings import CryptSettings

GROUP = "edgesec.crypt.backends"
_BUILTIN = {
    "passphrase": "edgesec.crypt.backends.passphrase:PassphraseBackend",
    "pkcs11": "edgesec.crypt.backends.pkcs11:Pkcs11Backend",
}


@runtime_checkable
class RootKey(Protocol):
    """An opened root key. ``unwrap`` raises IntegrityError on any mismatch."""

    def wrap(self, data_key: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, aad: bytes) -> bytes: ...

    def close(self) -> None: ...


@runtime_checkable
class KeyCheckingRootKey(RootKey, Protocol):
    """A root key that proves itself without decrypting: ``key_check(context)`` is a
    keyed digest (equal for the same key and context, unguessable without the key)."""

    def key_check(self, context: bytes) -> bytes: ...


@runtime_checkable
class Backend(Protocol):
    """Creates, opens and retires root keys; ``params`` are public and stored."""

    name: str

    def create_root(self) -> tuple[RootKey, dict[str, Any]]: ...

    def open_root(self, params: dict[str, Any]) -> RootKey: ...

    def retire_root(self, params: dict[str, Any]) -> None: ...


def available() -> list[str]:
    """Names of all backends (installed entry points plus built-ins)."""
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group=GROUP)}
    return sorted(names | set(_BUILTIN))


def load_backend(
    name: str, settings: CryptSettings, secret: bytes | None = None
) -> Backend:
    """Instantiate the backend called ``name``; BackendError if unknown/broken.

    A built-in name loads its own module directly (no plug-in can shadow it, and
    the daemon does not keep ``importlib.metadata``, ~1.6 MB, for the lookup);
    other names are looked up among the installed entry points.
    """
    target: Any = None
    if name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        target = getattr(importlib.import_module(module), attr)
    else:
        from importlib.metadata import entry_points

        for ep in entry_points(group=GROUP):
            if ep.name == name:
                try:
                    target = ep.load()
                except Exception as exc:
                    raise BackendError(f"crypt backend {name!r} failed to load: {exc}") from exc
                break
    if target is None:
        raise BackendError(f"unknown crypt backend {name!r} (available: {', '.join(available())})")
    backend = target(settings, secret)
    if not isinstance(backend, Backend):
        raise BackendError(f"crypt backend {name!r} does not implement the Backend interface")
    return backend
