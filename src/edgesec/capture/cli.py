"""``edgesec recap``: typer app with the original edgesec-recap options.

The lead mounts :data:`app` as ``edgesec recap``; it also runs standalone as
``python -m edgesec.capture.cli``. Options keep the original's letters and
meaning, each with a long name: ``-p/--pcap`` input, ``-f/--db`` output DB
(or FIFO with ``-k``), ``-i/--ifname`` recorded ifname, ``-t/--transaction``
one transaction, ``-n/--stdin`` pcap stream on stdin, ``-k/--pipe`` pipe
mode, ``-d/--debug`` verbosity (repeatable). ``--append`` allows a DB that
already holds tables (otherwise refused: a second run silently duplicated
rows). The input is opened before the DB, so a bad input creates nothing.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import sys
import time
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from edgesec.capture.options import CaptureOptions
from edgesec.capture.recap import RecapResult, recap

app = typer.Typer(add_completion=False, subcommand_metavar="",
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Decode a pcap file or stream into the capture DB.")


class ProgressLine:
    """``recap: 120,000 packets  41,000 pkts/s  36% ETA 5 s`` on stderr.

    On a terminal the line is redrawn in place twice a second and erased at
    the end; otherwise (``-d``) a line is written every 5 s.
    """

    def __init__(self, total: int | None, tty: bool) -> None:
        self.total = total
        self.tty = tty
        self.start = time.monotonic()
        self.next = self.start + (0.5 if tty else 5.0)
        self.last = (0, 0)

    def __call__(self, pkts: int, nbytes: int) -> None:
        self.last = (pkts, nbytes)
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + (0.5 if self.tty else 5.0)
        rate = pkts / max(now - self.start, 1e-9)
        line = f"recap: {pkts:,} packets  {rate:,.0f} pkts/s"
        if self.total:
            done = nbytes / self.total
            eta = (now - self.start) * (1 - done) / max(done, 1e-9)
            line += f"  {done:.0%} ETA {eta:.0f} s"
        sys.stderr.write(f"\r{line}\033[K" if self.tty else line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        """Erase the line (terminal) or write the final one (``-d``)."""
        if self.tty:
            sys.stderr.write("\r\033[K")
        else:
            self.next = 0.0
            self(self.last[0], self.total or self.last[1])
        sys.stderr.flush()


def _run(stream: BinaryIO, options: CaptureOptions, ifname: str, transaction: bool,
         middlewares: tuple[str, ...], total: int | None, verbose: int) -> RecapResult:
    tty = sys.stderr.isatty()
    line = ProgressLine(total, tty) if tty or verbose else None
    try:
        return recap(stream, options, ifname=ifname, transaction=transaction,
                     middlewares=middlewares, progress=line)
    finally:
        if line is not None:
            line.done()


def _has_tables(db: Path) -> bool:
    """Whether ``db`` is an SQLite file that already holds tables."""
    if not db.is_file() or db.stat().st_size == 0:
        return False
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables: int = con.execute("SELECT count(*) FROM sqlite_master "
                                      "WHERE type = 'table'").fetchone()[0]
            return tables > 0
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return True  # not ours to overwrite


@app.callback(invoke_without_command=True)
def recap_command(
    ctx: typer.Context,
    pcap: Annotated[Path | None, typer.Option("-p", "--pcap", help="pcap input file")] = None,
    db: Annotated[Path | None, typer.Option(
        "-f", "--db", help="output SQLite DB (FIFO with -k)")] = None,
    ifname: Annotated[str, typer.Option("-i", "--ifname", help="interface name recorded")] = (
        "ifname"),
    transaction: Annotated[bool, typer.Option(
        "-t", "--transaction", help="one transaction for the whole run")] = False,
    stdin: Annotated[bool, typer.Option(
        "-n", "--stdin", help="read a pcap stream from standard input")] = False,
    pipe: Annotated[bool, typer.Option(
        "-k", "--pipe", help="write protobuf records to a FIFO at -f")] = False,
    verbose: Annotated[int, typer.Option(
        "-d", "--debug", count=True, help="verbosity and a progress line (repeatable)")] = 0,
    append: Annotated[bool, typer.Option(
        "--append", help="add to a DB that already holds tables")] = False,
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
    stream: BinaryIO = sys.stdin.buffer
    total = None
    if not stdin and pcap is not None:
        try:  # the input first: nothing is created when it cannot be read
            stream = pcap.open("rb")
            total = os.fstat(stream.fileno()).st_size
        except OSError as exc:
            typer.echo(f"error: cannot open {pcap}: {exc.strerror}", err=True)
            raise typer.Exit(1) from exc
    if not pipe and not append and _has_tables(db):
        typer.echo(f"error: {db} already holds tables; recap again would duplicate rows. "
                   "Use --append to add to it, or name a new file", err=True)
        raise typer.Exit(2)
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
    with stream:
        result = _run(stream, options, ifname, transaction, mws, total, verbose)
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
