"""``edgesec alerts [--since WHEN] [--json] [-c config.ini]``: list recorded alerts."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from edgesec.detect.alerts import SEVERITY_NAMES, AlertStore

app = typer.Typer(help="Alerts raised by the detectors (docs/detect.md).")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``90s``/``10m``/``2h``/``1d`` ago, a unix time, or an ISO 8601 time."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if m:
        return now - int(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise typer.BadParameter(f"cannot read {text!r} as a time (try 10m, 2h, "
                                 "a unix time or 2026-01-02T03:04:05)") from None


@app.callback(invoke_without_command=True)
def alerts(
    config: Annotated[Path | None, typer.Option("-c", "--config", help="config.ini")] = None,
    since: Annotated[str, typer.Option("--since", help="10m, 2h, 1d, unix or ISO time")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    db: Annotated[Path | None, typer.Option("--db", help="detect DB (default: from config)")]
    = None,
    limit: Annotated[int, typer.Option("--limit")] = 1000,
) -> None:
    """List alerts, oldest first."""
    if db is None:
        from edgesec.config import ConfigError, load_settings

        if config is None:
            raise typer.BadParameter("give -c config.ini or --db")
        try:
            db = load_settings(config).detect.detect_db_path
        except (ConfigError, OSError) as exc:
            raise typer.BadParameter(str(exc)) from None
    if db is None or not Path(db).exists():
        typer.echo(f"no detect DB at {db}", err=True)
        raise typer.Exit(1)
    store = AlertStore(db)
    try:
        rows = store.list(parse_since(since) if since else 0.0, limit)
    finally:
        store.close()
    for a in rows:
        if as_json:
            typer.echo(json.dumps(asdict(a), separators=(",", ":")))
        else:
            when = datetime.fromtimestamp(a.ts).strftime("%Y-%m-%d %H:%M:%S")
            extra = f" (x{a.count})" if a.count > 1 else ""
            typer.echo(f"{when} {a.mac or '-':17} {SEVERITY_NAMES.get(a.severity, a.severity):8}"
                       f" {a.kind:16} {a.message}{extra}")
