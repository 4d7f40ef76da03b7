"""The management API on the real daemon: UNIX socket with peer credentials, HTTPS
with tokens, changes visible through the text supervisor and vice versa, and no
way in from a device namespace."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from isolation_lab import IsolationLab, wait_for
from prometheus_client.parser import text_string_to_metric_families

from edgesec.api.cli import _UnixHTTP
from edgesec.api.tokens import TokenStore
from edgesec.lab.topology import LabDevice, Topology, run

API_PORT = 8443


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgesec-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "api.crt", directory / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Bed:
    def __init__(self, topo: Topology, lab: IsolationLab, a: LabDevice, b: LabDevice) -> None:
        self.topo, self.lab, self.a, self.b = topo, lab, a, b
        self.sock = lab.dir / "api.sock"

    def unix(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = _UnixHTTP(self.sock, 10.0)
        try:
            data = None if body is None else json.dumps(body)
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            res = conn.getresponse()
            raw = res.read()
        finally:
            conn.close()
        try:
            return res.status, json.loads(raw)
        except ValueError:
            return res.status, raw.decode()

    def https_status(self, ns: str, host: str, path: str, token: str = "") -> int:
        """Status of an HTTPS GET made from namespace ``ns`` (0 if no connection)."""
        code = (
            "import http.client, ssl, sys\n"
            "ctx = ssl._create_unverified_context()\n"
            f"c = http.client.HTTPSConnection({host!r}, {API_PORT}, context=ctx, timeout=3)\n"
            "try:\n"
            f"    c.request('GET', {path!r}, headers={{'Authorization': 'Bearer {token}'}} "
            f"if {bool(token)} else {{}})\n"
            "    print(c.getresponse().status)\n"
            "except OSError:\n    print(0)\n")
        out = run(ns, [sys.executable, "-c", code], check=False).stdout.strip()
        return int(out or 0)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with Topology() as topo:
        a, b = topo.add_device("a", 1), topo.add_device("b", 2)
        certs = tmp_path_factory.mktemp("certs")
        cert, key = self_signed(certs)
        lab = IsolationLab(topo, vlans=(1, 2), extra={"api": {
            "socketPath": "api.sock", "address": "0.0.0.0", "port": API_PORT,
            "certFile": str(cert), "keyFile": str(key), "tokenFile": "api-tokens.json"}})
        with lab.running(a, b):
            yield Bed(topo, lab, a, b)


def test_root_on_the_unix_socket_is_admin_and_sees_the_devices(bed: Bed) -> None:
    status, devices = bed.unix("GET", "/api/v1/devices")
    assert status == 200
    macs = {d["mac"]: d for d in devices}
    assert macs[bed.a.mac]["vlan"] == 1 and macs[bed.a.mac]["ips"]
    assert oct(bed.sock.stat().st_mode & 0o777) == "0o660"


def test_an_api_change_is_enforced_and_visible_to_the_supervisor(bed: Bed) -> None:
    assert not bed.topo.tcp_ok(bed.a.ns, bed.topo.WAN_IP, 7)
    status, body = bed.unix("PATCH", f"/api/v1/devices/{bed.a.mac}", {"nat": True})
    assert status == 200 and body["nat"] is True
    assert bed.lab.ctl(f"GET_MAP {bed.a.mac}").split(",")[5] == "1"
    assert wait_for(lambda: bed.topo.tcp_ok(bed.a.ns, bed.topo.WAN_IP, 7), 10)
    status, body = bed.unix("PATCH", f"/api/v1/devices/{bed.a.mac}", {"nat": False})
    assert status == 200
    assert wait_for(lambda: not bed.topo.tcp_ok(bed.a.ns, bed.topo.WAN_IP, 7), 10)


def test_a_supervisor_change_is_visible_through_the_api(bed: Bed) -> None:
    bed.lab.ok(f"ADD_BRIDGE {bed.a.mac} {bed.b.mac}")
    try:
        status, bridges = bed.unix("GET", "/api/v1/bridges")
        assert status == 200
        assert {(x["a"], x["b"]) for x in bridges} == {tuple(sorted((bed.a.mac, bed.b.mac)))}
        _, why = bed.unix("GET", f"/api/v1/explain?src={bed.a.mac}&dst={bed.b.mac}")
        assert why["allowed"] is True
    finally:
        bed.lab.ok(f"REMOVE_BRIDGE {bed.a.mac} {bed.b.mac}")
    _, why = bed.unix("GET", f"/api/v1/explain?src={bed.a.mac}&dst={bed.b.mac}")
    assert why["allowed"] is False and any("ADD_BRIDGE" in r for r in why["remedies"])


def test_bad_input_gets_a_reason_and_changes_nothing(bed: Bed) -> None:
    before = bed.lab.ctl(f"GET_MAP {bed.a.mac}")
    for body in ({"vlan": 99}, {"nat": 1}, {"bogus": True}):
        status, reply = bed.unix("PATCH", f"/api/v1/devices/{bed.a.mac}", body)
        assert status == 400 and reply["detail"], reply
    assert bed.unix("GET", "/api/v1/devices/02:00:00:00:99:99")[0] == 404
    assert bed.lab.ctl(f"GET_MAP {bed.a.mac}") == before


def test_https_needs_a_token_and_devices_cannot_reach_it(bed: Bed) -> None:
    gw = bed.topo.gateway
    token, _ = TokenStore(bed.lab.dir / "api-tokens.json").create("read", "test")
    assert bed.https_status(gw, "127.0.0.1", "/api/v1/status") == 401
    assert bed.https_status(gw, "127.0.0.1", "/api/v1/status", token) == 200
    assert bed.https_status(gw, "10.0.1.1", "/api/v1/status", token) == 200  # it listens there
    # the API listens on every address of the gateway, yet the firewall keeps it
    # from the devices (they reach the gateway only for DHCP, DNS and mDNS)
    assert bed.https_status(bed.a.ns, "10.0.1.1", "/api/v1/status", token) == 0


def test_metrics_of_the_running_gateway_parse(bed: Bed) -> None:
    status, text = bed.unix("GET", "/metrics")
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"edgesec_devices", "edgesec_service_state", "edgesec_firewall_heals",
            "edgesec_supervisor_requests"} <= names
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                          capture_output=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    _, st = bed.unix("GET", "/api/v1/status")
    assert {s["name"] for s in st["services"]} >= {"firewall", "dhcp", "supervisor", "api"}


def test_explain_reports_what_the_kernel_dropped(bed: Bed) -> None:
    for _ in range(3):  # blocked: no bridge, no NAT
        assert not bed.topo.tcp_ok(bed.a.ns, bed.lab.mapped_ip(bed.b), 7, timeout=0.3)
        assert not bed.topo.tcp_ok(bed.a.ns, bed.topo.WAN_IP, 7, timeout=0.3)
    _, why = bed.unix("GET", f"/api/v1/explain?src={bed.a.mac}&dst={bed.b.mac}")
    assert why["allowed"] is False and why["dropped"]["packets"] >= 3, why
    assert any("the firewall dropped" in r for r in why["reasons"]), why
    _, out = bed.unix("GET", f"/api/v1/explain?src={bed.a.mac}&dst=internet")
    assert out["dropped"]["packets"] >= 3, out
    listing = json.loads(run(bed.topo.gateway, ["nft", "-j", "list", "set", "inet", "edgesec",
                                                "drops"]).stdout)
    (table_set,) = [o["set"] for o in listing["nftables"] if "set" in o]
    assert table_set["size"] == 65536 and table_set["timeout"] == 3600
