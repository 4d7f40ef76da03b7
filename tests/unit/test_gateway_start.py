"""The gateway's start order and failure reporting, on a real Gateway from a config file.

The registry, store, supervisor socket and API are real; the optional services
the config would enable are replaced by recording ones (their real counterparts
need bridges, nftables, hostapd...), each noting whether the control socket was
already answering when it started.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any, ClassVar

import pytest

from daemon import write_config
from edgesec import gateway as gw
from edgesec import unixsock
from edgesec.config import load_settings
from edgesec.failclosed import GatewayRefused


def control_answers(path: Path) -> bool:
    """Does the supervisor's UNIX socket take a datagram (is the control API up)?"""
    return unixsock.answers(path, socket.SOCK_DGRAM)


class Recording:
    """A service that records its start (and whether the control API was up then)."""

    log: ClassVar[list[tuple[str, str]]] = []
    socket: ClassVar[Path]

    def __init__(self, name: str, fail_start: bool = False) -> None:
        self.name, self.fail_start = name, fail_start

    async def start(self) -> None:
        up = "control up" if control_answers(Recording.socket) else "control down"
        Recording.log.append((self.name, up))
        if self.fail_start:
            raise RuntimeError(f"{self.name} would not start")

    async def stop(self) -> None:
        Recording.log.append((self.name, "stopped"))

    def status(self) -> str:
        return "recording"


def build_ok(name: str) -> Any:
    return lambda settings, registry: Recording(name)


def build_failing_start(name: str) -> Any:
    return lambda settings, registry: Recording(name, fail_start=True)


def build_broken(settings: Any, registry: Any) -> Recording:
    raise OSError("no such binary: /nonexistent/radiusd")


# factories looked up by name from this module (ServiceSpec holds module + attribute)
build_subnets, build_firewall, build_mdns = (build_ok(n) for n in ("subnets", "firewall", "mdns"))
build_hostapd = build_failing_start("hostapd")
build_firewall_failing = build_failing_start("firewall")


def specs(firewall: str = "build_firewall") -> tuple[gw.ServiceSpec, ...]:
    """The real order of OPTIONAL_SERVICES, with recording factories; dhcp disabled."""
    real = {s.name: s for s in gw.OPTIONAL_SERVICES}
    on = {"subnets": "build_subnets", "firewall": firewall, "radius": "build_broken",
          "hostapd": "build_hostapd", "mdns": "build_mdns"}
    out = []
    for s in gw.OPTIONAL_SERVICES:
        if s.name in on:
            out.append(gw.ServiceSpec(s.name, __name__, on[s.name], lambda _s: True))
        elif s.name == "api":
            out.append(real["api"])  # the real API on its socket beside the config
        else:
            out.append(gw.ServiceSpec(s.name, __name__, "build_mdns", lambda _s: False))
    return tuple(out)


@pytest.fixture
def make_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    made: list[gw.Gateway] = []

    def make(system: dict[str, object], firewall: str = "build_firewall") -> gw.Gateway:
        monkeypatch.setattr(gw, "OPTIONAL_SERVICES", specs(firewall))
        g = gw.Gateway(load_settings(write_config(tmp_path, {"system": system})))
        assert g.settings.supervisor.supervisor_control_path is not None
        Recording.socket = g.settings.supervisor.supervisor_control_path
        Recording.log = []
        made.append(g)
        return g

    yield make
    for g in made:
        if g.services:  # a test that failed before its own stop()
            asyncio.run(g.stop())


def test_all_disabled_runs_only_the_control_api_and_the_api(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With every exec* off the real gateway runs the supervisor and the API, nothing fails."""
    monkeypatch.delenv("EDGESEC_CRYPT_PASSPHRASE", raising=False)
    g = gw.Gateway(load_settings(write_config(tmp_path)))

    async def run() -> None:
        await g.start()
        try:
            assert [s.name for s in g.services] == ["supervisor", "api"]
            assert control_answers(g.settings.supervisor.supervisor_control_path)  # type: ignore[arg-type]
            # no vault passphrase in the test environment: the one reported failure
            assert list(g.failed) == ["crypt"] and "no vault passphrase" in g.failed["crypt"]
            assert g.summary() == "running: 2 ok, 1 failed (crypt)"
        finally:
            await g.stop()

    asyncio.run(run())
    assert g.services == []


def test_start_order_and_failures_of_optional_services(make_gateway: Any) -> None:
    """Interfaces and firewall before the control API; the rest after it, in order; a
    service that cannot be built or started is reported and the gateway keeps running."""
    g = make_gateway({"requireServices": "none"})

    async def run() -> None:
        await g.start()
        try:
            assert Recording.log == [("subnets", "control down"), ("firewall", "control down"),
                                     ("hostapd", "control up"), ("mdns", "control up")]
            assert [s.name for s in g.services] == ["subnets", "firewall", "supervisor",
                                                    "mdns", "api"]
            assert g.failed["radius"] == ("cannot be built: no such binary: "
                                          "/nonexistent/radiusd")
            assert g.failed["hostapd"] == "failed to start: hostapd would not start"
            lines = g.status_lines()
            assert "radius failed cannot be built: no such binary: /nonexistent/radiusd" in lines
            assert "hostapd failed failed to start: hostapd would not start" in lines
            assert "failed (" in g.summary() and "hostapd" in g.summary()
        finally:
            await g.stop()
        # stop is the reverse of start
        assert [n for n, what in Recording.log if what == "stopped"] == [
            "mdns", "firewall", "subnets"]

    asyncio.run(run())


def test_a_required_early_service_failing_refuses_before_the_control_api(
        make_gateway: Any) -> None:
    """The firewall failing: GatewayRefused, the control API never opened, nothing later
    built; stop() undoes what started."""
    g = make_gateway({"requireServices": "none"}, firewall="build_firewall_failing")

    async def run() -> None:
        with pytest.raises(GatewayRefused, match="firewall failed to start"):
            await g.start()
        assert Recording.log == [("subnets", "control down"), ("firewall", "control down")]
        assert [s.name for s in g.services] == ["subnets"]
        assert not control_answers(Recording.socket)
        await g.stop()
        assert Recording.log[-1] == ("subnets", "stopped")

    asyncio.run(run())


def test_a_required_late_service_failing_refuses_after_starting_the_rest(
        make_gateway: Any) -> None:
    """By default an enabled RADIUS is required: its build failure refuses the gateway."""
    g = make_gateway({})

    async def run() -> None:
        with pytest.raises(GatewayRefused, match="radius cannot be built"):
            await g.start()
        assert ("mdns", "control up") in Recording.log  # the others were still started
        await g.stop()

    asyncio.run(run())
