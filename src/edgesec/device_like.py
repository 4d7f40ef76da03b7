"""DeviceLike: the read-only view of a device record that the pure modules take.

``edgesec.registry.Device`` (a frozen dataclass) matches it; the policy
(``edgesec.net.policy``) and the VLAN reclaim rule (``edgesec.reclaim``) read
devices through it, so they depend on the fields, not on the registry.
"""

from __future__ import annotations

from typing import Protocol


class DeviceLike(Protocol):
    """The fields of ``edgesec.registry.Device`` that pure code reads (read-only)."""

    @property
    def mac(self) -> str: ...
    @property
    def allow(self) -> bool: ...
    @property
    def vlanid(self) -> int: ...
    @property
    def nat(self) -> bool: ...
    @property
    def psk(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def join_ts(self) -> int: ...  # microseconds
    @property
    def status(self) -> int: ...
    @property
    def ips(self) -> tuple[str, ...]: ...
