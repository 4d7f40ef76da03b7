"""The API service binds at start and starts its web server on the first connection
(edgesec.api.service): an unused API costs no aiohttp, a used one answers as before."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgesec.api.service import ApiError, ApiService
from edgesec.config import parse_settings
from edgesec.events import EventBus
from edgesec.registry import Registry
from edgesec.store import Store


def service(tmp_path: Path, extra: str = "") -> ApiService:
    config = (f"[api]\nsocketPath = {tmp_path / 'api.sock'}\n"
              f"tokenFile = {tmp_path / 'tokens.json'}\n{extra}")
    settings = parse_settings(config, "test.ini", tmp_path)
    return ApiService(settings, Registry(settings, Store(":memory:"), EventBus()))


async def get(path: Path, target: str) -> tuple[int, bytes]:
    """(status, body) of one request; (0, b"") when the server closed the connection."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                     .encode())
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 60)
    except ConnectionResetError:
        reply = b""
    finally:
        writer.close()
    if not reply:
        return 0, b""
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_an_unused_api_has_not_imported_its_web_server(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_api_service import get, service
        from pathlib import Path

        async def main():
            api = service(Path({str(tmp_path)!r}))
            await api.start()
            print("aiohttp" in sys.modules, api.status(), api.serving)
            status, body = await get(Path({str(tmp_path)!r}) / "api.sock",
                                     "/api/v1/openapi.json")
            print("aiohttp" in sys.modules, status, api.serving)
            await api.stop()
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out[0] == f"False listening unix:{tmp_path / 'api.sock'} event subscribers 0 False"
    assert out[1] == "True 200 True"


def test_the_first_connection_is_answered_and_stop_cleans_up(tmp_path: Path) -> None:
    async def main() -> None:
        api = service(tmp_path)
        await api.start()
        sock = tmp_path / "api.sock"
        assert sock.stat().st_mode & 0o777 == 0o660
        first, second = await asyncio.gather(get(sock, "/api/v1/openapi.json"),
                                             get(sock, "/api/v1/devices"))
        assert first[0] == 200 and json.loads(first[1])["openapi"]
        assert second[0] == 200 and json.loads(second[1]) == []
        assert api.health() == ("ok", "")
        await api.stop()
        assert not sock.exists() and api.status() == "stopped"

    asyncio.run(main())


def test_a_server_that_cannot_start_closes_its_sockets_and_is_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgesec.api.app

    def broken(_ctx: object) -> object:
        raise RuntimeError("no app today")

    monkeypatch.setattr(edgesec.api.app, "build_app", broken)

    async def main() -> None:
        api = service(tmp_path)
        await api.start()
        assert await get(tmp_path / "api.sock", "/api/v1/openapi.json") == (0, b"")
        assert api.health() == ("failed", "cannot serve: no app today")
        assert not (tmp_path / "api.sock").exists()
        await api.stop()

    asyncio.run(main())


def test_a_taken_port_stops_the_start(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]

    async def main() -> None:
        api = service(tmp_path, f"port = {port}\naddress = 127.0.0.1\n")
        with pytest.raises(OSError):
            await api.start()
        assert api.status() == "stopped" and not (tmp_path / "api.sock").exists()

    try:
        asyncio.run(main())
    finally:
        holder.close()


def test_a_lan_address_without_a_certificate_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        api = service(tmp_path, "port = 8443\naddress = 10.0.0.1\n")
        with pytest.raises(ApiError, match="not loopback"):
            await api.start()

    asyncio.run(main())


def test_stop_while_the_server_is_starting(tmp_path: Path) -> None:
    async def main() -> None:
        api = service(tmp_path)
        await api.start()
        _reader, writer = await asyncio.open_unix_connection(str(tmp_path / "api.sock"))
        for _ in range(3):  # the listening socket's reader fires, _serve() begins
            await asyncio.sleep(0)
        assert api._serving is not None
        await asyncio.wait_for(api.stop(), 30)
        assert api.status() == "stopped" and not api.serving
        assert not (tmp_path / "api.sock").exists()
        writer.close()

    asyncio.run(main())
