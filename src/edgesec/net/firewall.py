"""The firewall service: keeps the kernel's ``inet edgesec`` table equal to the policy.

Owns the nftables table named in ``[firewall] tableName`` (default ``edgesec``)
and nothing else. It:

* applies the whole policy in one transaction at start-up (``add``+``delete``+
  re-create of its own table, so a stale table from a crash is replaced);
* on every registry event, recomputes the rows of the devices concerned (the
  device, its bridge partners, the members of its groups and the other ends of
  its access rules) and applies only the element differences
  as one atomic transaction (cost independent of the number of devices);
* watches the ruleset through netlink notifications
  (:class:`edgesec.net.nftgen.RulesetWatcher`, no polling): when another
  process changed its table, it compares the table with the policy and
  re-applies everything if it was altered, flushed or deleted. While it
  re-applies, IPv4 forwarding is held off (so a flushed ruleset does not
  leave the gateway open for longer than the notification takes to arrive);
  every heal is counted in STATUS and published as a ``firewall_healed``
  event;
* on stop removes only its own table.

It talks to nftables through :mod:`edgesec.net.nftbackend` (the libnftables
binding, or the ``nft`` binary when the binding is missing); when neither
works the service cannot be built and the gateway refuses to run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgesec.events import Event, EventBus
from edgesec.net import policy as P
from edgesec.net.links import IP_FORWARD, set_ip_forward
from edgesec.net.nftbackend import NftBackend, backend_for, open_backend
from edgesec.net.nftgen import NFPROTO_INET, Commit, RulesetWatcher

if TYPE_CHECKING:
    from edgesec.config import Settings
    from edgesec.groups import GroupPolicy
    from edgesec.registry import Registry

log = logging.getLogger(__name__)

WATCHED_EVENTS = ("device", "ip", "bridge_added", "bridge_removed", "group_changed",
                  "access_added", "access_removed")
HEALED_EVENT = "firewall_healed"
RETRY_S = 1.0  # while a heal keeps failing (forwarding held off), retry this often


class FirewallError(RuntimeError):
    """libnftables refused a command list."""


class Nft:
    """The firewall's nftables commands, over a backend (library or ``nft`` binary)."""

    def __init__(self, backend: NftBackend | None = None) -> None:
        self.backend = backend or open_backend()

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def own_pids(self) -> frozenset[int]:
        """Processes whose ruleset commits are ours (see RulesetWatcher)."""
        return self.backend.own_pids()

    def apply(self, cmds: list[dict[str, Any]]) -> None:
        """Run ``cmds`` as one transaction; raise :class:`FirewallError` on refusal."""
        if not cmds:
            return
        rc, _out, err = self.backend.json_cmd(P.as_script(cmds))
        if rc != 0:
            raise FirewallError(f"nft refused the transaction: {err.strip()}")

    def list_table(self, table: str) -> dict[str, Any] | None:
        """The JSON listing of ``inet <table>``, or None when it does not exist."""
        rc, out, _err = self.backend.cmd(f"list table inet {table}")
        if rc != 0:
            return None
        listing: dict[str, Any] = json.loads(out)
        return listing

    def list_structure(self, table: str) -> dict[str, Any] | None:
        """Chains and sets (no rules, no elements) of ``inet <table>``; None if absent.

        ~10 ms at 20k elements, against ~200 ms for the full listing, because
        libnftables fetches set elements only for listings that show them.
        """
        objs: list[dict[str, Any]] = []
        # ("list tables" would fetch every element: avoid it)
        for cmd in ("list chains inet", "list sets inet"):
            rc, out, _err = self.backend.cmd(cmd, terse=True)
            if rc != 0:
                return None
            objs += json.loads(out).get("nftables", [])
        mine = [o for o in objs if next(iter(o.values())).get("table") == table]
        return {"nftables": mine} if mine else None


def _norm(elem: Any) -> Any:
    if isinstance(elem, dict) and "concat" in elem:
        return tuple(str(x) for x in elem["concat"])
    if isinstance(elem, dict) and "elem" in elem:
        return _norm(elem["elem"]["val"])
    return str(elem)


def table_differences(listing: Mapping[str, Any] | None, skel: P.Skeleton,
                      rows: Mapping[str, set[Any]], elements: bool = True) -> list[str]:
    """What differs between a table listing and the policy (empty when equal). Pure.

    With ``elements=False`` (a structure listing: chains and sets only) just
    the presence of every chain and set is compared.
    """
    if listing is None:
        return ["table missing"]
    chains: set[str] = set()
    comments: dict[str, list[str]] = {}
    sets: dict[str, set[Any]] = {}
    for obj in listing.get("nftables", []):
        if "chain" in obj:
            chains.add(obj["chain"]["name"])
        elif "rule" in obj:
            r = obj["rule"]
            comments.setdefault(r["chain"], []).append(r.get("comment", ""))
        elif "set" in obj:
            s = obj["set"]
            sets[s["name"]] = {_norm(e) for e in s.get("elem", [])}
    diffs = []
    if chains != set(skel.chains):
        diffs.append(f"chains {sorted(chains)}")
    if not elements:
        diffs += [f"set {n} missing" for n in P.SET_TYPES if n not in sets]
        return diffs
    for chain, want in skel.rule_comments.items():
        if tuple(comments.get(chain, [])) != want:
            diffs.append(f"rules of chain {chain}")
    if sets.get(P.DEVICE_IFS) != set(skel.device_ifs):
        diffs.append("set device_ifs")
    for name in P.ROW_SETS:
        if sets.get(name) != set(rows.get(name, set())):
            diffs.append(f"set {name}")
    return diffs


class PolicySource(Protocol):
    """What the firewall reads from :class:`edgesec.registry.Registry`."""

    @property
    def bus(self) -> EventBus: ...

    def get(self, mac: str) -> P.DeviceLike | None: ...

    def devices(self) -> Iterable[P.DeviceLike]: ...

    def bridges(self) -> Iterable[tuple[str, str]]: ...

    def bridge_partners(self, mac: str) -> Iterable[str]: ...


class FirewallService:
    """Service (``name``, ``start``, ``stop``, ``status``) enforcing the policy over
    the devices and bridges of a :class:`PolicySource` (the registry); groups and
    access rules are read from ``registry.groups`` when it has one
    (:class:`edgesec.groups.GroupPolicy`)."""

    name = "firewall"

    def __init__(self, cfg: P.PolicyConfig, registry: PolicySource, *, nft: Nft | None = None,
                 forward_path: Path | None = None) -> None:
        self.cfg = cfg
        self.registry = registry
        self.nft = nft or Nft()
        self.forward_path = forward_path  # None: never touch forwarding
        self.skel = P.skeleton(cfg)
        self._by_mac: dict[str, P.Rows] = {}
        self._count: dict[str, dict[Any, int]] = {n: {} for n in P.ROW_SETS}
        self._lock = threading.RLock()
        self._watcher: RulesetWatcher | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.heals = 0
        self.changes = 0
        self.last_error = ""
        self.forwarding_held = False  # we switched forwarding off and a heal is pending
        self.heal_failing = False  # the last heal failed; retried every RETRY_S
        self._running = False

    # -- state ---------------------------------------------------------------
    def rows(self) -> P.Rows:
        """The elements the kernel should hold now (keys of the contribution counts)."""
        return {n: set(c) for n, c in self._count.items()}

    def _device_rows(self, mac: str) -> P.Rows | None:
        dev = self.registry.get(mac)
        if dev is None:
            return None
        get = self.registry.get
        partners = [p for p in (get(m) for m in self.registry.bridge_partners(mac))
                    if p is not None]
        groups: GroupPolicy | None = getattr(self.registry, "groups", None)
        if groups is None:
            return P.device_rows(self.cfg, dev, partners)
        members = [p for p in (get(m) for m in groups.peers(mac)) if p is not None]
        access = [(r, p) for r in groups.rules_of(mac)
                  if (p := get(r.dst if r.src == mac else r.src)) is not None]
        return P.device_rows(self.cfg, dev, partners, members, access)

    def _policy_peers(self, mac: str) -> set[str]:
        """Devices whose rows depend on ``mac``'s record (bridges, groups, access rules)."""
        out = set(self.registry.bridge_partners(mac))
        groups: GroupPolicy | None = getattr(self.registry, "groups", None)
        if groups is not None:
            out |= groups.related(mac)
        return out

    def _rebuild(self) -> None:
        by_mac: dict[str, P.Rows] = {}
        devices = {d.mac: d for d in self.registry.devices()}
        partners: dict[str, list[P.DeviceLike]] = {}
        for a, b in self.registry.bridges():
            if a in devices and b in devices:
                partners.setdefault(a, []).append(devices[b])
                partners.setdefault(b, []).append(devices[a])
        groups: GroupPolicy | None = getattr(self.registry, "groups", None)
        count: dict[str, dict[Any, int]] = {n: {} for n in P.ROW_SETS}
        for mac, dev in devices.items():
            if groups is None:
                rows = P.device_rows(self.cfg, dev, partners.get(mac, ()))
            else:
                members = [devices[m] for m in groups.peers(mac) if m in devices]
                access = [(r, devices[o]) for r in groups.rules_of(mac)
                          if (o := r.dst if r.src == mac else r.src) in devices]
                rows = P.device_rows(self.cfg, dev, partners.get(mac, ()), members, access)
            by_mac[mac] = rows
            for name, items in rows.items():
                c = count[name]
                for row in items:
                    c[row] = c.get(row, 0) + 1
        self._by_mac, self._count = by_mac, count

    # -- applying ------------------------------------------------------------
    def apply_full(self) -> None:
        """Recompute everything from the registry and replace the table atomically."""
        with self._lock:
            self._rebuild()
            cmds = [{"add": {"table": {"family": "inet", "name": self.cfg.table}}},
                    *P.full_commands(self.cfg, self.rows(), table_exists=True)]
            self.nft.apply(cmds)

    def refresh(self, macs: Iterable[str]) -> int:
        """Re-derive the rows of ``macs`` and apply the difference; returns #elements changed."""
        with self._lock:
            add, delete = P.empty_rows(), P.empty_rows()
            for mac in set(macs):
                new = self._device_rows(mac)
                old = self._by_mac.pop(mac, None) or P.empty_rows()
                if new is not None:
                    self._by_mac[mac] = new
                else:
                    new = P.empty_rows()
                for name in P.ROW_SETS:
                    c = self._count[name]
                    for row in old[name] - new[name]:
                        n = c[row] - 1
                        if n:
                            c[row] = n
                        else:
                            del c[row]
                            delete[name].add(row)
                    for row in new[name] - old[name]:
                        n = c.get(row, 0) + 1
                        c[row] = n
                        if n == 1:
                            add[name].add(row)
            for name in P.ROW_SETS:
                both = add[name] & delete[name]
                add[name] -= both
                delete[name] -= both
            cmds = P.diff_commands(self.cfg.table, add, delete)
            if not cmds:
                return 0
            try:
                self.nft.apply(cmds)
            except FirewallError as exc:
                # The kernel differs from what we believed: replace the table.
                log.warning("incremental firewall update failed (%s); re-applying all", exc)
                self.last_error = str(exc)
                self.heal([f"incremental update refused: {exc}"], "update_refused")
            self.changes += 1
            return sum(len(v) for v in add.values()) + sum(len(v) for v in delete.values())

    def on_event(self, event: Event) -> None:
        """Registry event callback (runs synchronously after the change is durable)."""
        if event.kind not in WATCHED_EVENTS or not self._running:
            return
        macs = {event.mac}
        peer = event.data.get("peer") if hasattr(event, "data") else None
        if peer:
            macs.add(peer)
        if event.kind in ("device", "ip"):
            macs.update(self._policy_peers(event.mac))
        elif event.kind == "group_changed":
            macs.update(event.data.get("members", ()))
        try:
            self.refresh(macs)
        except Exception as exc:  # keep the publisher alive; a retry heals
            log.exception("firewall update for %s failed", event.mac)
            self.last_error = str(exc)
            self._schedule_retry()

    # -- watching and healing -------------------------------------------------
    def differences(self, elements: bool = True) -> list[str]:
        """How the kernel table differs from the policy (empty when in sync)."""
        with self._lock:
            listing = (self.nft.list_table(self.cfg.table) if elements
                       else self.nft.list_structure(self.cfg.table))
            return table_differences(listing, self.skel, self.rows(), elements)

    def check(self, force: bool = False) -> bool:
        """Compare the table with the policy and heal it; True when it re-applied.

        A structure listing (chains and sets, ~10 ms) catches a flushed or
        deleted table at once; the full comparison of rules and elements
        (~0.3 s at 20k elements) follows when the structure is intact.
        (``force`` is accepted for callers of the former polling API.)
        """
        with self._lock:
            diffs = self.differences(elements=False) or self.differences(elements=True)
            if not diffs:
                return False
            self.heal(diffs, "table_missing" if diffs == ["table missing"] else "table_altered")
            return True

    def heal(self, diffs: list[str], reason: str = "table_altered") -> None:
        """Re-apply the whole table with IPv4 forwarding held off meanwhile.

        Forwarding is switched back on only when it was on before and the
        table is in place; when the re-apply fails it stays off (fail closed)
        and a retry is scheduled. ``reason`` (one word) goes into the event.
        """
        with self._lock:
            retrying = self.heal_failing  # a failed heal being retried: already logged
            if not retrying:
                log.warning("firewall table %s altered (%s); re-applying", self.cfg.table,
                            ", ".join(diffs))
            self._hold_forwarding()
            try:
                self.apply_full()
            except Exception as exc:
                self.last_error = f"heal failed: {exc}"
                self.heal_failing = True
                if not retrying:
                    log.error("firewall table %s could not be restored (%s); IPv4 forwarding "
                              "stays off, retrying every %.0f s", self.cfg.table, exc, RETRY_S)
                self._schedule_retry()
                raise
            if retrying:
                log.warning("firewall table %s restored after a failed heal", self.cfg.table)
            self.heal_failing = False
            self._release_forwarding()
            self.heals += 1
        self.registry.bus.publish(Event(HEALED_EVENT, "", {
            "family": "inet", "table": self.cfg.table, "heals": self.heals, "reason": reason}))

    def _hold_forwarding(self) -> None:
        if self.forward_path is None or self.forwarding_held:
            return
        try:
            self.forwarding_held = set_ip_forward(self.forward_path, on=False)
        except OSError as exc:
            log.warning("cannot hold IPv4 forwarding off during the heal: %s", exc)

    def _release_forwarding(self) -> None:
        if self.forwarding_held and self.forward_path is not None:
            set_ip_forward(self.forward_path, on=True)
            self.forwarding_held = False

    def _on_ruleset_change(self, commit: Commit | None) -> None:
        """Netlink told us another process changed our table (None: maybe)."""
        if not self._running:
            return
        try:
            if commit is not None and (NFPROTO_INET, self.cfg.table) in commit.deleted:
                self.heal(["table deleted"], "table_deleted")  # no listing: re-apply at once
            else:
                self.check()
        except Exception as exc:
            if not self.heal_failing:  # a failed heal logged itself and retries
                self.last_error = str(exc)
                log.exception("firewall check failed")

    def _schedule_retry(self) -> None:
        if self._loop is None or not self._running or self._retry is not None:
            return

        def retry() -> None:
            self._retry = None
            self._on_ruleset_change(None)

        self._retry = self._loop.call_later(RETRY_S, retry)

    # -- Service protocol ----------------------------------------------------
    def reload(self, settings: Settings | None = None) -> None:
        """SIGHUP: take new subnets/NAT from ``settings`` and re-apply; else verify the table.

        The table name stays (renaming it needs a restart).
        """
        if settings is None:
            self.check(force=True)
            return
        cfg = P.PolicyConfig.from_settings(settings)
        if cfg.table != self.cfg.table:
            log.warning("reload: firewall table name change to %s needs a restart", cfg.table)
            cfg = P.PolicyConfig(cfg.subnets, self.cfg.table, cfg.nat_interface)
        with self._lock:
            self.cfg, self.skel = cfg, P.skeleton(cfg)
            self.apply_full()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._unsubscribe = self.registry.bus.subscribe(self.on_event)
        try:
            # watch before the first apply: a flush right after it is not missed
            self._watcher = RulesetWatcher({(NFPROTO_INET, self.cfg.table)},
                                           self._on_ruleset_change, self.nft.own_pids)
            self._watcher.start(self._loop)
            self.apply_full()
        except Exception:
            await self.stop()
            raise
        log.info("firewall table inet %s in place (nftables backend: %s)", self.cfg.table,
                 self.nft.backend_name)

    async def stop(self) -> None:
        self._running = False
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        tab = {"family": "inet", "name": self.cfg.table}
        try:
            self.nft.apply([{"add": {"table": tab}}, {"delete": {"table": tab}}])
        except FirewallError as exc:
            log.warning("could not remove table %s: %s", self.cfg.table, exc)

    def health(self) -> tuple[str, str]:
        """``failed`` while the table could not be restored (forwarding held off)."""
        if not self._running:
            return "failed", "stopped"
        if self.heal_failing:
            held = ", forwarding held off" if self.forwarding_held else ""
            return "failed", f"table inet {self.cfg.table} not restored{held}: {self.last_error}"
        return "ok", ""

    def counters(self) -> dict[str, float]:
        """Heals of the table (for metrics)."""
        return {"heals": self.heals}

    def status(self) -> str:
        if not self._running:
            return "stopped"
        r = self.rows()
        text = (f"running table inet {self.cfg.table} ({self.nft.backend_name} backend): "
                f"{len(r[P.LEASES])} leases, "
                f"{len(r[P.BRIDGES]) // 2} bridge paths, {len(r[P.NAT])} nat, "
                f"{len(r[P.DENIED])} denied, {len(r[P.GROUPS]) // 2} group paths, "
                f"{len(r[P.ACCESS]) + len(r[P.ACCESS_ANY])} access paths; "
                f"healed {self.heals}x")
        return text + (f"; last error: {self.last_error}" if self.last_error else "")


def build_firewall_service(settings: Settings, registry: Registry) -> FirewallService:
    """Factory for the gateway: the firewall service for these settings and registry.

    Raises :class:`edgesec.net.nftbackend.NftUnavailable` when no nftables
    backend works (the gateway then refuses to run).
    """
    return FirewallService(P.PolicyConfig.from_settings(settings), registry,
                           nft=Nft(backend_for(settings)), forward_path=IP_FORWARD)
