"""The people-and-scripts CLI against the real daemon: `ctl --json`, the reason hint
on FAIL, and `devices`/`status`/`explain` over the management API's UNIX socket."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import EDGESEC, Daemon, write_config

MAC = "02:00:00:00:00:2a"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    config = write_config(tmp_path_factory.mktemp("views"), {"nat": {"natInterface": "wan0"}})
    with Daemon(config) as daemon:
        assert daemon.ctl(f"ACCEPT_MAC {MAC} 2") == "OK\n"
        assert daemon.ctl(f"SET_IP add {MAC} 10.0.2.9") == "OK\n"
        yield daemon


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGESEC, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_ctl_json_and_the_reason_hint_on_fail(gateway: Daemon) -> None:
    sock = str(gateway.socket_path)
    done = cli("ctl", "-s", sock, "--json", "PING_SUPERVISOR")
    assert done.returncode == 0
    assert json.loads(done.stdout) == {"command": "PING_SUPERVISOR", "ok": True,
                                       "lines": ["PONG"]}
    done = cli("ctl", "-s", sock, "ACCEPT_MAC", "not-a-mac", "1")
    assert done.returncode == 1 and done.stdout == "FAIL\n"
    assert "daemon log" in done.stderr


def test_devices_status_explain_over_the_api_socket(gateway: Daemon) -> None:
    api = str(Path(gateway.dir) / "api.sock")
    done = cli("devices", "-s", api, "--json")
    assert done.returncode == 0, done.stderr
    (dev,) = json.loads(done.stdout)
    assert dev["mac"] == MAC and dev["ips"] == ["10.0.2.9"]
    table = cli("devices", "-s", api)
    assert MAC in table.stdout and "10.0.2.9" in table.stdout
    status = cli("status", "-s", api, "--json")
    names = {s["name"] for s in json.loads(status.stdout)["services"]}
    assert {"supervisor", "api"} <= names
    assert status.returncode == (0 if json.loads(status.stdout)["state"] == "ok" else 1)
    why = cli("explain", "-s", api, MAC)
    assert why.returncode == 0 and "blocked" in why.stdout and f"ADD_NAT {MAC}" in why.stdout
    bad = cli("explain", "-s", api, "02:00:00:00:00:99")
    assert bad.returncode == 1 and "no device" in bad.stderr
