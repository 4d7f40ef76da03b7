"""New-device admissions through the RADIUS request path are rate-limited (real registry).

A flood of random MACs (what a device gets by associating with forged
addresses) takes at most ``newDeviceBurst`` records and then one per
``60 / newDeviceRate`` seconds; known devices are never limited; the
rejections cost a bounded number of log lines.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

import pytest

from edgesec.access import radius_codec as rc
from edgesec.access.newdevices import NewDeviceLimiter
from edgesec.access.radius import RadiusConfig, RadiusServer
from edgesec.lab.hostap import access_request
from edgesec.registry import Registry
from edgesec.store import Store
from registry_world import pool_settings

SECRET = b"s3cret"
CLIENT = ("127.0.0.1", 40000)

class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(mac: str, ident: int, password: str | None = None) -> bytes:
    return access_request(mac, SECRET, ident, password=password)[0]


def make(tmp: Path, open_net: bool = True, rate: int = 30, burst: int = 10
         ) -> tuple[Registry, RadiusServer, Clock]:
    clock = Clock()
    reg = Registry(pool_settings(open_net), Store(tmp / "c.sqlite"))
    cfg = RadiusConfig(secret=SECRET, clients=ipaddress.IPv4Network("127.0.0.0/30"),
                       new_device_rate=rate, new_device_burst=burst)
    return reg, RadiusServer(cfg, reg, clock=clock), clock


def code(reply: bytes | None) -> int:
    assert reply is not None
    return reply[0]


def test_a_flood_of_random_macs_takes_the_burst_then_the_rate(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgesec.access.radius")
    reg, srv, clock = make(tmp_path)
    reg.accept_mac("02:00:00:00:00:01", 1)
    codes = [code(srv.handle(request(os.urandom(6).hex(":"), i % 256), CLIENT))
             for i in range(300)]
    assert codes.count(rc.ACCESS_ACCEPT) == 10 and len(reg.devices()) == 11
    assert srv.counters.rate_limited == 290
    # a known device is never limited
    assert code(srv.handle(request("02:00:00:00:00:01", 1), CLIENT)) == rc.ACCESS_ACCEPT
    clock.now += 60  # 30 a minute: 30 more, then limited again
    more = [code(srv.handle(request(os.urandom(6).hex(":"), i % 256), CLIENT))
            for i in range(40)]
    # 16 pool VLANs: the 6 left go, then the pool (not the limiter) says no
    assert more.count(rc.ACCESS_ACCEPT) == 6 and srv.counters.rate_limited == 290
    assert len(caplog.records) <= 11  # 330 rejections: one burst of log lines
    clock.now += 3600
    lots = [code(srv.handle(request(os.urandom(6).hex(":"), i % 256), CLIENT))
            for i in range(40)]
    assert lots.count(rc.ACCESS_ACCEPT) == 0 and len(reg.devices()) == 17


def test_rejected_strangers_cost_no_token_so_a_ticket_still_gets_in(tmp_path: Path) -> None:
    reg, srv, _ = make(tmp_path, open_net=False, burst=1)
    for i in range(100):  # a closed gateway: strangers are rejected and take nothing
        assert code(srv.handle(request(os.urandom(6).hex(":"), i), CLIENT)) == rc.ACCESS_REJECT
    assert srv.counters.rate_limited == 0
    t = reg.register_ticket("02:00:00:00:00:09", "cam", 1)
    reply = srv.handle(request("02:00:00:00:00:0a", 7, t.passphrase), CLIENT)
    assert code(reply) == rc.ACCESS_ACCEPT and reg.get("02:00:00:00:00:0a") is not None


def test_limiter_arithmetic() -> None:
    clock = Clock()
    lim = NewDeviceLimiter(6, 2, clock)  # one every 10 s, two saved
    assert lim.available()
    lim.take()
    lim.take()
    assert not lim.available() and lim.limited == 1
    clock.now += 9.9
    assert not lim.available()
    clock.now += 0.2
    assert lim.available()
    clock.now += 1000
    lim.take()
    lim.take()
    assert not lim.available()  # the burst caps the savings
    off = NewDeviceLimiter(0, 0, clock)
    for _ in range(100):
        off.take()
    assert off.available() and not off.enabled
    with pytest.raises(ValueError):
        NewDeviceLimiter(-1, 1)
