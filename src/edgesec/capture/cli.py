"""``edgesec recap``: typer app with the original edgesec-recap options.

The lead mounts :data:`app` as ``edgesec recap``; it also runs standalone as
``python -m edgesec.capture.cli``. Options keep the original's meaning:
``-p`` pcap input, ``-f`` output DB (or FIFO with ``-k``), ``-i`` recorded
ifname, ``-t`` one transaction, ``-n`` pcap stream on stdin, ``-k`` pipe
mode, ``-d`` verbosity (repeatable).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from edgesec.capture.options import CaptureOptions
from edgesec.capture.recap import RecapResult, recap

app = typer.Typer(add_completion=False,
                  help="Decode a pcap file or stream into the capture DB.")


def _run(stream: BinaryIO, options: CaptureOptions, ifname: str, transaction: bool,
         middlewares: tuple[str, ...], total: int | None) -> RecapResult:
    if not sys.stderr.isatty():
        return recap(stream, options, ifname=ifname, transaction=transaction,
                     middlewares=middlewares)
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("recap"), BarColumn(), DownloadColumn(),
               TextColumn("{task.fields[pkts]} pkts {task.fields[rate]:.0f} pkts/s"),
               TimeElapsedColumn()]
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("recap", total=total, pkts=0, rate=0.0)

        def tick(pkts: int, nbytes: int) -> None:
            elapsed = bar.tasks[0].elapsed or 1e-9
            bar.update(task, completed=nbytes, pkts=pkts, rate=pkts / elapsed)

        return recap(stream, options, ifname=ifname, transaction=transaction,
                     middlewares=middlewares, progress=tick)


@app.callback(invoke_without_command=True)
def recap_command(
    ctx: typer.Context,
    pcap: Annotated[Path | None, typer.Option("-p", help="pcap input file")] = None,
    db: Annotated[Path | None, typer.Option("-f", help="output SQLite DB (FIFO with -k)")] = None,
    ifname: Annotated[str, typer.Option("-i", help="interface name recorded")] = "ifname",
    transaction: Annotated[bool, typer.Option("-t", help="one transaction for the run")] = False,
    stdin: Annotated[bool, typer.Option("-n", help="read a pcap stream from stdin")] = False,
    pipe: Annotated[bool, typer.Option("-k", help="write protobuf records to a FIFO")] = False,
    verbose: Annotated[int, typer.Option("-d", count=True, help="verbosity")] = 0,
    middlewares: Annotated[str, typer.Option(
        "--middlewares", help="comma-separated middlewares")] = "header",
) -> None:
    """Decode PCAP (or stdin) into the header tables of DB."""
    if pcap is None and db is None and not stdin and not pipe:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)])
    if db is None:
        typer.echo("error: -f DB is required", err=True)
        raise typer.Exit(2)
    mws = tuple(m.strip() for m in middlewares.split(",") if m.strip())
    options = CaptureOptions(capture_db_path=db)
    if pipe:
        if not db.exists():
            os.mkfifo(db, 0o660)
            typer.echo(f"Created pipe file at {db}")
        elif not stat.S_ISFIFO(db.stat().st_mode):
            typer.echo(f"error: {db} exists and is not a FIFO", err=True)
            raise typer.Exit(2)
        options = CaptureOptions(capture_db_path=Path(":memory:"),
                                 middleware_params=str(db),
                                 extra={"protobuf_blocking": "1"})
        mws = ("protobuf",)
    else:
        typer.echo(f"Opened db at {db}")
    if transaction:
        typer.echo("Using transaction mode")
    if stdin or pcap is None:
        result = _run(sys.stdin.buffer, options, ifname, transaction, mws, None)
    else:
        try:
            stream = pcap.open("rb")
        except OSError as exc:
            typer.echo(f"error: cannot open {pcap}: {exc.strerror}", err=True)
            raise typer.Exit(1) from exc
        with stream:
            result = _run(stream, options, ifname, transaction, mws, pcap.stat().st_size)
    if transaction:
        typer.echo(f"Commiting changes to {db} database")
    typer.echo(f"Processed pcap file/stream size = {result.bytes_read} bytes")
    typer.echo(f"Processed packets = {result.packets}")
    typer.echo(f"Decoded header rows = {result.rows}")
    if result.error:
        typer.echo(f"error: damaged pcap input: {result.error}", err=True)
        raise typer.Exit(1)
    if result.middleware_errors:
        typer.echo(f"error: {result.middleware_errors} middleware failures (see log)", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
