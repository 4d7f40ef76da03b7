"""The supervisor's request path over a real UNIX socket and event loop.

Constant replies (``PING_SUPERVISOR``) are answered without parsing but are
counted like any request; a policy command still carries the sender's
credentials to the audit trail (they are decoded only for such commands).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

import pytest

from edgesec.events import EventBus
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.commands import CommandTable
from edgesec.supervisor.server import SupervisorServer


async def _exchange(server: SupervisorServer, path: Path, requests: list[bytes],
                    tmp: Path) -> list[bytes]:
    """Send each request from a bound client socket and collect the replies."""
    await server.start()
    loop = asyncio.get_running_loop()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    client.bind(str(tmp / "client.sock"))
    client.setblocking(False)
    replies = []
    try:
        for request in requests:
            client.sendto(request, str(path))
            replies.append(await asyncio.wait_for(loop.sock_recv(client, 65536), 30))
    finally:
        client.close()
        await server.stop()
    return replies


def _server(tmp: Path, table: CommandTable) -> tuple[SupervisorServer, Path]:
    path = tmp / "edgesec.sock"
    return SupervisorServer(table, EventBus(), path, udp_port=0), path


def test_ping_fast_path_is_counted_like_any_request(tmp_path: Path) -> None:
    table = CommandTable()
    table.register_constant("PING_SUPERVISOR", proto.PONG)
    server, path = _server(tmp_path, table)
    replies = asyncio.run(_exchange(server, path, [
        b"PING_SUPERVISOR", b"PING_SUPERVISOR\n", b"PING_SUPERVISOR x", b"PING_SUPERVISOR \t"],
        tmp_path))
    assert replies == [b"PONG\n", b"PONG\n", b"FAIL\n", b"PONG\n"]
    assert table.results["PING_SUPERVISOR", "ok"] == 3
    assert table.results["PING_SUPERVISOR", "fail"] == 1
    assert server.counters()["requests|command=PING_SUPERVISOR|result=ok"] == 3


def test_re_registering_a_constant_command_drops_its_fast_path(tmp_path: Path) -> None:
    table = CommandTable()
    table.register_constant("PING_SUPERVISOR", proto.PONG)
    table.register("PING_SUPERVISOR", lambda _: "PONG busy\n", (0,))
    assert table.constants == {}
    server, path = _server(tmp_path, table)
    assert asyncio.run(_exchange(server, path, [b"PING_SUPERVISOR"], tmp_path)) == [
        b"PONG busy\n"]


def test_policy_command_is_audited_with_credentials(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgesec.audit")
    table = CommandTable()
    table.register_constant("PING_SUPERVISOR", proto.PONG)
    table.register("ACCEPT_MAC", lambda _: proto.OK, (2,))
    server, path = _server(tmp_path, table)
    replies = asyncio.run(_exchange(server, path, [
        b"PING_SUPERVISOR", b"ACCEPT_MAC 02:00:00:00:00:01 3"], tmp_path))
    assert replies == [b"PONG\n", b"OK\n"]
    lines = [r.getMessage() for r in caplog.records if r.name == "edgesec.audit"]
    assert lines == [f"audit: ACCEPT_MAC 02:00:00:00:00:01 3 by unix pid={os.getpid()} "
                     f"uid={os.getuid()} gid={os.getgid()}: OK"]
