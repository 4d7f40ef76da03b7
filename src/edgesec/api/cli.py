"""``edgesec api token ...`` and the API-backed views ``edgesec devices|status|explain``.

The views talk HTTP to the daemon's API UNIX socket (root there is admin, the
socket's group is operator); ``--json`` prints the API's own JSON for scripts.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgesec.api.tokens import SCOPES, TokenError, TokenStore
from edgesec.config import ConfigError, load_settings

app = typer.Typer(help="Management API: tokens.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens (stored as hashes; shown once).",
                        no_args_is_help=True)
app.add_typer(token_app, name="token")

DEFAULT_SOCKET = Path("/run/edgesec/api.sock")
ConfigOpt = Annotated[Path | None, typer.Option("-c", "--config", help="config.ini")]
SocketOpt = Annotated[Path | None, typer.Option("--socket", "-s", help="API UNIX socket")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"edgesec: {message}", err=True)
    return typer.Exit(code)


def _settings(config: Path | None) -> Any:
    if config is None:
        return None
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _store(config: Path | None) -> TokenStore:
    settings = _settings(config or Path("/etc/edgesec/config.ini"))
    path = settings.api.token_file
    if path is None:
        raise _fail("[api] tokenFile is empty: no token store configured")
    return TokenStore(path)


@token_app.command("create")
def token_create(
    scope: Annotated[str, typer.Option(help=f"one of {', '.join(SCOPES)}")],
    label: Annotated[str, typer.Option(help="what the token is for")] = "",
    config: ConfigOpt = None,
) -> None:
    """Create a token and print it once (only its hash is stored)."""
    try:
        token, record = _store(config).create(scope, label)
    except TokenError as exc:
        raise _fail(str(exc)) from None
    typer.echo(token)
    typer.echo(f"id {record.id} scope {record.scope}: store it now, it is not shown again",
               err=True)


@token_app.command("list")
def token_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The tokens' ids, scopes, labels and creation times (never the tokens)."""
    records = _store(config).records()
    if as_json:
        typer.echo(json.dumps([{"id": r.id, "scope": r.scope, "label": r.label,
                                "created": r.created} for r in records], indent=1))
        return
    for r in records:
        typer.echo(f"{r.id}  {r.scope:<8}  {r.created}  {r.label}")


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="the id from 'token list'")],
                 config: ConfigOpt = None) -> None:
    """Revoke a token by id; it stops working at once."""
    if not _store(config).revoke(token_id):
        raise _fail(f"no token with id {token_id}", 1)


CA_KEY, CA_CERT = "api-ca-key", "api-ca-cert"  # vault entries of the gateway's CA


@app.command("cert")
def cert(
    host: Annotated[list[str], typer.Option(
        "--host", help="a name or IP address the API is reached by (repeat)")],
    config: ConfigOpt = None,
) -> None:
    """Issue the API's HTTPS certificate from the gateway's own CA (kept in the vault).

    Writes [api] keyFile (0600) and certFile, and the CA certificate beside
    certFile as api-ca.crt for clients to trust. The CA is made on first use.
    """
    import os

    from edgesec.api.cert import issue, new_ca
    from edgesec.crypt import cli as crypt_cli

    path = config or Path("/etc/edgesec/config.ini")
    api = _settings(path).api
    if api.cert_file is None or api.key_file is None:
        raise _fail("set [api] certFile and keyFile first")
    with crypt_cli._open(crypt_cli._settings(path, None)) as vault:
        ca_key, ca_cert = vault.get(CA_KEY), vault.get(CA_CERT)
        if ca_key is None or ca_cert is None:
            ca_key, ca_cert = new_ca()
            vault.put_many([(CA_KEY, ca_key), (CA_CERT, ca_cert)])
            typer.echo("made the gateway's CA (its key stays in the vault)", err=True)
        try:
            key_pem, cert_pem = issue(ca_key, ca_cert, host)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    api.key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(api.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    api.cert_file.write_bytes(cert_pem + ca_cert)
    ca_path = api.cert_file.with_name("api-ca.crt")
    ca_path.write_bytes(ca_cert)
    typer.echo(f"{api.cert_file} (for {', '.join(host)}); trust {ca_path}")


# -- views over the API socket ----------------------------------------------------------
class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.path))


def api_get(path: str, config: Path | None, sock: Path | None, timeout: float = 5.0) -> Any:
    """GET a JSON document from the daemon's API socket; exit 2 with the reason on error."""
    if sock is None:
        settings = _settings(config)
        sock = settings.api.socket_path if settings is not None else DEFAULT_SOCKET
    if sock is None:
        raise _fail("[api] socketPath is empty: the API socket is off")
    conn = _UnixHTTP(sock, timeout)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        body = json.loads(res.read() or b"null")
    except (OSError, ValueError) as exc:
        raise _fail(f"{sock}: {exc}") from None
    finally:
        conn.close()
    if res.status >= 400:
        raise _fail(f"{body.get('error')}: {body.get('detail')}", 1)
    return body


def _console() -> Console:
    # MACs and labels are data: never markup, never emoji (":cd:" is not a CD)
    return Console(markup=False, emoji=False, highlight=False, soft_wrap=False)


def devices(config: ConfigOpt = None, sock: SocketOpt = None, as_json: JsonOpt = False) -> None:
    """The gateway's devices (label, MAC, VLAN, IPs, state, NAT, bridges)."""
    rows = api_get("/api/v1/devices", config, sock)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table(box=None, header_style="bold")
    for name in ("label", "MAC", "VLAN", "IP", "status", "allowed", "NAT", "bridges"):
        table.add_column(name, no_wrap=name in ("MAC", "VLAN", "IP"))
    for d in rows:
        table.add_row(d["label"] or "-", d["mac"], str(d["vlan"]), "\n".join(d["ips"]) or "-",
                      d["status"], "yes" if d["allowed"] else "DENIED",
                      "yes" if d["nat"] else "no", str(len(d["bridges"])))
    _console().print(table)


def status(config: ConfigOpt = None, sock: SocketOpt = None, as_json: JsonOpt = False) -> None:
    """Each service's state (ok, degraded, failed) and why; exit 1 unless all are ok."""
    body = api_get("/api/v1/status", config, sock)
    if as_json:
        typer.echo(json.dumps(body, indent=1))
    else:
        for svc in body["services"]:
            typer.echo(f"{svc['name']:<11} {svc['state']:<9} {svc['detail']}")
    if body["state"] != "ok":
        raise typer.Exit(1)


def explain(mac: Annotated[str, typer.Argument(help="the device that cannot reach")],
            dst: Annotated[str, typer.Argument(
                help="a MAC or IPv4 address; 'internet' (the default) for any outside one")]
            = "internet",
            config: ConfigOpt = None, sock: SocketOpt = None, as_json: JsonOpt = False) -> None:
    """Why MAC can or cannot open connections to DST, and what would allow it."""
    from urllib.parse import urlencode

    body = api_get("/api/v1/explain?" + urlencode({"src": mac, "dst": dst}), config, sock)
    if as_json:
        typer.echo(json.dumps(body, indent=1))
        return
    typer.echo(f"{body['src']} -> {body['dst']}: "
               f"{'allowed' if body['allowed'] else 'blocked'} (rule {body['rule'] or 'none'})")
    for reason in body["reasons"]:
        typer.echo(f"  - {reason}")
    for remedy in body["remedies"]:
        typer.echo(f"  to allow: {remedy}")
