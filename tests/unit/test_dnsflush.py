"""Split DNS: a device's DNS flows are flushed when its effective NAT flips, and
only then; a flush that cannot run is a warning, not a crash."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edgesec.config import parse_settings
from edgesec.dhcp import dnsflush
from edgesec.registry import Registry
from edgesec.store import Store

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
INI = ('[system]\ndefaultOpenVlanId = 1\n[interfaces]\n'
       'if1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"\n'
       'if2 = "2,10.0.2.1,10.0.2.255,255.255.255.0"\n')


def test_flushes_follow_effective_nat_flips(monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    flushed: list[tuple[str, ...]] = []

    def record(ips: tuple[str, ...]) -> int:
        if "10.0.2.9" in ips:
            raise OSError("no conntrack netlink here")
        flushed.append(tuple(ips))
        return 1

    monkeypatch.setattr(dnsflush, "flush_dns_flows", record)
    registry = Registry(parse_settings(INI), Store(":memory:"))
    registry.accept_mac(A, 1)
    registry.set_ip("add", A, "10.0.1.7")
    registry.accept_mac(B, 2)
    registry.set_ip("add", B, "10.0.2.9")

    async def run() -> None:
        watch = dnsflush.NatWatch(registry)
        watch.start()
        registry.set_nat(A, True)       # off -> on: flush
        registry.set_label(A, "cam")    # no NAT change: nothing
        registry.set_nat(A, True)       # already on: nothing
        registry.deny_mac(A)            # effective NAT off (denied): flush
        registry.set_nat(B, True)       # flush fails: logged, no crash
        for _ in range(3000):
            if len(flushed) == 2 and not watch._tasks:
                break
            await asyncio.sleep(0.01)
        watch.stop()
        registry.accept_mac(A, 1)
        registry.set_nat(A, False)      # not watched any more
        await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING, logger="edgesec.dhcp.dnsflush"):
        asyncio.run(run())
    assert flushed == [("10.0.1.7",), ("10.0.1.7",)]
    assert "cannot flush DNS flows of 10.0.2.9" in caplog.text
