"""The dashboard end to end: real Chromium (Debian's, driven by Playwright) in the
gateway namespace, logging in with a token, switching NAT on for a lab device,
and the device then reaching the WAN; events appear without a reload."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from isolation_lab import IsolationLab, wait_for

from edgesec.api.tokens import TokenStore
from edgesec.lab.topology import Topology

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PORT = 8088
# The flags the machine's notes give for a closed network, plus root's --no-sandbox.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_in(ns: str, directory: Path) -> Path:
    """A launcher that runs Chromium inside network namespace ``ns``."""
    wrapper = directory / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Topology, IsolationLab]]:
    with Topology() as topo:
        topo.add_device("cam", 1)
        topo.add_device("hub", 2)
        lab = IsolationLab(topo, vlans=(1, 2), extra={"api": {
            "socketPath": "api.sock", "port": PORT, "tokenFile": "api-tokens.json"}})
        try:
            lab.start()
            for dev in topo.devices.values():
                lab.join(dev)
            yield topo, lab
        finally:
            if lab.daemon is not None:
                print(lab.daemon.log()[-3000:])
            lab.stop()


def test_log_in_see_devices_switch_nat_and_follow_events(
        lab: tuple[Topology, IsolationLab], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    topo, iso = lab
    cam = topo.devices["cam"]
    token, _ = TokenStore(iso.dir / "api-tokens.json").create("operator", "browser")
    assert not topo.tcp_ok(cam.ns, topo.WAN_IP, 7)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_in(topo.gateway, tmp_path)),
                                     args=ARGS, env={**os.environ, "HOME": str(tmp_path)})
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            page.goto(f"http://127.0.0.1:{PORT}/")
            page.fill("#token", "est_wrong_token")
            page.click("button[type=submit]")
            expect(page.locator(".error")).to_contain_text("Unknown token")
            page.fill("#token", token)
            page.click("button[type=submit]")
            row = page.locator(f'tr[data-mac="{cam.mac}"]')
            expect(row).to_be_visible(timeout=15_000)
            expect(row.locator("td.id").first).to_have_text(cam.mac)  # whole, not wrapped
            row.locator("input.nat").check()
            assert wait_for(lambda: topo.tcp_ok(cam.ns, topo.WAN_IP, 7), 15), iso.daemon.log()
            assert iso.ctl(f"GET_MAP {cam.mac}").split(",")[5] == "1"
            # a change made elsewhere shows up live, without a reload
            iso.ok(f"ADD_BRIDGE {cam.mac} {topo.devices['hub'].mac}")
            expect(page.locator("#event-list")).to_contain_text("bridge_added", timeout=15_000)
            expect(page.locator("#bridge-list")).to_contain_text(cam.mac, timeout=15_000)
            page.fill("#explain-form input[name=src]", cam.mac)
            page.fill("#explain-form input[name=dst]", topo.devices["hub"].mac)
            page.click("#explain-form button")
            expect(page.locator("#explanation")).to_contain_text("Allowed")
            # groups are edited from the page too, and the supervisor sees them
            page.fill("#member-form input[name=group]", "cams")
            page.fill("#member-form input[name=mac]", cam.mac)
            page.click("#member-form button")
            expect(page.locator("#group-list")).to_contain_text("cams", timeout=15_000)
            assert wait_for(lambda: iso.ctl("GET_GROUPS") == f"cams,{cam.mac}\n", 10)
        finally:
            browser.close()
