"""The ``edgesec`` command line: run, ctl, config, and the parts' own sub-commands."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

if __name__ == "__main__" and sys.argv[1:2] == ["run"]:
    # The daemon (`python -m edgesec.cli run`): started without typer/rich/pydantic,
    # which would stay resident for its whole life (edgesec.runcmd).
    from edgesec.runcmd import main as _run_main

    _run_main()  # exits with the daemon's status
    sys.exit(0)

import typer

from edgesec import __version__
from edgesec.config import ConfigError, Settings, describe, load_settings

app = typer.Typer(help="edgesec: a security toolset for IoT edge routers.",
                  no_args_is_help=True, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  pretty_exceptions_show_locals=False)  # locals may hold secrets
config_app = typer.Typer(help="Configuration tools.", no_args_is_help=True)
app.add_typer(config_app, name="config")

# Sub-applications, mounted on demand; one that fails to import is listed as unavailable.
SUB_APPS = {
    "recap": ("edgesec.capture.cli", "app", "Read a pcap file or stream into the capture DB."),
    "crypt": ("edgesec.crypt.cli", "app", "Manage the encrypted vault."),
    "lab": ("edgesec.lab.cli", "app", "Virtual IoT devices in network namespaces."),
    "alerts": ("edgesec.detect.cli", "app", "Alerts raised by the detectors."),
    "api": ("edgesec.api.cli", "app", "Management API: tokens."),
}
# Top-level views served by the management API (defined in edgesec.api.cli).
API_VIEWS = ("devices", "status", "explain")


def setup_logging(verbosity: int, log_format: str = "text") -> None:
    """Like the original: -ddd is INFO, -dddd DEBUG; warnings are always shown.

    The audit trail (policy changes, RADIUS decisions, leases) is at INFO.
    """
    from edgesec.logsetup import setup_logging as _setup

    level = logging.WARNING if verbosity < 3 else logging.INFO if verbosity == 3 else logging.DEBUG
    _setup(level, log_format)  # also installs the rate limit on repeated lines


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgesec {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool | None, typer.Option(
        "--version", "-v", callback=_version, is_eager=True, help="Print the version.")] = None,
) -> None:
    """edgesec: per-device isolation, RADIUS, mDNS reflection, capture and a vault."""


def _load(config: Path) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"edgesec: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def run(
    config: Annotated[Path, typer.Option("-c", "--config", help="config.ini of the original")],
    debug: Annotated[int, typer.Option("-d", count=True, help="More log output (repeat).")] = 0,
    log_format: Annotated[str, typer.Option(
        "--log-format", help="text, or json (one object per line)")] = "text",
) -> None:
    """Run the gateway in the foreground until SIGTERM/SIGINT (SIGHUP reloads)."""
    from edgesec.runcmd import run_gateway

    code = run_gateway(config, debug, log_format)
    if code:
        raise typer.Exit(code)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ctl(
    words: Annotated[list[str], typer.Argument(help="COMMAND [ARGS...], or 'watch'")],
    socket_path: Annotated[str | None, typer.Option("--socket", "-s",
                                                       help="supervisor UNIX socket")] = None,
    udp: Annotated[str | None, typer.Option("--udp", help="HOST:PORT")] = None,
    config: Annotated[Path | None, typer.Option("-c", "--config")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the reply")] = 5.0,
    as_json: Annotated[bool, typer.Option(
        "--json", help="print {command, ok, lines} (events: one object per line)")] = False,
) -> None:
    """Send one supervisor command and print the reply (exit 1 on FAIL).

    `edgesec ctl watch` subscribes to events and prints them as they come.
    """
    import json

    from edgesec.supervisor.client import ClientError, SupervisorClient, default_socket

    key = b""
    if config is not None:
        settings = _load(config)
        socket_path = socket_path or str(settings.supervisor.supervisor_control_path)
        from edgesec.gateway import _control_key

        key = _control_key(settings)
    try:
        if udp:
            host, _, port = udp.rpartition(":")
            client = SupervisorClient(udp=(host, int(port)), key=key, timeout=timeout)
        else:
            client = SupervisorClient(unix_path=socket_path or default_socket(), timeout=timeout)
        with client:
            if words == ["watch"]:
                for line in client.events():
                    kind, _, rest = line.partition(" ")
                    typer.echo(json.dumps({"event": kind, "args": rest.split()})
                               if as_json else line)
                return
            reply = client.request(" ".join(words))
    except ClientError as exc:
        typer.echo(f"edgesec: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    failed = reply == "FAIL\n"
    if as_json:
        typer.echo(json.dumps({"command": words[0] if words else "", "ok": not failed,
                               "lines": reply.splitlines()}))
    else:
        typer.echo(reply, nl=False)
    if failed:
        # The text protocol has no room for a reason (the original's clients
        # parse FAIL alone); the daemon logs why, and the API answers with it.
        typer.echo("edgesec: the gateway refused the command; the daemon log says why "
                   "(the management API returns the reason: docs/api.md)", err=True)
        raise typer.Exit(1)


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="config.ini to check")],
    strict: Annotated[bool, typer.Option("--strict",
                                         help="Unknown sections and keys are errors.")] = False,
) -> None:
    """Validate FILE as `run` would: errors (exit 2) or the effective settings.

    Secret values (RADIUS secret, WPA passphrase, control key) are redacted.
    """
    logging.basicConfig(level=logging.WARNING, format="edgesec: warning: %(message)s")
    try:
        settings = load_settings(file, strict=strict)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"edgesec: {problem}", err=True)
        raise typer.Exit(2) from None
    section = ""
    for sect, key, value in describe(settings):
        if sect != section:
            typer.echo(f"[{sect}]")
            section = sect
        typer.echo(f"{key} = {value}")


@app.command()
def demo() -> None:
    """The README's `make demo`: a scripted walk through the gateway."""
    module = importlib.import_module("edgesec.demo")
    raise typer.Exit(module.main())


def _mount_unavailable(name: str, reason: str) -> None:
    """Stand in for a sub-app that failed to import: listed in help, says why, exits 1."""

    def fail() -> None:
        typer.echo(f"error: edgesec {name} is unavailable: {reason}", err=True)
        raise typer.Exit(1)

    app.command(name, help=f"(unavailable: {reason})", add_help_option=False,
                context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                  "help_option_names": []})(fail)


def _mount_sub_apps(argv: list[str]) -> None:
    """Mount the sub-applications; only the one named on the command line if any.

    Importing all of them costs ~0.4 s (pyroute2, cryptography, ...), which a
    `recap` of a small file or every `ctl` call would otherwise pay.
    """
    words = [w for w in argv if not w.startswith("-")]
    first = words[0] if words else ""
    if not words and ("--version" in argv or "-v" in argv):
        wanted = []
    elif first in SUB_APPS:
        wanted = [first]
    elif first in API_VIEWS:
        wanted = ["api"]
    elif first in {"run", "ctl", "config", "demo"}:
        wanted = []
    else:
        wanted = list(SUB_APPS)  # help, or a typo: show everything
    for name in wanted:
        module, attr, help_text = SUB_APPS[name]
        try:
            sub = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            _mount_unavailable(name, f"cannot load {module}: {exc}")
            continue
        app.add_typer(sub, name=name, help=help_text)
        if name == "api":
            module_obj = importlib.import_module(module)
            for view in API_VIEWS:
                app.command(view)(getattr(module_obj, view))


def main() -> None:
    if os.environ.get("_EDGESEC_COMPLETE"):
        # Shell completion (`_EDGESEC_COMPLETE=source_bash edgesec` prints the script
        # `make install` installs; the script calls back with complete_bash).
        from typer._completion_classes import completion_init  # where typer defines it

        completion_init()
    _mount_sub_apps(sys.argv[1:])
    app()


if __name__ == "__main__":
    main()
