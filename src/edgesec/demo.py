"""``make demo`` / ``edgesec demo``: a scripted walk through a real gateway in a lab.

Owns the story only: it builds a lab (:mod:`edgesec.lab.lab`) with five
virtual IoT devices around a real edgesec daemon, then checks, step by step
and in plain words, what the gateway promises — isolation, bridges, NAT,
discovery across subnets with automatic bridging, groups and one-way access,
capture, the vault and the containment of a compromised device —
printing ✓ or ✗ (with the reason) for each step. The lab is always torn down
at the end. Exit status 0 only if every step passed. A step whose part is
missing or broken fails with the reason; it never stops the story.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.text import Text

from edgesec.config import load_settings
from edgesec.groups import Access, parse_service
from edgesec.lab import lab as lab_mod
from edgesec.lab import output
from edgesec.lab.report import parse_all, parse_bridges
from edgesec.lab.state import DeviceState
from edgesec.lab.topology import Topology
from edgesec.net.explain import PolicyView, explain
from edgesec.net.policy import PolicyConfig
from edgesec.registry import Device

DEMO_PREFIX = "edemo"
DEVICES = 5
WAN = Topology.WAN_IP
SECRET_KEY = "demo-camera-key"
SECRET_VALUE = b"the camera's cloud token: 7f3a-demo"


class StepFailed(Exception):
    """A check of the story did not hold; the message says which."""


@dataclass
class Result:
    title: str
    ok: bool
    detail: str = ""


@dataclass
class Story:
    """The lab and what the steps learned (device names A, B, C)."""

    lab: lab_mod.Lab
    console: Console
    results: list[Result] = field(default_factory=list)
    a: str = "dev1"
    b: str = "dev2"
    # C announces nothing: a probe that must fail never targets an announced
    # address (an announcing agent's zeroconf looks its neighbours' names up, and
    # a connection after such a lookup is what mDNS auto-bridging acts on)
    c: str = "dev4"

    def dev(self, name: str) -> DeviceState:
        return self.lab.device(name)

    def ctl(self, command: str) -> str:
        return self.lab.ctl(command)

    def ok(self, command: str) -> None:
        reply = self.ctl(command)
        if reply != "OK\n":
            raise StepFailed(f"{command.split()[0]} answered {reply.strip()!r}")

    def reach(
        self, src: str, ip: str, port: int = 7, kind: str = "tcp", timeout: float = 1.0
    ) -> bool:
        return self.lab.probe(src, kind, ip, port, timeout)

    def eventually(self, check: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            if check():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.3)


def require(cond: bool, why: str) -> None:
    if not cond:
        raise StepFailed(why)


# -- the steps ------------------------------------------------------------------


def step_join(s: Story) -> str:
    devs = s.lab.state.devices
    bad = [f"{d.name}: {d.state} {d.error}".strip() for d in devs if d.state != "joined"]
    require(not bad, "not joined: " + "; ".join(bad))
    known = parse_all(s.ctl("GET_ALL"))
    missing = [d.name for d in devs if d.ip not in known.get(d.mac, [""] * 4)[2:4]]
    require(not missing, f"edgesec has no lease recorded for {', '.join(missing)}")
    vlans = {d.vlan for d in devs}
    nets = {".".join(d.ip.split(".")[:3]) + f"/{d.vlan}" for d in devs}
    require(
        len(vlans) == len(devs) and len(nets) == len(devs),
        f"devices share VLANs/subnets: {[(d.name, d.vlan, d.ip) for d in devs]}",
    )
    require(all(d.psk_ok for d in devs), "an Access-Accept carried no Tunnel-Password")
    return ", ".join(f"{d.name} VLAN {d.vlan} {d.ip}" for d in devs)


def _agents_ready(s: Story) -> bool:
    return all(
        "ready" in (s.lab.dir / f"agent-{n}.log").read_text(errors="replace")
        for n in (s.a, s.b, s.c)
        if (s.lab.dir / f"agent-{n}.log").exists()
    )


def step_isolated(s: Story) -> str:
    require(s.eventually(lambda: _agents_ready(s), 10), "device agents did not start")
    a, b = s.dev(s.a), s.dev(s.b)
    require(s.reach(s.b, b.ip), f"{s.b} cannot even reach its own service (agent down?)")
    require(not s.reach(s.a, b.ip), f"{s.a} reached {s.b} over TCP")
    require(not s.reach(s.b, a.ip), f"{s.b} reached {s.a} over TCP")
    return f"{s.a} → {s.b}:7 blocked, {s.b} → {s.a}:7 blocked"


def step_bridge(s: Story) -> str:
    a, b, c = s.dev(s.a), s.dev(s.b), s.dev(s.c)
    s.ok(f"ADD_BRIDGE {a.mac} {b.mac}")
    require(s.eventually(lambda: s.reach(s.a, b.ip), 3), f"{s.a} still cannot reach {s.b}")
    require(s.reach(s.b, a.ip), f"{s.b} cannot reach {s.a} (one direction only)")
    require(not s.reach(s.a, c.ip), f"{s.a} reached {s.c}, which is not bridged")
    return f"{s.a} ↔ {s.b} open, {s.a} → {s.c} still blocked"


def step_nat(s: Story) -> str:
    a = s.dev(s.a)
    require(not s.reach(s.a, WAN, 80, "http"), f"{s.a} reached the wan before ADD_NAT")
    s.ok(f"ADD_NAT {a.mac}")
    require(
        s.eventually(lambda: s.reach(s.a, WAN, 80, "http"), 3),
        f"{s.a} cannot reach the wan after ADD_NAT",
    )
    require(not s.reach(s.b, WAN, 80, "http"), f"{s.b} reached the wan without NAT")
    return f"{s.a} → wan http ok, {s.b} → wan still blocked"


def step_unbridge(s: Story) -> str:
    a, b = s.dev(s.a), s.dev(s.b)
    s.ok(f"REMOVE_BRIDGE {a.mac} {b.mac}")
    require(
        s.eventually(lambda: not s.reach(s.b, a.ip), 3),
        f"{s.b} still reaches {s.a} after REMOVE_BRIDGE",
    )
    return f"{s.a} ↔ {s.b} closed again"


def step_discover(s: Story) -> str:
    a, b = s.dev(s.a), s.dev(s.b)
    require(bool(a.announce), f"{s.a} does not announce a service")
    res = s.lab.run(
        s.b,
        [sys.executable, "-m", "edgesec.lab.discover", a.announce, "--timeout", "10"],
        timeout=30,
    )
    try:
        found = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise StepFailed(f"discovery crashed: {res.stderr.strip()[-300:]}") from None
    require(
        a.ip in found.get("addresses", []),
        f"{s.b} did not resolve {found.get('name')} through the reflector "
        f"(got {found.get('addresses')})",
    )
    require(
        s.eventually(lambda: s.reach(s.b, a.ip, 80, "http", timeout=3), 10),
        f"{s.b}'s connection to {s.a}'s service was not let through (no auto-bridge)",
    )
    pairs = parse_bridges(s.ctl("GET_BRIDGES"))
    require(
        tuple(sorted((a.mac, b.mac))) in {tuple(sorted(p)) for p in pairs},
        "GET_BRIDGES does not list the automatic bridge",
    )
    return f"{s.b} resolved {found['name']} → {a.ip}:{found.get('port')}, bridge made"


def _explain(s: Story, src: str, dst: str, proto: str = "", port: int = 0) -> str:
    """edgesec.net.explain over what the daemon reports (GET_ALL/BRIDGES/GROUPS/ACCESS)."""
    devices = {}
    for f in parse_all(s.ctl("GET_ALL")).values():
        devices[f[1]] = Device(f[1], allow=f[0] == "a", vlanid=int(f[4]), nat=f[5] == "1",
                               primary_ip=f[2], secondary_ip=f[3])
    members: list[tuple[str, str]] = []
    for line in s.ctl("GET_GROUPS").splitlines():
        if line.count(",") == 1:
            group, mac = line.split(",")
            members.append((group, mac))
    rules = []
    for line in s.ctl("GET_ACCESS").splitlines():
        if line.count(",") == 2:
            a, b, service = line.split(",")
            rules.append(Access(a, b, *parse_service(service)))
    view = PolicyView(devices, set(parse_bridges(s.ctl("GET_BRIDGES"))), members, rules)
    cfg = PolicyConfig.from_settings(load_settings(Path(s.lab.state.config)))
    return "; ".join(explain(cfg, view, src, dst, proto, port).reasons)


def step_groups(s: Story) -> str:
    """Cameras dev3, dev5 and NVR B in group "cameras"; phone dev4 opens dev3's web UI.

    Probes that must fail always target a device that announces nothing (B,
    dev4; see ``Story.c``).
    """
    cam1, cam2, nvr, phone = (s.dev(n) for n in ("dev3", "dev5", s.b, "dev4"))
    require(not s.reach("dev3", nvr.ip), f"dev3 reached the NVR {s.b} before they were grouped")
    for d in (cam1, cam2, nvr):
        s.ok(f"ADD_GROUP_MEMBER cameras {d.mac}")
    require(s.eventually(lambda: s.reach("dev3", nvr.ip), 3),
            f"dev3 cannot reach the NVR {s.b}")
    require(s.reach(s.b, cam2.ip) and s.reach("dev5", cam1.ip),
            "the group is not open in every direction")
    require(not s.reach("dev4", nvr.ip), f"dev4, not a member, reached the NVR {s.b}")
    s.ok(f"ADD_ACCESS {phone.mac} {cam1.mac} tcp/80")
    require(s.eventually(lambda: s.reach("dev4", cam1.ip, 80, "http"), 3),
            "the phone dev4 cannot open dev3's web UI")
    require(not s.reach("dev4", cam1.ip, 7), "the phone dev4 reached dev3 on another port")
    require(not s.reach("dev3", phone.ip, 80, "http") and not s.reach("dev3", phone.ip),
            "dev3 opened a connection to the phone dev4 (the rule is one-way)")
    why = _explain(s, cam1.mac, phone.mac, "tcp", 80)
    require("one-way" in why, f"explain did not name the one-way rule: {why}")
    why = next(r for r in why.split("; ") if "one-way" in r)
    return (f"dev3 ↔ dev5 ↔ {s.b} open, dev4 → {s.b} blocked; dev4 → dev3:80 ok, "
            f"dev3 → dev4 blocked: {why}")


def step_capture(s: Story) -> str:
    a, b = s.dev(s.a), s.dev(s.b)
    db = Path(s.lab.state.capture_db)
    require(db.exists(), f"no capture DB at {db}")

    def counts() -> tuple[int, int]:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            eth = con.execute(
                "SELECT count(*) FROM eth WHERE ether_shost IN (?, ?)", (a.mac, b.mac)
            ).fetchone()[0]
            ab = con.execute(
                "SELECT count(*) FROM ip4 WHERE (ip_src = ? AND ip_dst = ?) "
                "OR (ip_src = ? AND ip_dst = ?)",
                (a.ip, b.ip, b.ip, a.ip),
            ).fetchone()[0]
            return eth, ab
        except sqlite3.Error as exc:
            raise StepFailed(f"capture DB unreadable: {exc}") from None
        finally:
            con.close()

    got = (0, 0)

    def seen() -> bool:
        nonlocal got
        got = counts()
        return got[0] > 0 and got[1] > 0

    require(
        s.eventually(seen, 8),
        f"capture DB has {got[0]} frames from {s.a}/{s.b} and {got[1]} packets between them",
    )
    return f"{got[0]} frames from {s.a}/{s.b}, {got[1]} IPv4 packets between them"


def step_vault(s: Story) -> str:
    token = base64.urlsafe_b64encode(SECRET_VALUE).decode().rstrip("=")
    s.ok(f"PUT_CRYPT {SECRET_KEY} {token}")
    reply = s.ctl(f"GET_CRYPT {SECRET_KEY}").strip()
    require(reply != "FAIL", "GET_CRYPT answered FAIL")
    got = base64.urlsafe_b64decode(reply + "=" * (-len(reply) % 4))
    require(got == SECRET_VALUE, f"GET_CRYPT returned {got!r}")
    db = Path(s.lab.state.config).parent / "crypt.sqlite"
    if db.exists():
        raw = b"".join(p.read_bytes() for p in db.parent.glob("crypt.sqlite*"))
        require(SECRET_VALUE not in raw, "the plaintext is in the vault's files")
    return "stored encrypted, read back intact, plaintext not on disk"


def step_api(s: Story) -> str:
    c = s.dev(s.c)
    why = s.lab.api("GET", f"/api/v1/explain?src={c.mac}&dst=internet")
    if not isinstance(why, dict):
        raise StepFailed(f"explain said {why!r}")
    require(not why["allowed"], f"explain said {why!r}")
    require(f"ADD_NAT {c.mac}" in why["remedies"], f"explain named no remedy: {why!r}")
    require(not s.reach(s.c, WAN, 80, "http"), f"{s.c} reached the wan before the API call")
    dev = s.lab.api("PATCH", f"/api/v1/devices/{c.mac}", {"nat": True})
    require(isinstance(dev, dict) and dev["nat"] is True, f"PATCH answered {dev!r}")
    require(s.eventually(lambda: s.reach(s.c, WAN, 80, "http"), 3),
            f"{s.c} cannot reach the wan after the API granted NAT")
    require(s.ctl(f"GET_MAP {c.mac}").split(",")[5] == "1", "the supervisor does not see NAT")
    return (f"explain: {why['reasons'][0]}; PATCH nat=true → {s.c} reaches the wan; "
            f"dashboard at {s.lab.state.api_url}")


def _gateway_of(s: Story, name: str) -> str:
    route = s.lab.run(name, ["ip", "-4", "route", "show", "default"]).stdout.split()
    return route[2] if len(route) > 2 else ""


def step_contain(s: Story) -> str:
    """A scans; the detector quarantines A (DHCP/DNS only); B keeps its own paths."""
    from edgesec.lab.scenario import attack

    a, b, c = s.dev(s.a), s.dev(s.b), s.dev(s.c)
    s.ok(f"ADD_BRIDGE {b.mac} {c.mac}")
    require(s.eventually(lambda: s.reach(s.a, WAN, 80, "http"), 3), f"{s.a} lost the wan")
    require(s.eventually(lambda: s.reach(s.b, c.ip), 3), f"{s.b} cannot reach {s.c}")
    result = attack(s.lab, s.a, "scan", wait=20)
    require(result.quarantined, f"{s.a} was not quarantined; alerts: {result.alerts}")
    require(not s.reach(s.a, WAN, 80, "http"), f"quarantined {s.a} still reaches the wan")
    require(not s.reach(s.b, a.ip, 80, "http"), f"{s.b} still reaches quarantined {s.a}")
    require(s.reach(s.a, _gateway_of(s, s.a), 53, "connect"), f"{s.a} lost DNS")
    require(s.reach(s.b, c.ip), f"{s.b} lost its bridge to {s.c} (B must be unaffected)")
    s.ok(f"RELEASE {a.mac}")
    require(s.eventually(lambda: s.reach(s.a, WAN, 80, "http"), 5),
            f"{s.a} did not get the wan back after RELEASE")
    require(s.eventually(lambda: s.reach(s.b, a.ip, 80, "http"), 5),
            f"{s.a}'s bridge to {s.b} was not restored")
    s.ok(f"REMOVE_BRIDGE {b.mac} {c.mac}")
    kinds = sorted({x.split(" ", 1)[0] for x in result.alerts})
    return (f"{', '.join(kinds)} → {s.a} quarantined {result.contained_after:.1f} s after its "
            f"first packet; {s.b} ↔ {s.c} kept; RELEASE restored NAT and bridge")


STEPS: tuple[tuple[str, Callable[[Story], str]], ...] = (
    ("Five devices join, each on its own VLAN and subnet", step_join),
    ("Device A cannot reach device B", step_isolated),
    ("ADD_BRIDGE A B opens exactly A ↔ B", step_bridge),
    ("ADD_NAT A gives A the internet (wan namespace), not B", step_nat),
    ("REMOVE_BRIDGE closes A ↔ B again", step_unbridge),
    ("B discovers A's service across subnets and is bridged automatically", step_discover),
    ("Group: two cameras and an NVR (B) reach each other; a phone opens one camera's "
     "web UI, one way", step_groups),
    ("The capture DB shows A's and B's traffic", step_capture),
    ("A secret is stored in the vault (PUT_CRYPT / GET_CRYPT)", step_vault),
    ("The management API explains why C is offline and grants it NAT", step_api),
    ("A compromised device is detected and contained (scan from A, A quarantined, "
     "B unaffected, A released)", step_contain),
)


def run_story(prefix: str = DEMO_PREFIX, console: Console | None = None) -> list[Result]:
    """Build the lab, run every step, tear the lab down; returns the results."""
    console = console or output.console()
    lab_mod.down(prefix)  # a previous demo that was interrupted
    lab = lab_mod.Lab.create(prefix)
    lab.log = lambda msg: console.print(f"  {msg}", style="dim")
    story = Story(lab, console)
    try:
        console.print(Text.assemble(
            ("Building the lab", "bold"), ": a gateway running edgesec, a wan "
            f"namespace standing for the internet, {DEVICES} IoT devices …"))
        t0 = time.monotonic()
        try:
            lab.up(DEVICES)
        except Exception as exc:
            story.results.append(Result("The lab comes up", False, str(exc)))
            _show(console, story.results[-1])
            return story.results
        console.print(
            f"  lab up in {time.monotonic() - t0:.1f} s; "
            f"A = {story.a}, B = {story.b}, C = {story.c}\n"
        )
        for title, step in STEPS:
            try:
                result = Result(title, True, step(story))
            except StepFailed as exc:
                result = Result(title, False, str(exc))
            except Exception as exc:  # a broken part: report it, go on
                result = Result(title, False, f"{type(exc).__name__}: {exc}")
            story.results.append(result)
            _show(console, result)
    finally:
        console.print(Text.assemble("\n", ("Tearing the lab down", "bold"), " …"))
        lab.down()
        left = lab_mod.leftovers(prefix)
        story.results.append(
            Result(
                "The lab is removed", not left, f"left: {left}" if left else "nothing left behind"
            )
        )
        _show(console, story.results[-1])
    return story.results


def _show(console: Console, r: Result) -> None:
    # Titles and details carry MACs and replies: Text parts, never markup or emoji.
    line = Text.assemble(("✓", "green") if r.ok else ("✗", "red"), f" {r.title}")
    if r.detail:
        line.append(f"\n    {r.detail}", style="dim")
    console.print(line)


def main(prefix: str = DEMO_PREFIX) -> int:
    """Entry point of ``edgesec demo``; exit status 0 only if every step passed."""
    console = output.console()
    t0 = time.monotonic()
    results = run_story(prefix, console)
    passed = sum(r.ok for r in results)
    console.print(f"\n{passed}/{len(results)} steps passed in {time.monotonic() - t0:.0f} s")
    return 0 if results and passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
