"""``edgesec run``: the daemon's start, without the command-line framework.

The daemon lives for months; typer (which now loads pydantic) and rich add
~11 MB to its resident memory for parsing three options once.  So ``edgesec
run -c FILE [-d...] [--log-format F]`` is parsed here with :mod:`argparse`
and everything else — other commands, ``--help``, an option this parser does
not know — goes to the typer application in :mod:`edgesec.cli`, which also
runs the gateway through :func:`run_gateway` (one behaviour, two parsers).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path


def run_gateway(config: Path, verbosity: int, log_format: str) -> int:
    """Start the gateway on ``config`` and run until SIGTERM/SIGINT; the exit code.

    2: bad option or configuration (nothing started); 1: start-up failed.
    """
    if log_format not in ("text", "json"):
        print(f"edgesec: --log-format must be text or json, not {log_format!r}", file=sys.stderr)
        return 2
    from edgesec.config import ConfigError, load_settings
    from edgesec.logsetup import setup_logging

    level = logging.WARNING if verbosity < 3 else logging.INFO if verbosity == 3 else logging.DEBUG
    setup_logging(level, log_format)
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        print(f"edgesec: {exc}", file=sys.stderr)
        return 2
    from edgesec.gateway import Gateway

    try:
        gateway = Gateway(settings)
        asyncio.run(gateway.run())
    except Exception as exc:
        logging.getLogger("edgesec").debug("start-up failed", exc_info=True)
        print(f"edgesec: {exc}", file=sys.stderr)
        return 1
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)  # typer words the error (and the help) instead


def parse_run(argv: list[str]) -> argparse.Namespace | None:
    """The options of ``run``; None when anything else is asked (help, unknown words)."""
    parser = _Parser(prog="edgesec run", add_help=False, allow_abbrev=False)
    parser.add_argument("-c", "--config", type=Path)
    parser.add_argument("-d", dest="debug", action="count", default=0)
    parser.add_argument("--log-format", default="text")
    try:
        args, rest = parser.parse_known_args(argv)
    except ValueError:
        return None
    if rest or args.config is None:
        return None
    return args


def main() -> None:
    """Console-script entry point: ``run`` here, every other command in edgesec.cli."""
    argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        args = parse_run(argv[1:])
        if args is not None:
            sys.exit(run_gateway(args.config, args.debug, args.log_format))
    from edgesec.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
