"""The edgesec daemon of a lab: started in the gateway namespace, tracked by pid.

Owns: starting ``edgesec run -c <config>`` inside the gateway namespace as a
session leader (its own process group, so a lab tear-down can also reach the
children it spawned), waiting until its control socket answers and its
services have reported, and stopping it by the pid that was recorded — after
checking that the pid still belongs to that daemon (pids are reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from edgesec.lab.hostap import socket_in_netns
from edgesec.lab.topology import ns_cmd
from edgesec.supervisor.client import ClientError, SupervisorClient

EXPECTED = ("subnets", "firewall", "radius", "dhcp", "mdns", "capture")


def cmdline(pid: int) -> str:
    """The process's command line ('' if it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
            return ""
        return (
            Path(f"/proc/{pid}/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode("utf-8", "replace")
        )
    except OSError:
        return ""


def alive(pid: int | None, marker: str = "") -> bool:
    """True when ``pid`` runs and its command line contains ``marker``."""
    if not pid:
        return False
    line = cmdline(pid)
    return bool(line) and marker in line


def terminate(pid: int | None, marker: str = "", grace: float = 15.0, group: bool = False) -> bool:
    """SIGTERM ``pid`` (only if it is still ours), SIGKILL after ``grace`` seconds.

    With ``group`` the process group led by ``pid`` is killed at the end too
    (children the daemon left behind). Returns True if a process was signalled.
    """
    if not alive(pid, marker):
        if group and pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        return False
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(pid):
        _reap(pid)
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    return True


def exited(pid: int) -> bool:
    """True once ``pid`` has exited (reaping it if it is our child).

    Unlike :func:`alive` this does not read ``/proc/PID/cmdline``, which reads
    empty for a moment while the process execs (``ip netns exec`` -> python).
    """
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child (no zombies in the demo)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def start(
    gateway_ns: str, config: Path, log_path: Path, env: dict[str, str], verbosity: int = 3
) -> subprocess.Popen[bytes]:
    """Start the daemon in ``gateway_ns``; returns at once (see :func:`wait_ready`)."""
    argv = [sys.executable, "-m", "edgesec.cli", "run", "-c", str(config)]
    if verbosity:
        argv.append("-" + "d" * verbosity)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            ns_cmd(gateway_ns, argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=config.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            start_new_session=True,
        )


def ctl(
    socket_path: Path | str, command: str, timeout: float = 5.0, netns: str | None = None
) -> str:
    """One supervisor command over the UNIX socket; the reply text.

    With ``netns`` the client socket is made inside that namespace: the
    supervisor answers to the client's autobound *abstract* address, and
    abstract UNIX addresses belong to a network namespace, so a client in
    another namespace would never see the reply.
    """
    if not netns:
        with SupervisorClient(unix_path=socket_path, timeout=timeout) as client:
            return client.request(command)
    sock = socket_in_netns(netns, socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("")
        sock.settimeout(timeout)
        return _exchange(sock, socket_path, command.encode(), 4 * 1024 * 1024).decode(
            "utf-8", "replace")
    finally:
        sock.close()


def _exchange(sock: socket.socket, socket_path: Path | str, request: bytes, size: int) -> bytes:
    """Send ``request`` to the supervisor and return its reply (ClientError if none)."""
    try:
        sock.sendto(request, str(socket_path))
        return sock.recv(size)
    except TimeoutError:
        raise ClientError(f"no reply from the supervisor at {socket_path}") from None
    except OSError as exc:
        raise ClientError(
            f"cannot reach the supervisor at {socket_path}: {exc.strerror or exc}"
        ) from None


def events(socket_path: Path | str, netns: str | None = None) -> Iterator[str]:
    """Subscribe to the supervisor's events and yield each line (without newline).

    The subscribing socket is made inside ``netns`` for the reason given in
    :func:`ctl`; the subscription ends when the socket is closed.
    """
    if not netns:
        with SupervisorClient(unix_path=socket_path) as client:
            yield from client.events()
        return
    sock = socket_in_netns(netns, socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("")
        sock.settimeout(5.0)
        reply = _exchange(sock, socket_path, b"SUBSCRIBE_EVENTS", 4096)
        if reply != b"OK\n":
            raise ClientError(f"SUBSCRIBE_EVENTS answered {reply.strip()!r}")
        sock.settimeout(None)
        while True:
            yield sock.recv(65536).decode("utf-8", "replace").rstrip("\n")
    finally:
        sock.close()


def service_states(socket_path: Path | str, netns: str | None = None) -> dict[str, str]:
    """``STATUS`` as {service: "ok ..." | "failed ..."}."""
    out = {}
    for line in ctl(socket_path, "STATUS", netns=netns).splitlines():
        name, _, rest = line.partition(" ")
        out[name] = rest
    return out


def wait_ready(
    proc_pid: int,
    socket_path: Path,
    log_path: Path,
    timeout: float = 40.0,
    expected: tuple[str, ...] = EXPECTED,
    netns: str | None = None,
) -> dict[str, str]:
    """Wait until the daemon answers PING and every expected service reported.

    Raises RuntimeError (with the log's tail) if the daemon exits or stays silent.
    """
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        if exited(proc_pid):
            raise RuntimeError(f"edgesec exited during start-up:\n{tail(log_path)}")
        if socket_path.exists():
            try:
                if ctl(socket_path, "PING_SUPERVISOR", 1.0, netns) == "PONG\n":
                    states = service_states(socket_path, netns)
                    if all(name in states for name in expected):
                        return states
            except ClientError:
                pass
        time.sleep(0.1)
    if states:
        return states  # some optional services never reported: the caller shows STATUS
    raise RuntimeError(f"edgesec did not answer within {timeout:.0f}s:\n{tail(log_path)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
