"""The UNIX socket's reader thread (supervisor/reader.py) over a real socket and loop:
replies keep the order of requests, the hand-off to the loop is bounded, the
thread costs no CPU while idle and ends on stop."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from edgesec.events import EventBus
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.commands import CommandTable, Request
from edgesec.supervisor.reader import MAX_QUEUED, ReaderThread
from edgesec.supervisor.server import SupervisorServer


def _reader(server: SupervisorServer) -> ReaderThread:
    [reader] = [ep.reader for ep in server._endpoints if ep.reader is not None]
    return reader


def _client(tmp: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    client.bind(str(tmp / "client.sock"))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    client.setblocking(False)
    return client


def test_a_constant_after_a_slow_request_is_answered_after_it(tmp_path: Path) -> None:
    table = CommandTable()
    table.register_constant("PING_SUPERVISOR", proto.PONG)

    def slow(_: Request) -> str:
        time.sleep(0.3)  # the loop is busy; the PING is already queued in the socket
        return "SLOW\n"

    table.register("SLOW", slow, (0,))
    path = tmp_path / "edgesec.sock"
    server = SupervisorServer(table, EventBus(), path, udp_port=0)

    async def run() -> list[bytes]:
        await server.start()
        loop = asyncio.get_running_loop()
        client = _client(tmp_path)
        try:
            client.sendto(b"SLOW", str(path))
            client.sendto(b"PING_SUPERVISOR", str(path))
            return [await asyncio.wait_for(loop.sock_recv(client, 4096), 30)
                    for _ in range(2)]
        finally:
            client.close()
            await server.stop()

    assert asyncio.run(run()) == [b"SLOW\n", b"PONG\n"]
    assert table.results["PING_SUPERVISOR", "ok"] == 1


def test_the_hand_off_to_a_busy_loop_is_bounded(tmp_path: Path) -> None:
    table = CommandTable()
    waiting: list[int] = []
    server: SupervisorServer

    def work(_: Request) -> str:
        reader = _reader(server)
        waiting.append(reader._queued - reader._done)
        if len(waiting) == 1:
            time.sleep(0.5)  # the loop stalls while the flood arrives
        return proto.OK

    table.register("WORK", work, (0,))
    path = tmp_path / "edgesec.sock"
    server = SupervisorServer(table, EventBus(), path, udp_port=0)
    count = 4 * MAX_QUEUED

    def flood() -> None:  # a blocking client, beside the server's loop
        client = _client(tmp_path)
        client.settimeout(30)
        try:
            for _ in range(count):  # (replies to its full queue are dropped, unread)
                client.sendto(b"WORK", str(path))
        finally:
            client.close()

    async def run() -> None:
        await server.start()
        try:
            await asyncio.to_thread(flood)
            deadline = time.monotonic() + 60
            while len(waiting) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await server.stop()

    asyncio.run(run())
    assert len(waiting) == count  # every request was handled, none lost in the hand-off
    assert max(waiting) <= MAX_QUEUED
    assert max(waiting) > 1  # (the stall did queue requests behind it)


def _thread_cpu_ticks(tid: int) -> int:
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.mark.slow  # waits out real time (deadlines, back-off, idle sampling)
def test_the_idle_thread_costs_nothing_and_ends_on_stop(tmp_path: Path) -> None:
    table = CommandTable()
    table.register_constant("PING_SUPERVISOR", proto.PONG)
    path = tmp_path / "edgesec.sock"
    server = SupervisorServer(table, EventBus(), path, udp_port=0)

    async def run() -> tuple[int, ReaderThread]:
        await server.start()
        reader = _reader(server)
        tid = reader._thread.native_id
        assert tid is not None
        await asyncio.sleep(0.2)
        before = _thread_cpu_ticks(tid)
        await asyncio.sleep(1.5)
        idle = _thread_cpu_ticks(tid) - before
        await server.stop()
        return idle, reader

    idle, reader = asyncio.run(run())
    assert idle == 0  # blocked in recvmsg: no polling, no timer
    assert not reader._thread.is_alive()
    assert not path.exists()
