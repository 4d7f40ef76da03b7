"""The top-level ``edgesec`` command line in-process: version, ``config check``,
``ctl`` against a real supervisor server, and sub-commands that cannot load.

The supervisor is the real :class:`SupervisorServer` on a UNIX socket, served by
an event loop in a thread; nothing between the CLI and it is faked.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgesec import __version__, cli
from edgesec.events import EventBus
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.commands import CommandTable
from edgesec.supervisor.server import SupervisorServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Path]:
    """A real supervisor answering PING_SUPERVISOR, an OK and a FAIL command."""
    table = CommandTable()
    table.register_constant("PING_SUPERVISOR", proto.PONG)
    table.register("ACCEPT_MAC", lambda _: proto.OK, (2,))
    table.register("DENY_MAC", lambda _: proto.FAIL, (1,))
    path = tmp_path / "edgesec.sock"
    server = SupervisorServer(table, EventBus(), path, udp_port=0)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield path
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_version() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and out.strip() == f"edgesec {__version__}"


def test_config_check_prints_effective_settings_with_secrets_redacted() -> None:
    code, out, _ = invoke("config", "check", str(REPO / "packaging" / "config.ini"))
    assert code == 0
    assert "[supervisor]" in out and "[radius]" in out
    lines = out.splitlines()
    assert "secret = <redacted>" in lines and "wpaPassphrase = <redacted>" in lines
    assert 'secret = "radius"' not in lines and "secret = radius" not in lines


def test_config_check_names_each_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ini"
    bad.write_text("[system]\ndefaultOpenVlanId = many\n")
    code, out, err = invoke("config", "check", str(bad))
    assert (code, out) == (2, "")
    assert "bad.ini:2" in err and "defaultOpenVlanId" in err and "integer" in err
    bad.write_text("[nosuchsection]\nx = 1\n")
    assert invoke("config", "check", str(bad))[0] == 0  # unknown: a warning only
    code, _, err = invoke("config", "check", "--strict", str(bad))
    assert code == 2 and "nosuchsection" in err


def test_ctl_prints_the_reply_and_exits_by_it(supervisor: Path) -> None:
    code, out, _ = invoke("ctl", "-s", str(supervisor), "PING_SUPERVISOR")
    assert (code, out) == (0, "PONG\n")
    code, out, _ = invoke("ctl", "-s", str(supervisor), "ACCEPT_MAC", "02:00:00:00:00:01", "3")
    assert (code, out) == (0, "OK\n")
    code, out, err = invoke("ctl", "-s", str(supervisor), "DENY_MAC", "02:00:00:00:00:01")
    assert (code, out) == (1, "FAIL\n") and "daemon log says why" in err


def test_ctl_json(supervisor: Path) -> None:
    code, out, _ = invoke("ctl", "--json", "-s", str(supervisor), "PING_SUPERVISOR")
    assert code == 0
    assert json.loads(out) == {"command": "PING_SUPERVISOR", "ok": True, "lines": ["PONG"]}
    code, out, _ = invoke("ctl", "--json", "-s", str(supervisor), "DENY_MAC", "x")
    assert code == 1 and json.loads(out)["ok"] is False


def test_ctl_without_a_supervisor_says_so_and_exits_2(tmp_path: Path) -> None:
    code, _, err = invoke("ctl", "-s", str(tmp_path / "absent.sock"), "--timeout", "1",
                          "PING_SUPERVISOR")
    assert code == 2 and "cannot reach the supervisor" in err


def test_a_sub_command_that_cannot_load_is_listed_and_explains(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = typer.Typer(no_args_is_help=True)
    app.command("run")(lambda: None)
    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setitem(cli.SUB_APPS, "recap", ("edgesec.no_such_module", "app", "x"))
    cli._mount_sub_apps(["recap", "file.pcap"])
    code, _, err = invoke("recap", "file.pcap")
    assert code == 1
    assert "edgesec recap is unavailable" in err and "edgesec.no_such_module" in err
