"""Resident memory (RSS) of the idle ``edgesec run`` daemon, beside a bare asyncio process.

Measured the same way in the same run (``VmRSS`` of ``/proc/<pid>/status`` once
the process has been idle for ``--settle`` seconds):

* peer: ``python -c "import asyncio; asyncio.run(asyncio.sleep(...))"`` (the least
  an asyncio daemon in this interpreter costs);
* minimal: every service off (tests/daemon.py's base config, no management API);
* lab: the lab's gateway config (``edgesec.lab.gwconfig``) minus capture, inside
  its own network namespaces (subnets, firewall, RADIUS, dnsmasq, mDNS, vault),
  once with the management API as the lab configures it (socket and TCP port)
  and once with ``[api]`` off; the API's web server starts on its first
  connection, so the API case is read again after one request to it;
* the minimal and the lab daemon again after 1,000 devices were added with
  ``ACCEPT_MAC`` (per-device state must stay bounded).

    .venv/bin/python bench/footprint.py               # 3 rounds, ~1 min a round
    .venv/bin/python bench/footprint.py --rounds 1 --no-lab
    .venv/bin/python bench/footprint.py --old-src /tmp/old/src   # and an older tree's daemon

``--old-src`` runs every case a second time with the daemon importing edgesec
from that source tree (``git archive <rev> src | tar -x -C /tmp/old``), in the
same rounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from daemon import Daemon, write_config  # noqa: E402

TARGET_MB = 40.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def peer_rss(settle: float) -> float:
    proc = subprocess.Popen([sys.executable, "-c",
                             "import asyncio; asyncio.run(asyncio.sleep(600))"])
    try:
        time.sleep(settle)
        return rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def mac(i: int) -> str:
    return f"02:{i >> 24 & 0xff:02x}:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:{i & 0xff:02x}:07"


def add_devices(daemon: Daemon, count: int, vlans: list[int]) -> None:
    from edgesec.supervisor.client import SupervisorClient

    with SupervisorClient(unix_path=daemon.socket_path, timeout=10) as client:
        for i in range(count):
            reply = client.request(f"ACCEPT_MAC {mac(i)} {vlans[i % len(vlans)]}")
            if reply != "OK\n":
                raise RuntimeError(f"ACCEPT_MAC refused: {reply!r}")


def api_request(socket_path: Path) -> None:
    """One authenticated (peer-credential) GET of the API's status over its socket."""
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(socket_path))
        sock.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    if not reply.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"API status failed: {reply[:200]!r}")


def daemon_rss(daemon: Daemon, settle: float, devices: int, vlans: list[int],
               api_socket: Path | None = None) -> tuple[float, float, float | None]:
    """(idle RSS, RSS after ``devices`` devices were added and the daemon idled again,
    RSS after one API request and idling again, when ``api_socket`` is given)."""
    daemon.start(timeout=60)
    try:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        time.sleep(settle)
        idle = rss_mb(pid)
        add_devices(daemon, devices, vlans)
        time.sleep(settle)
        grown = rss_mb(pid)
        used: float | None = None
        if api_socket is not None:
            api_request(api_socket)
            time.sleep(settle)
            used = rss_mb(pid)
        return idle, grown, used
    finally:
        daemon.stop()


def source_env(src: str) -> dict[str, str]:
    """The daemon's environment for importing edgesec from ``src`` ("" = this tree)."""
    return {"PYTHONPATH": src} if src else {}


def minimal(tmp: Path, settle: float, devices: int, src: str = ""
            ) -> tuple[float, float, float | None]:
    config = write_config(tmp, {"api": {"socketPath": ""}})
    return daemon_rss(Daemon(config, verbosity=0, env=source_env(src)), settle, devices,
                      [1, 2, 3, 4, 5])


def lab(tmp: Path, settle: float, devices: int, api: bool, src: str = ""
        ) -> tuple[float, float, float | None]:
    from edgesec.lab import gwconfig
    from edgesec.lab.topology import Topology

    with Topology() as topo:
        lab_secrets = gwconfig.LabSecrets.generate()
        text = gwconfig.render(16, lab_secrets).replace(
            "execCapture = true", "execCapture = false")
        if not api:  # the lab's own [api] section (socket and port) replaced by "off"
            text = replace_section(text, "api", 'socketPath = ""\nport = 0\n')
        config = tmp / "config.ini"
        config.write_text(text)
        daemon = Daemon(config, netns=topo.gateway, verbosity=0,
                        env={"EDGESEC_CRYPT_PASSPHRASE": lab_secrets.crypt_passphrase,
                             **source_env(src)})
        api_socket = None
        if api:
            from edgesec.config import load_settings

            api_socket = load_settings(config).api.socket_path
        return daemon_rss(daemon, settle, devices, [gwconfig.OPEN_VLAN], api_socket)


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` (INI) with the keys of section ``[name]`` replaced by ``body``."""
    out: list[str] = []
    skipping = found = False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            skipping = line.strip() == f"[{name}]"
            if skipping:
                found = True
                out.append(line + body + "\n")
                continue
        if not skipping:
            out.append(line)
    if not found:
        out.append(f"\n[{name}]\n{body}")
    return "".join(out)


def span(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds before reading")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--no-lab", action="store_true", help="skip the namespaced lab configs")
    parser.add_argument("--old-src", default="", help="also run each case on this src tree")
    args = parser.parse_args()
    if not args.no_lab and os.geteuid() != 0:
        parser.error("the lab configs need root (network namespaces); use --no-lab")

    cases: list[tuple[str, Callable[[Path], tuple[float, float, float | None]]]] = []
    for src, tag in [("", "")] + ([(args.old_src, " (old)")] if args.old_src else []):
        cases.append((f"minimal (everything off){tag}",
                      lambda t, src=src: minimal(t, args.settle, args.devices, src)))
        if not args.no_lab:
            cases.append((f"lab minus capture, no API{tag}",
                          lambda t, src=src: lab(t, args.settle, args.devices, False, src)))
            cases.append((f"lab minus capture, API on{tag}",
                          lambda t, src=src: lab(t, args.settle, args.devices, True, src)))
    peers: list[float] = []
    results: dict[str, list[tuple[float, float, float | None]]] = {
        name: [] for name, _ in cases}
    for _ in range(args.rounds):
        peers.append(peer_rss(args.settle))
        for name, run in cases:
            with tempfile.TemporaryDirectory(prefix="edgesec-footprint-") as tmp:
                results[name].append(run(Path(tmp)))

    print(f"edgesec daemon RSS (MB), {args.rounds} rounds (range), idle {args.settle:g} s; "
          f"peer = python -c 'import asyncio; asyncio.run(asyncio.sleep(...))'")
    print(f"{'process':<34} {'idle MB':>13} {'/ peer':>11} "
          f"{f'+{args.devices:,} devices MB':>20} {'growth MB':>11}")
    print(f"{'peer (bare asyncio)':<34} {span(peers):>13}")
    ok = True
    for name, values in results.items():
        idle = [v[0] for v in values]
        after = [v[1] for v in values]
        ratio = [i / p for i, p in zip(idle, peers, strict=True)]
        growth = [a - i for i, a, _ in values]
        print(f"{name:<34} {span(idle):>13} {span(ratio):>11} {span(after):>20} "
              f"{span(growth):>11}")
        if "(old)" not in name:
            ok = ok and max(idle) <= TARGET_MB
        used = [u for _, _, u in values if u is not None]
        if used:
            print(f"{'  then one API request':<34} {span(used):>13} "
                  f"{span([u / p for u, p in zip(used, peers, strict=True)]):>11}")
    print(f"target: idle daemon <= {TARGET_MB:g} MB (every case above, before its API is "
          f"used): {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
