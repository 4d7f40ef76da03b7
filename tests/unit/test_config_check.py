"""``config check`` accepts exactly what ``run`` accepts: one table row per refused config.

Each row is a config text and the substring the error must carry, line number
included.  The same text goes through ``parse_settings`` (what ``run`` uses) and
through ``edgesec config check`` (exit 2, the message on stderr).  Secret values
never appear in either.  A hypothesis fuzz feeds the INI reader and every key's
parser arbitrary text: the only exception allowed is ConfigError.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesec.config import SECTIONS, ConfigError, load_settings, parse_bool, parse_settings
from edgesec.config_check import is_secret, parse_wpa_passphrase

IF1 = 'if1 = "1,10.10.0.1,10.10.0.255,255.255.255.0"'
IF2 = 'if2 = "2,10.20.0.1,10.20.0.255,255.255.255.0"'
HEAD = f"[system]\ndefaultOpenVlanId = 1\n[interfaces]\n{IF1}\n{IF2}\n"  # lines 1-5

# (id, config text, substring of the error: "<line>: ..." is appended to the file name)
ROWS = [
    ("overlapping-subnets",
     "[system]\ndefaultOpenVlanId = 1\n[interfaces]\n" + IF1 + "\n"
     'if3 = "3,10.10.0.1,10.10.0.255,255.255.255.0"\n',
     ":5: [interfaces] VLAN 3 subnet 10.10.0.0/24 overlaps VLAN 1"),
    ("overlapping-wider-subnet",
     HEAD + 'if3 = "3,10.0.0.1,10.255.255.255,255.0.0.0"\n',
     ":6: [interfaces] VLAN 3 subnet 10.0.0.0/8 overlaps VLAN 1"),
    ("same-vlan-twice",
     HEAD + 'if3 = "1,10.30.0.1,10.30.0.255,255.255.255.0"\n',
     ":6: [interfaces] if3: VLAN 1 is already listed on line 4"),
    ("broadcast-outside-subnet",
     HEAD + 'if3 = "3,10.30.0.1,10.31.0.255,255.255.255.0"\n',
     ":6: [interfaces] VLAN 3: broadcast 10.31.0.255"),
    ("dhcp-range-outside-subnet",
     HEAD + '[dhcp]\ndhcpRange1 = "1,10.10.0.10,10.10.1.20,255.255.255.0,1h"\n',
     ":7: [dhcp] range for VLAN 1: 10.10.1.20 is outside the VLAN's subnet 10.10.0.0/24"),
    ("dhcp-range-undefined-vlan",
     HEAD + '[dhcp]\ndhcpRange9 = "9,10.90.0.10,10.90.0.20,255.255.255.0,1h"\n',
     ":7: [dhcp] range for VLAN 9: no [interfaces] ifN entry defines VLAN 9"),
    ("dhcp-range-has-gateway",
     HEAD + '[dhcp]\ndhcpRange1 = "1,10.10.0.1,10.10.0.20,255.255.255.0,1h"\n',
     ":7: [dhcp] range for VLAN 1: 10.10.0.1-10.10.0.20 contains the gateway's own address"),
    ("dhcp-two-ranges-one-vlan",
     HEAD + '[dhcp]\ndhcpRange1 = "1,10.10.0.10,10.10.0.20,255.255.255.0,1h"\n'
     'dhcpRange2 = "1,10.10.0.30,10.10.0.40,255.255.255.0,1h"\n',
     ":8: [dhcp] range for VLAN 1: VLAN 1 already has a range (line 7)"),
    ("dns-server-bad-octet",
     '[dns]\nservers = "8.8.8.8,198.51.100.999"\n',
     ":2: [dns] servers = '8.8.8.8,198.51.100.999': '198.51.100.999' is not an IP address"),
    ("radius-empty-secret",
     "[system]\nexecRadius = true\n[radius]\nport = 1812\n",
     ": [radius] secret is empty but execRadius is on"),
    ("radius-empty-secret-given",
     '[system]\nexecRadius = true\n[radius]\nsecret = ""\n',
     ":4: [radius] secret is empty but execRadius is on"),
    ("wpa-passphrase-short",
     '[ap]\nssid = x\nwpaPassphrase = "abcde"\n',
     ":3: [ap] wpaPassphrase = '<redacted>': a WPA passphrase has 8-63 characters"),
    ("wpa-passphrase-long",
     "[ap]\nwpaPassphrase = " + "z" * 64 + "\n",
     ":2: [ap] wpaPassphrase = '<redacted>': a WPA passphrase has 8-63 characters"),
    ("wpa-passphrase-not-ascii",
     '[ap]\nwpaPassphrase = "pässwörter"\n',
     ":2: [ap] wpaPassphrase = '<redacted>': a WPA passphrase is printable ASCII only"),
    ("missing-passphrase-file",
     "[system]\ncryptPassphraseFile = /nonexistent/edgesec.pass\n",
     ":2: [system] cryptPassphraseFile = '/nonexistent/edgesec.pass': cannot read"),
    ("missing-crypt-passphrase-file",
     "[crypt]\nbackend = passphrase\npassphraseFile = /nonexistent/p\n",
     ":3: [crypt] passphraseFile = '/nonexistent/p': cannot read"),
    ("missing-control-key-file",
     "[supervisor]\nsupervisorControlKeyFile = /nonexistent/k\n",
     ":2: [supervisor] supervisorControlKeyFile = '/nonexistent/k': cannot read"),
    ("control-off-loopback-without-key",
     "[supervisor]\nsupervisorControlPort = 32001\nsupervisorControlAddress = 0.0.0.0\n",
     ":3: [supervisor] the UDP socket would listen on 0.0.0.0, which is not loopback"),
    ("bool-trust-nobody",
     '[system]\nallowAllConnections = "trust-nobody"\n',
     ":2: [system] allowAllConnections = 'trust-nobody': expected true/false"),
    ("bool-t",
     "[system]\n\nexecAp = t\n",
     ":3: [system] execAp = 't': expected true/false"),
    ("bool-nope",
     "[system]\nexecDhcp = nope\n",
     ":2: [system] execDhcp = 'nope'"),
    ("default-vlan-undefined",
     "[system]\ndefaultOpenVlanId = 7\n[interfaces]\n" + IF1 + "\n",
     ":2: [system] defaultOpenVlanId = 7: no [interfaces] ifN entry has that VLAN"),
    ("control-path-too-long",
     "[supervisor]\nsupervisorControlPath = /" + "x" * 120 + "\n",
     ":2: [supervisor] supervisorControlPath"),
    ("pool-does-not-fit",
     "[interfaces]\nvlanPoolPrefix = 10.0.0.0/8\nvlanPoolPrefixLen = 31\n",
     ":2: [interfaces] vlanPoolPrefix"),
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.ini"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_run_refuses(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert any(f"{path}{expected}" in p for p in err.value.problems), err.value.problems
    assert "\n" not in str(err.value)


def _check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgesec.cli", "config", "check", *extra,
                           str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})


# the CLI is slow to start: a few rows through the real command, the rest in-process
CLI_ROWS = ["overlapping-subnets", "dhcp-range-outside-subnet", "dns-server-bad-octet",
            "radius-empty-secret", "wpa-passphrase-short", "missing-passphrase-file",
            "control-off-loopback-without-key", "bool-trust-nobody"]


@pytest.mark.slow  # one `edgesec config check` and one `edgesec run` process per row
@pytest.mark.parametrize("row", CLI_ROWS)
def test_config_check_refuses_what_run_refuses(tmp_path: Path, row: str) -> None:
    _, text, expected = next(r for r in ROWS if r[0] == row)
    path = _write(tmp_path, text)
    out = _check(path)
    assert out.returncode == 2, out
    assert f"{path}{expected}" in out.stderr and out.stdout == ""
    assert "Traceback" not in out.stderr
    assert "abcde" not in out.stderr


def test_config_check_lists_every_problem(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + "[dns]\nservers = 1.2.3.4\n[dhcp]\n"
                  'dhcpRange1 = "1,10.10.0.10,10.10.1.20,255.255.255.0,1h"\n'
                  'dhcpRange9 = "9,10.90.0.10,10.90.0.20,255.255.255.0,1h"\n'
                  "[supervisor]\nsupervisorControlPort = 1\nsupervisorControlAddress = 10.1.1.1\n")
    out = _check(path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 3, out.stderr
    assert f"{path}:9:" in lines[0] and f"{path}:10:" in lines[1] and f"{path}:13:" in lines[2]


def test_run_refuses_like_check(tmp_path: Path) -> None:
    """`run` exits 2 on the same message, before anything starts."""
    _, text, expected = next(r for r in ROWS if r[0] == "control-off-loopback-without-key")
    path = _write(tmp_path, text)
    out = subprocess.run([sys.executable, "-m", "edgesec.cli", "run", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and f"{path}{expected}" in out.stderr
    assert "Traceback" not in out.stderr


# -- unknown names: warnings with their line, errors with --strict ----------------------


UNKNOWN = "[system]\nexecAp = false\nfrobnicate = 3\n\n[nonsense]\na = b\n[empty]\n"


def test_unknown_key_and_section_warn_with_line(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgesec.config")
    path = _write(tmp_path, UNKNOWN)
    load_settings(path)
    messages = [r.getMessage() for r in caplog.records]
    assert f"{path}:3: unknown key [system] frobnicate ignored" in messages
    assert f"{path}:5: unknown section [nonsense] ignored" in messages
    assert f"{path}:7: unknown section [empty] ignored" in messages


def test_strict_makes_unknown_names_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, UNKNOWN)
    with pytest.raises(ConfigError, match=f"{path}:3: unknown key"):
        load_settings(path, strict=True)
    out = _check(path, "--strict")
    assert out.returncode == 2
    assert [ln for ln in out.stderr.splitlines() if "--strict" in ln] == [
        f"edgesec: {path}:3: unknown key [system] frobnicate (--strict)",
        f"edgesec: {path}:5: unknown section [nonsense] (--strict)",
        f"edgesec: {path}:7: unknown section [empty] (--strict)"]
    relaxed = _check(path)
    assert relaxed.returncode == 0 and f"{path}:3: unknown key" in relaxed.stderr


# -- booleans ----------------------------------------------------------------------------


@pytest.mark.parametrize(("word", "value"), [
    ("true", True), ("TRUE", True), ("Yes", True), ("on", True), ("1", True),
    ("false", False), ("No", False), ("OFF", False), ("0", False)])
def test_bool_words(word: str, value: bool) -> None:
    assert parse_bool(word) is value


@pytest.mark.parametrize("word", ["trust-nobody", "t", "f", "y", "n", "", "2", "truee", "nein",
                                  "10", "yes please"])
def test_bool_others_are_errors(word: str) -> None:
    with pytest.raises(ValueError):
        parse_bool(word)


# -- WPA passphrases ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "12345678", "a" * 63, "0123456789abcdef" * 4,
                                  "with spaces ~!", "1234554321"])
def test_wpa_passphrase_ok(text: str) -> None:
    assert parse_wpa_passphrase(text) == text


@pytest.mark.parametrize("text", ["1234567", "z" * 64, "g" * 64, "tab\there!", "ünïcödé!"])
def test_wpa_passphrase_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_wpa_passphrase(text)


# -- secrets never printed ------------------------------------------------------------------


def test_secret_keys_are_recognised() -> None:
    for key in ("secret", "wpaPassphrase", "supervisorControlKey"):
        assert is_secret(key)
    for key in ("wpaKeyMgmt", "pkcs11KeyLabel", "secretInVault", "ssid", "supervisorControlPort"):
        assert not is_secret(key), key


def test_config_check_redacts_secrets(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + '[system]\nexecRadius = true\n'
                  '[radius]\nsecret = "radius-s3cret"\n[ap]\nwpaPassphrase = "wpa-s3cret-pass"\n'
                  '[supervisor]\nsupervisorControlKey = "ctl-s3cret"\n')
    out = _check(path)
    assert out.returncode == 0, out.stderr
    assert "s3cret" not in out.stdout + out.stderr
    for line in ("secret = <redacted>", "wpaPassphrase = <redacted>",
                 "supervisorControlKey = <redacted>", "ssid = edgesec"):
        assert line in out.stdout.splitlines()


# -- what used to load still loads -------------------------------------------------------


def test_generated_lab_config_loads() -> None:
    from edgesec.lab.gwconfig import LabSecrets, render

    parse_settings(render(3, LabSecrets.generate()))


# -- fuzzing ---------------------------------------------------------------------------------

PARSERS = [(s, f.metadata["ini"], f.metadata["parser"]) for s, cls in SECTIONS.items()
           for f in fields(cls) if "parser" in f.metadata]


@settings(max_examples=300)
@given(st.sampled_from(PARSERS), st.text(max_size=80))
def test_fuzz_every_parser_raises_only_value_error(entry: tuple, text: str) -> None:
    _, _, parser = entry
    with contextlib.suppress(ValueError):
        parser(text)


LINE = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["[system]", "[interfaces]", "[dhcp]", "[dns]", "[radius]", "[ap]",
                     "[supervisor]", "[crypt]", "[", "]", "=", '"', ";", "#"]),
    st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(
        ["if1", "if2", "dhcpRange1", "dhcpRange2", "servers", "secret", "execRadius",
         "wpaPassphrase", "supervisorControlAddress", "supervisorControlPort",
         "supervisorControlKey", "defaultOpenVlanId", "vlanPoolPrefix", "allowAllConnections"]),
        st.one_of(st.text(max_size=40), st.sampled_from([
            "1,10.0.1.1,10.0.1.255,255.255.255.0", "2,10.0.1.1,10.0.1.255,255.255.0.0",
            "1,10.0.1.2,10.0.1.9,255.255.255.0,1h", "2,10.0.9.2,10.0.9.9,255.255.255.0,1h",
            "0.0.0.0", "1", "true", "on", "t", "8.8.8.8,::1", "10.0.0.0/30", ""]))),
)


@settings(max_examples=300)
@given(st.lists(LINE, max_size=16))
def test_fuzz_ini_only_config_errors(lines: list[str]) -> None:
    try:
        parse_settings("\n".join(lines), "fuzz.ini", Path("/nonexistent"))
    except ConfigError as exc:
        assert exc.problems and all("\n" not in p for p in exc.problems)
        assert all(p.startswith("fuzz.ini") for p in exc.problems)


def test_secret_file_that_is_a_fifo_or_directory_is_refused_without_blocking(
        tmp_path: Path) -> None:
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    for target, why in ((fifo, "not a regular file"), (tmp_path, "not a regular file")):
        path = _write(tmp_path, f"[supervisor]\nsupervisorControlKeyFile = {target}\n")
        with pytest.raises(ConfigError, match=f"{path}:2: .*cannot read: {why}"):
            load_settings(path)
    key = tmp_path / "key"
    key.write_text("k\n")
    assert load_settings(_write(tmp_path, f"[supervisor]\nsupervisorControlKeyFile = {key}\n"))
