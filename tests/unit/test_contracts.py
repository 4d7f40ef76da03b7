"""Source-tree contracts: one settings loader, one of each utility.

These tests read the source, so a second INI reader or a subsystem that
re-defaults a config key fails here instead of drifting silently.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgesec

SRC = Path(edgesec.__file__).parent
LOADER = SRC / "config.py"


# getattr(<settings or one of its sections>, "literal key"...): a key read around the schema.
SETTINGS_GETATTR = (r"getattr\(\s*(getattr\(\s*)?(self\.)?(self\.settings|settings|s|ap|r|dns|fw"
                    r"|system|sysset|ifs|radius|nat|dhcp|crypt|api)\b[^,]*,\s*[\"']")


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_configparser_only_in_the_loader() -> None:
    """No module but edgesec.config reads INI text (``edgesec crypt`` included)."""
    offenders = [p.relative_to(SRC) for p in _sources()
                 if p != LOADER and re.search(r"\bconfigparser\b", p.read_text())]
    assert offenders == []


def test_no_module_re_defaults_a_setting() -> None:
    """Settings are read as typed fields, never ``getattr(settings..., "key", default)``."""
    pattern = re.compile(SETTINGS_GETATTR)
    offenders = [f"{p.relative_to(SRC)}:{n}" for p in _sources()
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line) and p != LOADER]
    assert offenders == []


def test_one_bool_parser() -> None:
    """Only edgesec.config lists the words that mean true (``parse_bool``)."""
    words = re.compile(r'"(1|true|yes|on)"[,}\)]?\s*"(1|true|yes|on)"|in "1tT')
    offenders = [str(p.relative_to(SRC)) for p in _sources()
                 if p != LOADER and words.search(p.read_text())]
    assert offenders == []
    assert words.search('x in ("1", "true", "yes", "on")') and words.search('t[0] in "1tTyY"')


def test_the_detector_sees_a_re_read() -> None:
    """The pattern above is not vacuous: it flags the shapes it is meant to."""
    pattern = re.compile(SETTINGS_GETATTR)
    for line in ('getattr(ap, "psk_backend", "radius")',
                 'getattr(settings.dns, "x", True)', 'getattr(getattr(settings, "nat", None), "y")',
                 'getattr(self.settings, "z", 0)'):
        assert pattern.search(line), line


def test_device_status_keeps_the_originals_values_on_the_wire(tmp_path: Path) -> None:
    from edgesec.config import parse_settings
    from edgesec.device_status import DeviceStatus
    from edgesec.registry import Registry
    from edgesec.store import Store
    from edgesec.supervisor.protocol import format_event

    assert [int(s) for s in DeviceStatus] == [0, 1, 2]
    assert f"{DeviceStatus.CONNECTED}" == "1" and DeviceStatus(9) is DeviceStatus.UNKNOWN
    assert format_event("ap", "aa:bb:cc:dd:ee:ff", {"status": DeviceStatus.DISCONNECTED}) \
        == "AP aa:bb:cc:dd:ee:ff 2\n"
    store_path = tmp_path / "c.sqlite"
    conf = parse_settings('[system]\ndefaultOpenVlanId = 1\n'
                          '[interfaces]\nif1 = "1,10.0.1.1,10.0.1.255,255.255.255.0"\n')
    reg = Registry(conf, Store(store_path))
    reg.accept_mac("aa:bb:cc:dd:ee:ff", 1)
    reg.set_status("aa:bb:cc:dd:ee:ff", DeviceStatus.CONNECTED)
    reg.store.close()
    again = Registry(conf, Store(store_path)).get("aa:bb:cc:dd:ee:ff")
    assert again is not None and again.status is DeviceStatus.CONNECTED


BROKEN_SUB_APP = """
import sys
import edgesec.cli as cli
cli.SUB_APPS["broken"] = ("edgesec.no_such_module", "app", "never loads")
sys.argv = ["edgesec", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize("argv", [["broken", "anything", "--flag"], ["--help"]])
def test_a_sub_app_that_fails_to_import_says_so(argv: list[str]) -> None:
    """cli.py does not swallow the ImportError of a sub-command."""
    res = subprocess.run([sys.executable, "-c", BROKEN_SUB_APP, *argv], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    if argv[0] == "--help":
        assert res.returncode == 0 and "broken" in res.stdout and "unavailable" in res.stdout
    else:
        assert res.returncode == 1
        assert "edgesec broken is unavailable: cannot load edgesec.no_such_module" in res.stderr
