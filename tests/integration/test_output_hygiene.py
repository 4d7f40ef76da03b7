"""MACs and user text are printed literally: no markup, no emoji, no wrapping in a pipe.

rich would print ``02:ab:cd:00:00:01`` as ``02🆎💿00:00:01`` and read ``[red]`` in
a device name as a style.  ``lab status`` (records only: no daemon answers),
``lab ctl watch`` against a real daemon, and the demo's step lines are run with
stdout a pipe and such MACs and names.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import pytest

from daemon import EDGESEC, Daemon, interrupt, interruptible, write_config
from edgesec.lab.state import DeviceState, LabState

pytestmark = pytest.mark.integration

MACS = ["02:ab:cd:00:00:01", "02:cd:ab:00:00:02", "02:00:00:ab:cd:03"]
ODD_NAME = "dev[red]x[/red]:smile:" + "-long" * 40  # longer than any terminal


def _lab(root: Path, prefix: str, socket: str = "", gateway_ns: str = "") -> None:
    LabState(prefix=prefix, dir=str(root / prefix), socket=socket, gateway_ns=gateway_ns,
             devices=[DeviceState(name=ODD_NAME if i == 0 else f"dev{i}", mac=m,
                                  ip=f"10.100.0.{i + 10}", state="joined", vlan=100 + i)
                      for i, m in enumerate(MACS)]).save()


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "EDGESEC_LAB_DIR": str(root), "COLUMNS": "60"}


def _no_emoji(text: str) -> None:
    assert not any(0x1F000 <= ord(c) <= 0x1FFFF for c in text), text


def test_lab_status_prints_macs_and_names_literally_unwrapped(tmp_path: Path) -> None:
    _lab(tmp_path, "lhyg", gateway_ns="lhyg-no-such-ns")
    out = subprocess.run([*EDGESEC, "lab", "status", "--prefix", "lhyg"], capture_output=True,
                         text=True, timeout=60, env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    _no_emoji(out.stdout)
    for mac in MACS:
        assert mac in out.stdout
    # the long name is one piece on one line, markup and all
    assert ODD_NAME in out.stdout
    assert "\x1b[" not in out.stdout  # no colour codes in a pipe


def test_lab_ctl_watch_follows_events_literally(tmp_path: Path) -> None:
    d = Daemon(write_config(tmp_path)).start()
    watch = None
    try:
        _lab(tmp_path, "lwat", socket=str(d.socket_path))
        watch = subprocess.Popen([*EDGESEC, "lab", "ctl", "watch", "--prefix", "lwat"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=_env(tmp_path), preexec_fn=interruptible)
        deadline = time.monotonic() + 60
        while "subscribers=1" not in d.ctl("STATUS"):
            assert time.monotonic() < deadline and watch.poll() is None, watch.stderr
            time.sleep(0.1)
        assert d.ctl(f"ACCEPT_MAC {MACS[0]} 3") == "OK\n"
        assert d.ctl(f"SET_IP add {MACS[0]} 10.0.3.20") == "OK\n"
        assert watch.stdout is not None
        first, second = watch.stdout.readline(), watch.stdout.readline()
        assert first.startswith("POLICY ") and first.endswith(f" ACCEPT_MAC {MACS[0]} 3\n")
        assert second == f"IP {MACS[0]} 10.0.3.20 1 1\n"
    finally:
        code = 0
        if watch is not None:
            code = interrupt(watch)
        d.stop()  # whatever happened above: never leave the daemon behind
    assert code == 0


def test_demo_step_lines_are_literal() -> None:
    from edgesec import demo
    from edgesec.lab import output

    buf = io.StringIO()
    console = output.console(buf)
    demo._show(console, demo.Result(f"ACCEPT_MAC {MACS[0]} [bold]x[/bold]", False,
                                    f"reply for {MACS[1]} :ab: " + "y" * 300))
    text = buf.getvalue()
    assert text.startswith("✗ ") and "[red]" not in text  # styled, not tagged
    assert f"ACCEPT_MAC {MACS[0]} [bold]x[/bold]" in text
    assert f"reply for {MACS[1]} :ab: " + "y" * 300 in text
    _no_emoji(text)
