"""Healing holds IPv4 forwarding off, restores only what it changed, counts and announces.

A forwarding "sysctl" file in tmp_path stands in for /proc/sys/net/ipv4/ip_forward;
the nftables model of test_policy_incremental refuses transactions on demand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_policy_incremental import FakeRegistry, ModelNft, _cfg

from edgesec.events import Event
from edgesec.net.firewall import FirewallError, FirewallService
from edgesec.net.nftgen import NFPROTO_INET, Commit

GONE = frozenset({(NFPROTO_INET, "edgesec")})


class BrokenNft(ModelNft):
    """The model, with the table reported missing and transactions refused while ``broken``."""

    broken = False

    def apply(self, cmds: list[dict[str, Any]]) -> None:
        if self.broken:
            raise FirewallError("nft refused the transaction: broken by the test")
        super().apply(cmds)

    def list_structure(self, table: str) -> None:
        return None

    def own_pids(self) -> frozenset[int]:
        return frozenset()


def service(tmp_path: Path, forwarding: str) -> tuple[FirewallService, BrokenNft, Path,
                                                      list[Event]]:
    fwd = tmp_path / "ip_forward"
    fwd.write_text(forwarding + "\n")
    reg, nft = FakeRegistry(), BrokenNft()
    events: list[Event] = []
    reg.bus.subscribe(events.append)
    fw = FirewallService(_cfg(), reg, nft=nft, forward_path=fwd)  # type: ignore[arg-type]
    fw._running = True
    return fw, nft, fwd, events


def test_failed_heal_keeps_forwarding_off_until_a_heal_succeeds(tmp_path: Path) -> None:
    fw, nft, fwd, events = service(tmp_path, "1")
    nft.broken = True
    fw._on_ruleset_change(Commit(5, 4242, GONE, GONE))
    assert fwd.read_text() == "0\n" and fw.forwarding_held
    assert fw.health()[0] == "failed" and "heal failed" in fw.health()[1]
    assert fw.heals == 0 and not events
    fw._on_ruleset_change(None)  # a retry while still broken: still off
    assert fwd.read_text() == "0\n"
    nft.broken = False
    fw._on_ruleset_change(None)
    assert fwd.read_text() == "1\n" and not fw.forwarding_held and fw.health() == ("ok", "")
    assert fw.heals == 1
    assert [(e.kind, e.data["table"], e.data["heals"]) for e in events] == [
        ("firewall_healed", "edgesec", 1)]


def test_heal_never_switches_on_forwarding_that_was_off(tmp_path: Path) -> None:
    fw, _nft, fwd, events = service(tmp_path, "0")
    fw._on_ruleset_change(Commit(5, 4242, GONE, GONE))
    assert fwd.read_text() == "0\n" and fw.heals == 1 and len(events) == 1


def test_a_failing_heal_is_logged_once_while_retried(tmp_path: Path, caplog: Any) -> None:
    fw, nft, fwd, _events = service(tmp_path, "0")
    nft.broken = True
    for _ in range(5):
        fw._on_ruleset_change(None)
    assert caplog.text.count("could not be restored") == 1
    assert fw.health()[0] == "failed" and fwd.read_text() == "0\n"
    nft.broken = False
    fw._on_ruleset_change(None)
    assert fw.health() == ("ok", "") and "restored after a failed heal" in caplog.text
