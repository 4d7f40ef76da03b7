"""Quarantine as registry state (edgesec.detect): the Registry's containment methods.

A quarantined device keeps its record, NAT flag, bridges, groups and access
rules; ``Device.quarantined`` makes the policy suspend all of them but its
lease (DHCP and DNS to the gateway), so :meth:`QuarantineMixin.release`
restores exactly what it had.  Durable in table ``quarantine``; every
decision is appended to table ``audit`` with its evidence.  Kept out of
``registry.py`` (which mixes it into :class:`~edgesec.registry.Registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from edgesec.events import DeviceChanged, EventBus, QuarantineChanged
from edgesec.store import AuditRow, QuarantineRow, Store

if TYPE_CHECKING:
    from edgesec.registry import Device

MAX_EVIDENCE = 8192  # bytes of evidence JSON kept per quarantine decision
MAX_REASON = 254


def _check_reason(reason: str) -> str:
    """A quarantine reason: one printable line of at most MAX_REASON bytes."""
    from edgesec.registry import RegistryError, _label_ok

    reason = reason.strip() or "-"
    if len(reason.encode("utf-8", "surrogatepass")) > MAX_REASON or not _label_ok(reason):
        raise RegistryError("a reason is at most 254 bytes, without commas or control "
                            "characters")
    return reason


class QuarantineMixin:
    """QUARANTINE / RELEASE / expiry over the registry's records (mixed into Registry)."""

    _devices: dict[str, Device]
    _quarantine: dict[str, QuarantineRow]
    store: Store
    bus: EventBus
    clock: Callable[[], float]
    _fold_join: Callable[[str | None], None]
    _remember: Callable[[Any], None]

    def quarantines(self) -> list[QuarantineRow]:
        return list(self._quarantine.values())

    def quarantine_of(self, mac: str) -> QuarantineRow | None:
        from edgesec.registry import normalise_mac

        return self._quarantine.get(normalise_mac(mac))

    def quarantine(self, mac: str, reason: str, *, source: str = "manual", ttl: int = 0,
                   evidence: str = "") -> Device:
        """Contain a known device: DHCP and DNS to the gateway only (durable, audited).

        Its NAT flag and bridges stay in the registry (the policy suspends
        them), so :meth:`release` restores exactly what it had.  Quarantining
        a quarantined device updates reason and expiry (and is audited again).
        """
        from edgesec.registry import RegistryError, normalise_mac

        mac = normalise_mac(mac)
        reason = _check_reason(reason)
        self._fold_join(mac)
        dev = self._devices.get(mac)
        if dev is None:
            raise RegistryError(f"no device {mac}")
        now = self.clock()
        old = self._quarantine.get(mac)
        row = QuarantineRow(mac, reason, source, old.created if old else int(now),
                            int(now) + ttl if ttl > 0 else 0, evidence[:MAX_EVIDENCE])
        with self.store.transaction():
            self.store.put_quarantine(row)
            self.store.add_audit(AuditRow(now, mac, "quarantine", source, reason,
                                          evidence[:MAX_EVIDENCE]))
        self._quarantine[mac] = row
        if dev.quarantined:
            return dev
        new = replace(dev, quarantined=True)
        self._remember(new)
        self.bus.publish(DeviceChanged(mac, old=dev, new=new))
        self.bus.publish(QuarantineChanged(mac, on=True, reason=reason, source=source))
        return new

    def release(self, mac: str, reason: str = "released", *, source: str = "manual",
                action: str = "release") -> Device:
        """End a quarantine: the device's own NAT flag and bridges apply again."""
        from edgesec.registry import RegistryError, normalise_mac

        mac = normalise_mac(mac)
        reason = _check_reason(reason)
        if mac not in self._quarantine:
            raise RegistryError(f"{mac} is not quarantined")
        with self.store.transaction():
            self.store.delete_quarantines([mac])
            self.store.add_audit(AuditRow(self.clock(), mac, action, source, reason))
        del self._quarantine[mac]
        self._fold_join(mac)
        dev = self._devices[mac]
        new = replace(dev, quarantined=False)
        self._remember(new)
        self.bus.publish(DeviceChanged(mac, old=dev, new=new))
        self.bus.publish(QuarantineChanged(mac, on=False, reason=reason, source=source))
        return new

    def expire_quarantines(self) -> int:
        """Release quarantines whose expiry has passed (housekeeping)."""
        now = self.clock()
        due = [m for m, q in self._quarantine.items() if q.expires and q.expires <= now]
        for mac in due:
            self.release(mac, "expired", source="expiry", action="expire")
        return len(due)

    def audit(self, mac: str | None = None, limit: int = 1000) -> list[AuditRow]:
        from edgesec.registry import normalise_mac

        return self.store.load_audit(normalise_mac(mac) if mac else None, limit)
