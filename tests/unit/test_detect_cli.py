"""`edgesec alerts`: time arguments, text and JSON listings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgesec.detect.alerts import Alert, AlertStore
from edgesec.detect.cli import app, parse_since


def test_parse_since() -> None:
    now = 1_700_000_000.0
    assert parse_since("10m", now) == now - 600
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1d", now) == now - 86400
    assert parse_since("1699999999.5", now) == 1699999999.5
    assert parse_since("2023-11-14T22:13:20+00:00", now) == now
    with pytest.raises(typer.BadParameter):
        parse_since("yesterday", now)


def test_listing_since_as_text_and_json(tmp_path: Path) -> None:
    db = tmp_path / "detect.sqlite"
    store = AlertStore(db)
    store.add(Alert(1000.0, "02:00:00:00:00:0a", "port_scan", 3, "old one"))
    store.add(Alert(2000.0, "02:00:00:00:00:0a", "dns_tunnel", 3, "new one", count=4))
    store.close()
    runner = CliRunner()
    out = runner.invoke(app, ["--db", str(db), "--since", "1500"])
    assert out.exit_code == 0, out.output
    assert "dns_tunnel" in out.output and "(x4)" in out.output and "old one" not in out.output
    out = runner.invoke(app, ["--db", str(db), "--json"])
    rows = [json.loads(x) for x in out.output.splitlines()]
    assert [r["kind"] for r in rows] == ["port_scan", "dns_tunnel"]
    out = runner.invoke(app, ["--db", str(tmp_path / "none.sqlite")])
    assert out.exit_code == 1
