"""``edgesec lab``: up, status, exec, ctl, restart, down.

Mounted by :mod:`edgesec.cli` as the ``lab`` sub-command. Every verb takes
``--prefix`` (default ``elab``) so several labs can run side by side.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated

import typer

from edgesec.lab import daemon as lab_daemon
from edgesec.lab import lab as lab_mod
from edgesec.lab import output, report
from edgesec.lab.state import DEFAULT_PREFIX
from edgesec.supervisor.client import ClientError

app = typer.Typer(
    help="Virtual IoT devices in network namespaces around a real edgesec.", no_args_is_help=True
)
# User data (MACs, names, replies) is printed literally, never as markup or emoji,
# and nothing is wrapped when the output is not a terminal (lab/output.py).
console = output.console()

Prefix = Annotated[str, typer.Option("--prefix", "-p", help="name prefix of the lab's namespaces")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"edgesec lab: {message}", style="red")
    return typer.Exit(code)


def _load(prefix: str) -> lab_mod.Lab:
    try:
        return lab_mod.Lab.load(prefix)
    except (lab_mod.LabError, ValueError) as exc:
        raise _fail(str(exc), 2) from None


@app.command()
def up(
    devices: Annotated[int, typer.Option("--devices", "-n", help="number of devices")] = 5,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="use this edgesec config instead of a generated one"),
    ] = None,
    prefix: Prefix = DEFAULT_PREFIX,
    agents: Annotated[bool, typer.Option(help="run services/mDNS/traffic in devices")] = True,
) -> None:
    """Build the lab: gateway running edgesec, a wan namespace and N joining devices."""
    try:
        lab = lab_mod.Lab.create(prefix)
    except (lab_mod.LabError, ValueError) as exc:
        raise _fail(str(exc), 2) from None
    lab.log = lambda msg: console.print(msg, style="dim")
    try:
        lab.up(devices, config, agents=agents)
    except Exception as exc:
        raise _fail(f"lab up failed (everything removed again): {exc}") from None
    _print_status(lab)
    with contextlib.suppress(ClientError, OSError):
        for line in lab.ctl("STATUS").splitlines():
            if " failed " in line or " degraded " in line:
                console.print(f"service {line}", style="yellow")
    failed = [d for d in lab.state.devices if d.state != "joined"]
    console.print(
        f"lab {prefix} is up: {len(lab.state.devices) - len(failed)} "
        f"devices joined; state in {lab.dir}"
    )
    if lab.state.api_url:
        typer.echo(f"dashboard and API: {lab.state.api_url}  (token: {lab.state.api_token})")
    for d in failed:
        console.print(f"{d.name}: {d.state} {d.error}", style="yellow")
    if failed:
        raise typer.Exit(1)


def _print_status(lab: lab_mod.Lab) -> None:
    try:
        all_reply, bridges = lab.ctl("GET_ALL"), lab.ctl("GET_BRIDGES")
    except (ClientError, OSError) as exc:
        console.print(f"edgesec does not answer ({exc}); showing the lab's records",
                      style="yellow")
        all_reply = bridges = ""
    console.print(
        report.table(f"lab {lab.state.prefix}", report.rows(lab.state, all_reply, bridges))
    )


@app.command()
def status(prefix: Prefix = DEFAULT_PREFIX) -> None:
    """Devices as edgesec sees them: MAC, VLAN, IP, NAT, bridges, connected."""
    lab = _load(prefix)
    _print_status(lab)
    with contextlib.suppress(ClientError, OSError):
        console.print(lab.ctl("STATUS").rstrip())


@app.command(
    name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def exec_(
    device: Annotated[str, typer.Argument(help="device name (dev1...), or gw / wan")],
    command: Annotated[list[str], typer.Argument(help="command and arguments (after --)")],
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Run a command inside a device's namespace: `edgesec lab exec dev1 -- ip addr`."""
    lab = _load(prefix)
    ns = {"gw": lab.state.gateway_ns, "wan": lab.state.wan_ns}.get(device)
    if ns is None:
        try:
            ns = lab.device(device).ns
        except lab_mod.LabError as exc:
            raise _fail(str(exc), 2) from None
    if not ns:
        raise _fail(f"{device} has no namespace (it did not join)", 2)
    os.execvp("ip", ["ip", "netns", "exec", ns, *command])


@app.command()
def ctl(
    words: Annotated[list[str], typer.Argument(help="supervisor command, or 'watch'")],
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Send one supervisor command to the lab's edgesec.

    `edgesec lab ctl watch` subscribes to events and prints them as they come
    (like `edgesec ctl watch`) until interrupted.
    """
    lab = _load(prefix)
    if words == ["watch"]:
        try:
            for line in lab_daemon.events(lab.socket, netns=lab.state.gateway_ns):
                typer.echo(line)
        except (ClientError, OSError) as exc:
            raise _fail(str(exc), 2) from None
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
        return
    try:
        reply = lab.ctl(" ".join(words))
    except (ClientError, OSError) as exc:
        raise _fail(str(exc), 2) from None
    typer.echo(reply, nl=False)
    if reply == "FAIL\n":
        raise typer.Exit(1)


@app.command()
def attack(
    device: Annotated[str, typer.Argument(help="device name (dev1...)")],
    kind: Annotated[str, typer.Argument(help="scan|lateral|exfil|dnstunnel|spoof|beacon")],
    prefix: Prefix = DEFAULT_PREFIX,
    wait: Annotated[float, typer.Option(help="seconds to wait for the quarantine")] = 15.0,
) -> None:
    """Make DEVICE generate real attack traffic; report detection and quarantine."""
    from edgesec.lab.attack import KINDS
    from edgesec.lab.scenario import attack as run_attack

    if kind not in KINDS:
        raise _fail(f"unknown attack {kind!r}; one of {', '.join(KINDS)}", 2)
    lab = _load(prefix)
    try:
        result = run_attack(lab, device, kind, wait)
    except lab_mod.LabError as exc:
        raise _fail(str(exc), 2) from None
    console.print(result.text())
    if not result.quarantined and kind != "beacon":
        raise typer.Exit(1)


@app.command()
def restart(prefix: Prefix = DEFAULT_PREFIX) -> None:
    """Restart the lab's edgesec daemon (devices keep their namespaces and leases)."""
    lab = _load(prefix)
    try:
        states = lab.restart_daemon()
    except RuntimeError as exc:
        raise _fail(str(exc)) from None
    for name, text in states.items():
        console.print(f"{name}: {text}")


@app.command()
def down(prefix: Prefix = DEFAULT_PREFIX) -> None:
    """Remove the lab: processes (by pid), namespaces, interfaces, files. Idempotent."""
    try:
        removed = lab_mod.down(prefix)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    for item in removed:
        console.print(f"removed {item}")
    if not removed:
        console.print(f"nothing left of lab {prefix}")
