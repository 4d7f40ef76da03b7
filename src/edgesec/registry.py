"""The device registry: the gateway's only state, and every policy decision on it.

Devices, bridges and tickets live here (groups and one-way access rules in
``registry.groups``, :mod:`edgesec.groups`); every mutation is committed to the
:class:`~edgesec.store.Store` before it returns and is then published on the
:class:`~edgesec.events.EventBus`, from which the enforcing services (firewall,
dnsmasq, hostapd, supervisor events) reconcile.  The admission decision used
by RADIUS (:meth:`Registry.admit`) is made here too, so the supervisor and the
RADIUS server can never disagree.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import time
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from edgesec.config import Settings
from edgesec.device_status import DeviceStatus
from edgesec.events import Event, EventBus
from edgesec.quarantine import QuarantineMixin
from edgesec.reclaim import reclaimable
from edgesec.store import BridgeRow, DeviceRow, QuarantineRow, Store, TicketRow

log = logging.getLogger(__name__)

STATUS_UNKNOWN, STATUS_CONNECTED, STATUS_DISCONNECTED = DeviceStatus  # aliases
IP_ADD, IP_OLD, IP_DEL = 1, 2, 3
TICKET_LIFETIME_S = 60
MAX_LABEL = 254
MAX_TICKET_OFFERS = 1024  # unknown MACs offered an open ticket, awaiting their handshake
MAX_LEASE_SEEN = 65536  # last-lease times kept in memory (devices only: bounded by rows)

_MAC_HEX = re.compile(r"[0-9a-fA-F]{2}")
_CANONICAL_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")


class RegistryError(ValueError):
    """A request the registry refuses; the message says why."""


def normalise_mac(text: str) -> str:
    """Return ``aa:bb:cc:dd:ee:ff`` for a MAC in any common notation, else raise.

    Accepted: colon, dash, dot (Cisco) or no separators, any case.  Unlike the
    original, trailing junk is refused rather than ignored.
    """
    if _CANONICAL_MAC.fullmatch(text):  # the common case, one regex (RADIUS hot path)
        return text.lower()
    compact = re.sub(r"[:.\-]", "", text)
    if len(compact) != 12 or not all(_MAC_HEX.fullmatch(compact[i:i + 2])
                                     for i in range(0, 12, 2)):
        raise RegistryError(f"invalid MAC address {text!r}")
    if len(text) not in (12, 14, 17) or (len(text) == 17 and len(set(text[2::3])) != 1):
        raise RegistryError(f"invalid MAC address {text!r}")
    compact = compact.lower()
    return ":".join(compact[i:i + 2] for i in range(0, 12, 2))


def validate_psk(psk: str) -> str:
    """A WPA passphrase: 8-63 printable ASCII characters, or 64 hex digits."""
    if len(psk) == 64 and re.fullmatch(r"[0-9a-fA-F]{64}", psk):
        return psk
    if not 8 <= len(psk) <= 63 or not all(0x20 <= ord(c) < 0x7F for c in psk):
        raise RegistryError("a passphrase must be 8-63 printable ASCII characters or 64 hex digits")
    return psk


def sdbm_hash(mac: str) -> int:
    """The original's sdbm hash over the 6 MAC bytes (uint32)."""
    h = 0
    for byte in bytes.fromhex(mac.replace(":", "")):
        h = (byte + (h << 6) + (h << 16) - h) & 0xFFFFFFFF
    return h


@dataclass(frozen=True, slots=True)
class Device:
    """Everything the gateway knows about one device (the original's mac_conn_info)."""

    mac: str
    allow: bool = True
    vlanid: int = 0
    nat: bool = False
    psk: str = ""
    primary_ip: str = ""
    secondary_ip: str = ""
    label: str = ""
    id: str = ""
    join_ts: int = 0
    status: DeviceStatus = DeviceStatus.UNKNOWN
    # Contained by edgesec.detect (or QUARANTINE): DHCP and DNS only; kept in its
    # own table, never in the original's ``instance`` row (GET_MAP is unchanged).
    quarantined: bool = False

    @property
    def ips(self) -> tuple[str, ...]:
        return tuple(ip for ip in (self.primary_ip, self.secondary_ip) if ip)


@dataclass(frozen=True, slots=True)
class Bridge:
    a: str
    b: str
    reason: str = "manual"
    created: int = 0
    expires: int = 0  # unix seconds, 0 = never


# A ticket is held exactly as it is stored: one record type for both.
Ticket = TicketRow


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to "may this MAC join, and how?"."""

    accept: bool
    vlan: int = -1
    psk: str = ""
    label: str = ""
    reason: str = ""


class SecretStore(Protocol):
    """What the registry needs of the vault (edgesec.crypt.vault.Vault)."""

    def get_secret(self, name: str) -> bytes | None: ...

    def put_secret(self, name: str, value: bytes) -> None: ...

    def delete(self, name: str) -> bool: ...


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


class Registry(QuarantineMixin):
    """Devices, bridges and tickets, durable in a :class:`Store`."""

    def __init__(self, settings: Settings, store: Store, bus: EventBus | None = None,
                 clock: Callable[[], float] = time.time, vault: SecretStore | None = None) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus or EventBus()
        self.clock = clock
        self.vault = vault
        # storePskInVault: passphrases live in the vault under the device id and
        # the connection DB's `pass` column stays empty (the original's crypto build).
        self._psk_in_vault = bool(settings.system.store_psk_in_vault
                                  or settings.crypt.psk_in_vault)
        if self._psk_in_vault and vault is None:
            raise RegistryError("[system] storePskInVault = true, but the vault is not open "
                                "(set EDGESEC_CRYPT_PASSPHRASE or cryptPassphraseFile)")
        self._devices: dict[str, Device] = {}
        self._by_ip: dict[str, str] = {}
        self._bridges: dict[tuple[str, str], Bridge] = {}
        self._tickets: dict[str, Ticket] = {}
        # Join times are the one field RADIUS writes on every association.  They
        # are kept beside the records (``_joins``) until a read needs the record
        # or the write-behind flush folds them in, so the admission hot path
        # builds no new Device; ``_unflushed`` names the folded ones not yet on disk.
        self._joins: dict[str, int] = {}
        self._unflushed: set[str] = set()
        # Per known device, the Admission computed for that exact record (the
        # settings it also depends on are fixed for the registry's life).
        self._admissions: dict[str, tuple[Device, Admission]] = {}
        # Bumped on every change of a device record, join times included: readers
        # that cache a rendering of devices() (GET_ALL) compare it.
        self.generation = 0
        # MAC -> passphrase of the open ticket its RADIUS accept carried; the
        # ticket is bound only when that station completes the WPA handshake
        # (set_status CONNECTED), so a MAC that does not know it cannot burn it.
        self._offers: OrderedDict[str, str] = OrderedDict()
        # MAC -> unix time of its last lease report (not persisted: after a
        # restart the join time and a held address stand in for it).
        self._lease_seen: dict[str, float] = {}
        # MAC -> its quarantine record (edgesec.detect); durable in ``quarantine``.
        self._quarantine: dict[str, QuarantineRow] = {}
        # Groups and one-way access rules (edgesec.groups imports this module,
        # hence the import here); _remove_devices deletes a device's too.
        from edgesec.groups import GroupPolicy
        self.groups = GroupPolicy(store, self.bus, self._devices.__contains__, clock)
        self._load()

    # -- loading -------------------------------------------------------------
    def _load(self) -> None:
        for r in self.store.load_devices():
            dev = Device(r.mac, r.allow, r.vlanid, r.nat, r.psk, r.primaryip, r.secondaryip,
                         r.label, r.id, r.timestamp, DeviceStatus(r.status))
            if self._psk_in_vault:
                if r.psk:  # switched on with plaintext rows: move them into the vault
                    self._save(dev, moved_psk=True)
                    continue
                stored = self._psk_vault().get_secret(dev.id) if dev.id else None
                dev = replace(dev, psk=stored.decode() if stored else "")
            if not _label_ok(dev.label):
                log.warning("device %s has a label with a comma or control character "
                            "(from an older database); GET_ALL lines for it are ambiguous "
                            "until it is relabelled", dev.mac)
            self._remember(dev)
        for b in self.store.load_bridges():
            self._bridges[(b.mac_a, b.mac_b)] = Bridge(b.mac_a, b.mac_b, b.reason, b.created,
                                                       b.expires)
        for t in self.store.load_tickets():
            self._tickets[t.passphrase] = t
        for q in self.store.load_quarantines():
            self._quarantine[q.mac] = q
            if q.mac in self._devices:
                self._devices[q.mac] = replace(self._devices[q.mac], quarantined=True)

    def _remember(self, dev: Device) -> None:
        self.generation += 1
        old = self._devices.get(dev.mac)
        if old:
            for ip in old.ips:
                if self._by_ip.get(ip) == dev.mac:
                    del self._by_ip[ip]
        self._devices[dev.mac] = dev
        for ip in dev.ips:
            self._by_ip[ip] = dev.mac

    # -- reads ---------------------------------------------------------------
    def get(self, mac: str) -> Device | None:
        mac = normalise_mac(mac)
        self._fold_join(mac)
        return self._devices.get(mac)

    def devices(self) -> list[Device]:
        self._fold_joins()
        return list(self._devices.values())

    def device_by_ip(self, ip: str) -> Device | None:
        mac = self._by_ip.get(ip)
        self._fold_join(mac)
        return self._devices.get(mac) if mac else None

    def _fold_join(self, mac: str | None) -> None:
        """Put a join time recorded by :meth:`admit`, if any, into the device record."""
        ts = self._joins.pop(mac, None) if self._joins and mac else None
        if ts is None or mac is None:
            return
        dev = self._devices.get(mac)
        if dev is not None and dev.join_ts != ts:
            self._devices[mac] = replace(dev, join_ts=ts)
            self._unflushed.add(mac)

    def _fold_joins(self) -> None:
        for mac in list(self._joins):
            self._fold_join(mac)

    def bridges(self) -> list[tuple[str, str]]:
        return list(self._bridges)

    def bridge_records(self) -> list[Bridge]:
        return list(self._bridges.values())

    def has_bridge(self, a: str, b: str) -> bool:
        return _pair(normalise_mac(a), normalise_mac(b)) in self._bridges

    def bridge(self, a: str, b: str) -> Bridge | None:
        """The bridge record of the pair (with reason and expiry), or None."""
        return self._bridges.get(_pair(normalise_mac(a), normalise_mac(b)))

    def bridge_partners(self, mac: str) -> list[str]:
        mac = normalise_mac(mac)
        return [b if a == mac else a for a, b in self._bridges if mac in (a, b)]

    def tickets(self) -> list[Ticket]:
        return list(self._tickets.values())

    def is_known(self, mac: str) -> bool:
        """True when ``mac`` has a record (RADIUS rate-limits admissions of the others)."""
        # RADIUS passes canonical MACs: one dict lookup on the hot path.
        return mac in self._devices or normalise_mac(mac) in self._devices

    # -- device writes -------------------------------------------------------
    def _new_device(self, mac: str) -> Device:
        """Defaults of a brand-new record (the original's init_default_mac_info).

        Safer than the original: a record created as a side effect (``ADD_NAT``
        or ``SET_IP`` of an unknown MAC) is only allowed when
        ``allowAllConnections`` is true; otherwise it takes ``ACCEPT_MAC`` or a
        ticket to admit it.
        """
        sys = self.settings.system
        return Device(mac=mac, allow=sys.allow_all_connections,
                      vlanid=sys.default_open_vlan_id, nat=sys.allow_all_nat)

    def _current(self, mac: str) -> Device:
        self._fold_join(mac)
        return self._devices.get(mac) or self._new_device(mac)

    def _psk_vault(self) -> SecretStore:
        """The vault holding the PSKs (``storePskInVault`` is refused without one)."""
        if self.vault is None:
            raise RegistryError("storePskInVault is on, but the vault is not open")
        return self.vault

    def _save(self, dev: Device, *events: Event, moved_psk: bool = False) -> Device:
        """Commit ``dev`` (giving it an id if new), then publish ``events``."""
        if not dev.id:
            dev = replace(dev, id=str(uuid.uuid4()))
        old = self._devices.get(dev.mac)
        if self._psk_in_vault and (moved_psk or old is None or old.psk != dev.psk):
            # The vault commits first: a crash in between leaves a PSK without a row,
            # never a row pointing at a lost PSK.
            if dev.psk:
                self._psk_vault().put_secret(dev.id, dev.psk.encode())
            elif old is not None and old.psk:
                self._psk_vault().delete(dev.id)
        with self.store.transaction():
            self.store.put_device(self._row(dev))
        self._unflushed.discard(dev.mac)
        self._remember(dev)
        self.bus.publish(Event("device", dev.mac, {"device": dev}))
        for event in events:
            self.bus.publish(event)
        return dev

    def _row(self, d: Device) -> DeviceRow:
        return DeviceRow(d.id, d.mac, d.status, d.vlanid, d.primary_ip, d.secondary_ip, d.nat,
                         d.allow, d.label, d.join_ts, "" if self._psk_in_vault else d.psk)

    def _check_vlan(self, vlan: int) -> None:
        if self.settings.interfaces.subnet_for_vlan(vlan) is None:
            raise RegistryError(f"VLAN {vlan} is not a configured subnet")

    def accept_mac(self, mac: str, vlan: int) -> Device:
        mac = normalise_mac(mac)
        self._check_vlan(vlan)
        dev = self._current(mac)
        new = replace(dev, allow=True, vlanid=vlan)
        if dev.vlanid != vlan and mac in self._devices:
            # Addresses of the old subnet are no longer valid on the new one.
            new = replace(new, primary_ip="", secondary_ip="")
        return self._save(new)

    def deny_mac(self, mac: str) -> Device:
        mac = normalise_mac(mac)
        return self._save(replace(self._current(mac), allow=False))

    def set_nat(self, mac: str, on: bool) -> Device:
        mac = normalise_mac(mac)
        return self._save(replace(self._current(mac), nat=on))

    def assign_psk(self, mac: str, psk: str) -> Device:
        mac = normalise_mac(mac)
        return self._save(replace(self._current(mac), psk=validate_psk(psk)))

    def clear_psk(self, mac: str) -> Device:
        mac = normalise_mac(mac)
        return self._save(replace(self._current(mac), psk=""))

    def set_label(self, mac: str, label: str) -> Device:
        mac = normalise_mac(mac)
        return self._save(replace(self._current(mac), label=_check_label(label)))

    def set_status(self, mac: str, status: DeviceStatus) -> Device | None:
        """Record the AP connection status; unknown MACs only get the event."""
        mac = normalise_mac(mac)
        event = Event("ap", mac, {"status": status})
        dev = self._devices.get(mac)
        if dev is None and status == STATUS_CONNECTED and mac in self._offers:
            # The station completed the handshake with the offered ticket's passphrase.
            dev = self._bind_offer(mac)
        if dev is None:
            self.bus.publish(event)
            return None
        return self._save(replace(dev, status=DeviceStatus(status)), event)

    def set_ip(self, kind: str, mac: str, ip: str, interface: str | None = None
               ) -> Device | None:
        """Apply a DHCP lease report (the original's SET_IP).

        ``kind`` is ``add``/``old``/``del`` (first three letters count, as in
        the original) or ``arp`` (ignored).  Returns the device, or ``None``
        for ``arp``.

        With ``interface`` (the lease hook's report: the bridge the request
        came in on, or ``-`` when dnsmasq did not say) the lease came from a
        device and proves nothing about it: it must be a known, allowed
        device, and the address and interface must belong to the VLAN it was
        admitted on; otherwise nothing is created or changed.
        """
        head = kind[:3]
        if head == "arp":
            return None
        if head not in ("add", "old", "del"):
            raise RegistryError(f"unknown lease type {kind!r}")
        mac = normalise_mac(mac)
        try:
            addr = str(ipaddress.IPv4Address(ip.split("/")[0]))
        except ValueError:
            raise RegistryError(f"invalid IPv4 address {ip!r}") from None
        subnet = self.settings.interfaces.subnet_for_ip(addr)
        if subnet is None:
            raise RegistryError(f"{addr} is in no configured subnet")
        if interface is not None:
            self._check_lease(mac, addr, subnet.vlan, subnet.bridge, interface)
            self._lease_seen[mac] = self.clock()
        dev = self._current(mac)
        if head == "del":
            new = replace(
                dev,
                primary_ip="" if dev.primary_ip == addr else dev.primary_ip,
                secondary_ip="" if dev.secondary_ip == addr else dev.secondary_ip,
            )
            return self._save(new, Event("ip", mac, {"ip": addr, "type": IP_DEL,
                                                     "primary": int(dev.primary_ip == addr)}))
        if addr in dev.ips:
            return dev
        if not dev.primary_ip:
            new, primary = replace(dev, primary_ip=addr), 1
        elif not dev.secondary_ip:
            new, primary = replace(dev, secondary_ip=addr), 0
        else:
            # The original fails here forever; a newer lease replaces the secondary.
            new, primary = replace(dev, secondary_ip=addr), 0
        self._release_ip_elsewhere(addr, mac)
        code = IP_ADD if head == "add" else IP_OLD
        return self._save(new, Event("ip", mac, {"ip": addr, "type": code, "primary": primary}))

    def _check_lease(self, mac: str, addr: str, vlan: int, bridge: str, interface: str) -> None:
        """Refuse a lease report that does not fit the device's admission (see set_ip)."""
        dev = self._devices.get(mac)
        if dev is None:
            raise RegistryError(f"lease of {addr} for unknown device {mac} ignored")
        if not dev.allow:
            raise RegistryError(f"lease of {addr} for denied device {mac} ignored")
        if vlan != dev.vlanid:
            raise RegistryError(f"lease of {addr} (VLAN {vlan}) for {mac}, which is on "
                                f"VLAN {dev.vlanid}, ignored")
        if interface != "-" and interface != bridge:
            raise RegistryError(f"lease of {addr} for {mac} came in on {interface}, not "
                                f"on its bridge {bridge}, ignored")
        if len(self._lease_seen) >= MAX_LEASE_SEEN:
            self._lease_seen = {m: t for m, t in self._lease_seen.items() if m in self._devices}

    def _release_ip_elsewhere(self, addr: str, mac: str) -> None:
        """An address belongs to one device: a lease moving to ``mac`` leaves the old holder."""
        holder = self._by_ip.get(addr)
        if holder and holder != mac:
            old = self._devices[holder]
            self._save(replace(
                old,
                primary_ip="" if old.primary_ip == addr else old.primary_ip,
                secondary_ip="" if old.secondary_ip == addr else old.secondary_ip,
            ))

    # -- bridges ---------------------------------------------------------------
    def add_bridge(self, a: str, b: str, reason: str = "manual", ttl: int = 0) -> Bridge:
        a, b = normalise_mac(a), normalise_mac(b)
        if a == b:
            raise RegistryError("a device cannot be bridged to itself")
        pair = _pair(a, b)
        now = int(self.clock())
        existing = self._bridges.get(pair)
        if existing and existing.expires == 0 and ttl == 0:
            return existing
        bridge = Bridge(pair[0], pair[1], reason, existing.created if existing else now,
                        now + ttl if ttl else 0)
        with self.store.transaction():
            self.store.put_bridge(BridgeRow(bridge.a, bridge.b, bridge.reason, bridge.created,
                                            bridge.expires))
        self._bridges[pair] = bridge
        if not existing:
            self.bus.publish(Event("bridge_added", pair[0], {"peer": pair[1], "reason": reason}))
        return bridge

    def remove_bridge(self, a: str, b: str, reason: str = "manual") -> bool:
        pair = _pair(normalise_mac(a), normalise_mac(b))
        return bool(self._remove_bridges([pair], reason))

    def clear_bridges(self, mac: str) -> int:
        mac = normalise_mac(mac)
        return self._remove_bridges([p for p in self._bridges if mac in p], "cleared")

    def expire_bridges(self) -> int:
        """Remove bridges whose expiry has passed (auto-bridges with a lifetime)."""
        now = self.clock()
        return self._remove_bridges(
            [p for p, b in self._bridges.items() if b.expires and b.expires <= now], "expired")

    def _remove_bridges(self, pairs: list[tuple[str, str]], reason: str) -> int:
        pairs = [p for p in pairs if p in self._bridges]
        if not pairs:
            return 0
        with self.store.transaction():
            self.store.delete_bridges(pairs)
        for pair in pairs:
            del self._bridges[pair]
            self.bus.publish(Event("bridge_removed", pair[0], {"peer": pair[1],
                                                               "reason": reason}))
        return len(pairs)

    # -- tickets and admission -------------------------------------------------
    def register_ticket(self, issuer: str, label: str, vlan: int) -> Ticket:
        """A single-use onboarding passphrase for the next new device (60 s)."""
        issuer = normalise_mac(issuer)
        label = _check_label(label)
        self._check_vlan(vlan)
        self._drop_expired_tickets()
        now = int(self.clock())
        passphrase = "".join(str(secrets.randbelow(10)) for _ in range(16))
        ticket = Ticket(passphrase, issuer, label, vlan, now, now + TICKET_LIFETIME_S)
        with self.store.transaction():
            self.store.put_ticket(ticket)
        self._tickets[passphrase] = ticket
        return ticket

    def _drop_expired_tickets(self) -> None:
        now = self.clock()
        dead = [p for p, t in self._tickets.items() if t.expires <= now or t.used_by]
        if dead:
            with self.store.transaction():
                self.store.delete_tickets(dead)
            for p in dead:
                del self._tickets[p]

    def _open_ticket(self, passphrase: str | None) -> Ticket | None:
        self._drop_expired_tickets()
        if passphrase is not None:
            return self._tickets.get(passphrase)
        return min(self._tickets.values(), key=lambda t: t.created, default=None)

    def allocate_vlan(self, mac: str) -> int:
        """VLAN for a brand-new device.

        With a VLAN pool configured every new device gets a pool VLAN no other
        device has; otherwise the original's rule (sdbm hash over the ``ifN``
        entries, or ``defaultOpenVlanId``).
        """
        sys = self.settings.system
        ifs = self.settings.interfaces
        if not sys.allocate_vlans:
            return sys.default_open_vlan_id
        pool = sorted(ifs.pool_vlans)
        if pool:
            # A denied device holds no pool VLAN: it can never use it.
            used = {d.vlanid for d in self._devices.values() if d.allow}
            free = next((v for v in pool if v not in used), None)
            if free is None:
                raise RegistryError("the VLAN pool is exhausted")
            return free
        subnets = ifs.subnets
        if len(subnets) <= 1:
            return sys.default_open_vlan_id
        return subnets[sdbm_hash(mac) % len(subnets)].vlan

    def admit(self, mac: str, passphrase: str | None = None) -> Admission:
        """Decide whether ``mac`` may join, on which VLAN and with which passphrase.

        Safer than the original: with ``allowAllConnections = false`` an
        unknown device is only admitted through an unused, unexpired ticket,
        which is then bound to it; a denied device is always rejected.
        """
        mac = normalise_mac(mac)
        dev = self._devices.get(mac)
        if dev is not None:
            cached = self._admissions.get(mac)
            if cached is not None and cached[0] is dev:
                # The hot path (hostapd asks on every association): same record,
                # same answer; only the join time is new.
                self._joins[mac] = int(self.clock() * 1_000_000)
                self.generation += 1
                return cached[1]
        sys = self.settings.system
        default_psk = self.settings.ap.wpa_passphrase
        if dev is not None and not dev.allow:
            return Admission(False, reason="device is denied")
        if dev is not None:
            return self._admitted(dev, dev.psk or default_psk, "known device")
        if sys.allow_all_connections:
            try:
                vlan = self.allocate_vlan(mac)
            except RegistryError as exc:  # an answer, not a failure: no traceback per request
                return Admission(False, reason=str(exc))
            new = replace(self._new_device(mac), vlanid=vlan)
            return self._admitted(new, default_psk, "allowAllConnections")
        ticket = self._open_ticket(passphrase)
        if ticket is None:
            return Admission(False, reason="unknown device and no open ticket")
        if passphrase is None:
            # hostapd's MAC-ACL request proves nothing: offer the ticket (its VLAN and
            # passphrase) and bind it once the station completes the handshake.
            self._offer(mac, ticket.passphrase)
            return Admission(True, ticket.vlanid, ticket.passphrase, ticket.label,
                             "ticket offered")
        return self._bind_ticket(mac, ticket)

    def _bind_ticket(self, mac: str, ticket: Ticket) -> Admission:
        new = replace(self._new_device(mac), allow=True, vlanid=ticket.vlanid,
                      psk=ticket.passphrase, label=ticket.label)
        with self.store.transaction():
            self.store.put_ticket(replace(ticket, used_by=mac))
        del self._tickets[ticket.passphrase]
        for other in [m for m, p in self._offers.items() if p == ticket.passphrase]:
            del self._offers[other]
        return self._admitted(new, ticket.passphrase, "ticket")

    def _offer(self, mac: str, passphrase: str) -> None:
        self._offers.pop(mac, None)
        self._offers[mac] = passphrase
        while len(self._offers) > MAX_TICKET_OFFERS:
            self._offers.popitem(last=False)

    def _bind_offer(self, mac: str) -> Device | None:
        """Bind the ticket offered to ``mac`` if it is still open; the new record or None."""
        passphrase = self._offers.pop(mac)
        self._drop_expired_tickets()
        ticket = self._tickets.get(passphrase)
        if ticket is None:
            log.info("station %s connected after its offered ticket expired or was used", mac)
            return None
        self._bind_ticket(mac, ticket)
        log.info("ticket bound to %s after its handshake", mac)
        return self._devices.get(mac)

    def _admitted(self, dev: Device, psk: str, reason: str) -> Admission:
        self._check_vlan_or_default(dev)
        ts = int(self.clock() * 1_000_000)
        if self._devices.get(dev.mac) is dev:
            # A known record: only the join time changes, so no policy changed,
            # no event, and the row is written behind (flush_join_times) — RADIUS
            # answers every association, and the original did not even reload
            # this field.
            answer = Admission(True, dev.vlanid, psk, dev.label, reason)
            self._admissions[dev.mac] = (dev, answer)
            self._joins[dev.mac] = ts
            self.generation += 1
            return answer
        joined = self._save(replace(dev, join_ts=ts))
        return Admission(True, joined.vlanid, psk, joined.label, reason)

    def update_settings(self, settings: Settings) -> None:
        """SIGHUP: new subnets and defaults (cached admissions depended on the old ones)."""
        self.settings = settings
        self._admissions.clear()
        self.generation += 1

    def flush_join_times(self) -> int:
        """Write the join times recorded since the last flush (one transaction).

        Committed without fsync: they survive a crash of the process, and at
        most one flush interval is lost on a power cut.
        """
        self._fold_joins()
        macs, self._unflushed = self._unflushed, set()
        rows = [self._row(self._devices[m]) for m in macs if m in self._devices]
        if rows:
            with self.store.transaction(fsync=False):
                for row in rows:
                    self.store.put_device(row)
        return len(rows)

    def _check_vlan_or_default(self, dev: Device) -> None:
        if self.settings.interfaces.subnets and \
                self.settings.interfaces.subnet_for_vlan(dev.vlanid) is None:
            raise RegistryError(
                f"device {dev.mac} is on VLAN {dev.vlanid}, which is not configured")

    # -- removal and reclaiming ------------------------------------------------
    def remove_device(self, mac: str) -> Device:
        """Delete ``mac``'s record, its bridges and its ticket binding (durable).

        Publishes ``bridge_removed`` for each bridge, then a ``device`` event
        whose ``device`` is ``None`` and ``removed`` the old record, so every
        service forgets it.  Unknown MAC: RegistryError.
        """
        mac = normalise_mac(mac)
        if mac not in self._devices:
            raise RegistryError(f"no device {mac}")
        return self._remove_devices([mac], "removed")[0]

    def reclaim_pool_vlans(self, lifetime: float) -> list[Device]:
        """Remove pool devices not seen for ``lifetime`` seconds (one transaction).

        Which ones is :func:`edgesec.reclaim.reclaimable`'s decision; the
        gateway's housekeeping calls this.  Returns the removed records.
        """
        if lifetime <= 0:
            return []
        pool = self.settings.interfaces.pool_vlans
        if not pool:
            return []
        macs = reclaimable(self.devices(), pool, self._lease_seen, self.clock(), lifetime)
        if not macs:
            return []
        removed = self._remove_devices(macs, "reclaimed")
        log.info("reclaimed the pool VLANs of %d devices not seen for %ds: %s", len(removed),
                 int(lifetime), ", ".join(f"{d.mac} (VLAN {d.vlanid})" for d in removed[:8]))
        return removed

    def _remove_devices(self, macs: Iterable[str], reason: str) -> list[Device]:
        """Delete records, their bridges, ticket bindings, group memberships and access
        rules in one transaction, then publish.

        The one place a device is deleted (``REMOVE_DEVICE`` and the pool
        reclaim both come here): anything else a device owns is deleted here too.
        """
        self._fold_joins()
        olds = [self._devices[m] for m in dict.fromkeys(macs) if m in self._devices]
        gone = {d.mac for d in olds}
        pairs = [p for p in self._bridges if p[0] in gone or p[1] in gone]
        with self.store.transaction():
            self.store.delete_devices(gone)
            self.store.delete_bridges(pairs)
            self.store.delete_tickets_used_by(gone)
            self.store.delete_quarantines(gone)
            for m in gone:  # group memberships and access rules (edgesec.groups)
                self.store.delete_memberships_of(m)
        if self._psk_in_vault:
            for d in olds:
                if d.psk:
                    self._psk_vault().delete(d.id)
        for d in olds:
            self.generation += 1
            del self._devices[d.mac]
            for ip in d.ips:
                if self._by_ip.get(ip) == d.mac:
                    del self._by_ip[ip]
            self._admissions.pop(d.mac, None)
            self._joins.pop(d.mac, None)
            self._unflushed.discard(d.mac)
            self._lease_seen.pop(d.mac, None)
            self._offers.pop(d.mac, None)
            self._quarantine.pop(d.mac, None)
        for pair in pairs:
            del self._bridges[pair]
            self.bus.publish(Event("bridge_removed", pair[0], {"peer": pair[1],
                                                               "reason": reason}))
        for d in olds:
            self.groups.forgotten(d.mac, reason)
        for d in olds:
            self.bus.publish(Event("device", d.mac, {"device": None, "removed": d,
                                                     "reason": reason}))
        return olds


def _label_ok(label: str) -> bool:
    """One GET_ALL field: no comma, no control or line/paragraph separator characters."""
    return "," not in label and not any(
        unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") for c in label)


def _check_label(label: str) -> str:
    if len(label.encode("utf-8", "surrogatepass")) > MAX_LABEL:
        raise RegistryError(f"a label is at most {MAX_LABEL} bytes")
    if not _label_ok(label):
        raise RegistryError("a label must not contain commas or control characters "
                            "(it is one field of a GET_ALL line)")
    return label
