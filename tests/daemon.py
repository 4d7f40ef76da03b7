"""Run the real ``edgesec run`` daemon as a child process for tests.

``write_config`` renders an INI file (the original's format) from a dict of
sections; :class:`Daemon` starts the daemon on it (optionally inside a network
namespace), waits for the control socket, sends commands and stops it by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgesec.supervisor.client import SupervisorClient

EDGESEC = [sys.executable, "-m", "edgesec.cli"]

BASE_CONFIG: dict[str, dict[str, object]] = {
    "system": {
        "connectionDbPath": "connections.sqlite",
        "cryptDbPath": "crypt.sqlite",
        "pidFilePath": "edgesec.pid",
        "createInterfaces": False,
        "execFirewall": False,
        "execRadius": False,
        "execDhcp": False,
        "execAp": False,
        "execCapture": False,
        "execMdnsForward": False,
        "allowAllConnections": False,
        "allowAllNat": False,
        "defaultOpenVlanId": 1,
    },
    "supervisor": {"supervisorControlPath": "edgesec.sock", "supervisorControlPort": 0},
    "interfaces": {
        "bridgePrefix": "br",
        "interfacePrefix": "br",
        **{f"if{v}": f"{v},10.0.{v}.1,10.0.{v}.255,255.255.255.0" for v in range(1, 6)},
    },
    "dhcp": {f"dhcpRange{v}": f"{v},10.0.{v}.2,10.0.{v}.254,255.255.255.0,24h"
             for v in range(1, 6)},
    "ap": {"wpaPassphrase": "default-pass-1"},
    # beside the config, never the shared /run/edgesec/api.sock of a real gateway
    "api": {"socketPath": "api.sock"},
}


def render_ini(sections: dict[str, dict[str, object]]) -> str:
    lines = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        for key, value in keys.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
        lines.append("")
    return "\n".join(lines)


def write_config(directory: Path, overrides: dict[str, dict[str, object]] | None = None) -> Path:
    """Write BASE_CONFIG merged with ``overrides`` to ``directory/config.ini``."""
    merged = {s: dict(k) for s, k in BASE_CONFIG.items()}
    for section, keys in (overrides or {}).items():
        merged.setdefault(section, {}).update(keys)
    path = directory / "config.ini"
    path.write_text(render_ini(merged))
    return path


class Daemon:
    """``edgesec run -c CONFIG`` as a child process, stopped by its pid."""

    def __init__(self, config: Path, netns: str | None = None, verbosity: int = 3,
                 args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.config = config
        self.args = args  # more `edgesec run` options, e.g. ("--log-format", "json")
        self.env = env or {}
        self.dir = config.parent
        self.netns = netns
        self.verbosity = verbosity
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "edgesec.log"
        self._socket_path: Path | None = None

    @property
    def socket_path(self) -> Path:
        """From the config as first read (a reload never moves the socket; a test may
        break the file on purpose)."""
        if self._socket_path is None:
            from edgesec.config import load_settings

            self._socket_path = load_settings(self.config).supervisor.supervisor_control_path
        assert self._socket_path is not None
        return self._socket_path

    def start(self, timeout: float = 20.0) -> Daemon:
        argv = [*EDGESEC, "run", "-c", str(self.config)]
        if self.verbosity:
            argv.append("-" + "d" * self.verbosity)
        argv.extend(self.args)
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        sock = self.socket_path
        if sock.exists():
            sock.unlink()
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.dir,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edgesec exited with {self.proc.returncode}:\n{self.log()}")
            if sock.exists():
                try:
                    if self.ctl("PING_SUPERVISOR", timeout=1.0) == "PONG\n":
                        return self
                except Exception:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"edgesec did not answer within {timeout}s:\n{self.log()}")

    def ctl(self, command: str, timeout: float = 5.0) -> str:
        with SupervisorClient(unix_path=self.socket_path, timeout=timeout) as client:
            return client.request(command)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM by pid; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def interruptible() -> None:
    """In a child (``preexec_fn``): SIGINT back to its default, even when the suite itself
    was started in the background (where the shell ignores SIGINT and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(child: subprocess.Popen[str], timeout: float = 20.0) -> int:
    """SIGINT ``child`` (a ``ctl watch``) and return its exit code; killed if it hangs."""
    child.send_signal(signal.SIGINT)
    try:
        return child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()
