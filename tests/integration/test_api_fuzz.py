"""Schemathesis fuzzes the running daemon from the API's own OpenAPI document:
no 5xx, and every response matches what the document declares."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from daemon import Daemon, write_config
from edgesec.api.openapi import SPEC
from edgesec.api.tokens import TokenStore

schema = schemathesis.openapi.from_dict(SPEC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    config = write_config(directory, {"api": {"port": port, "tokenFile": "tokens.json"}})
    token, _ = TokenStore(directory / "tokens.json").create("admin", "fuzz")
    with Daemon(config) as daemon:
        for n in range(4):
            daemon.ctl(f"ACCEPT_MAC 02:00:00:00:00:0{n} {n % 2 + 1}")
        daemon.ctl("ADD_BRIDGE 02:00:00:00:00:00 02:00:00:00:00:01")
        yield f"http://127.0.0.1:{port}", token
        log = daemon.log()
    assert "Traceback" not in log, log[-3000:]


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_no_server_errors_and_every_reply_matches_the_schema(
        case: schemathesis.Case, gateway: tuple[str, str]) -> None:
    base, token = gateway
    # Schema-valid is not always acceptable: a VLAN that is not configured, a MAC
    # that is not a device, a label the registry refuses get 400/404 with a reason.
    case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {token}"},
                           excluded_checks=[schemathesis.checks.positive_data_acceptance])
