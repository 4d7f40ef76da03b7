"""Forward a TCP port on the host's loopback to a port inside a network namespace.

Owns: making the lab gateway's management API (which listens on the gateway
namespace's own loopback) reachable from the host, for a browser. The listening
socket is created in the host namespace first; then the process enters the
gateway namespace, so every connection it opens for a client lands there.

Nothing is trusted by the hop: the API on TCP requires a bearer token or a
dashboard session either way.

    python -m edgesec.lab.forward --listen 8080 --netns lab-gw --to 8080
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys

from pyroute2 import netns

CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


async def serve(listener: socket.socket, port: int) -> None:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(client, sock=listener)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=int, required=True, help="host loopback port")
    ap.add_argument("--netns", required=True, help="namespace to forward into")
    ap.add_argument("--to", type=int, required=True, help="port on that namespace's loopback")
    args = ap.parse_args(argv)
    listener = socket.create_server(("127.0.0.1", args.listen))
    netns.setns(args.netns)  # from now on, new sockets live in the gateway namespace
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(listener, args.to))
    return 0


if __name__ == "__main__":
    sys.exit(main())
