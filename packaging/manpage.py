"""Render edgesec(8) in troff from the CLI itself (every command, its usage and options).

Usage: python packaging/manpage.py > edgesec.8
The text comes from the commands' docstrings and option help, so the page
cannot drift from ``edgesec --help``.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterator
from typing import Any

import typer.main

from edgesec import __version__
from edgesec.cli import _mount_sub_apps, app


def esc(text: str) -> str:
    """troff-escape: backslashes, leading dots/quotes, hyphens in option names."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + ln) if ln[:1] in (".", "'") else ln for ln in text.splitlines())


def walk(cmd: Any, ctx: Any, path: list[str]) -> Iterator[tuple[list[str], Any, Any]]:
    yield path, cmd, ctx
    for name in sorted(getattr(cmd, "commands", {}) or {}):
        sub = cmd.commands[name]
        if getattr(sub, "hidden", False):
            continue
        sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
        yield from walk(sub, sub_ctx, [*path, name])


def render() -> str:
    _mount_sub_apps([])
    root = typer.main.get_command(app)
    root_ctx = root.make_context("edgesec", [], resilient_parsing=True)
    date = datetime.date.today().isoformat()
    out = [f'.TH EDGESEC 8 "{date}" "edgesec {__version__}" "System Administration"',
           ".SH NAME", "edgesec \\- security gateway for IoT edge routers",
           ".SH SYNOPSIS", ".B edgesec", "\\fICOMMAND\\fR [\\fIOPTIONS\\fR] ...",
           ".SH DESCRIPTION", esc(root.help or ""),
           ".SH COMMANDS"]
    for path, cmd, ctx in walk(root, root_ctx, []):
        if not path:
            continue
        pieces = " ".join(cmd.collect_usage_pieces(ctx))
        out += [".TP", f"\\fBedgesec {esc(' '.join(path))}\\fR {esc(pieces)}",
                esc((cmd.help or "").strip())]
        opts = [rec for p in cmd.get_params(ctx)
                if (rec := p.get_help_record(ctx)) is not None and "--help" not in rec[0]]
        if opts:
            out.append(".RS")
            for names, text in opts:
                out += [".TP", f"\\fB{esc(names)}\\fR", esc(text or "")]
            out.append(".RE")
    out += [".SH FILES",
            ".TP", "\\fI/etc/edgesec/config.ini\\fR", "The configuration (the original's format).",
            ".TP", "\\fI/run/edgesec/edgesec.sock\\fR", "The supervisor control socket.",
            ".TP", "\\fI/var/lib/edgesec/\\fR", "Connection, vault and capture databases.",
            ".SH SIGNALS",
            ".TP", "SIGHUP", "Re-read the configuration and apply what can change live.",
            ".TP", "SIGTERM, SIGINT", "Stop (within about 2 seconds).",
            ".SH SEE ALSO", "systemctl(1), hostapd(8), dnsmasq(8), nft(8)"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
