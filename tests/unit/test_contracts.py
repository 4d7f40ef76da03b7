"""Source-tree contracts: one settings loader, one of each utility.

These tests read the source, so a second INI reader or a subsystem that
re-defaults a config key fails here instead of drifting silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import edgesec

SRC = Path(edgesec.__file__).parent
LOADER = SRC / "config.py"
# capture/ still builds CaptureOptions from getattr with its own defaults (issue #14).
GETATTR_EXEMPT = {SRC / "capture" / "options.py", SRC / "capture" / "service.py"}


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_configparser_only_in_the_loader() -> None:
    """No module but edgesec.config reads INI text (``edgesec crypt`` included)."""
    offenders = [p.relative_to(SRC) for p in _sources()
                 if p != LOADER and re.search(r"\bconfigparser\b", p.read_text())]
    assert offenders == []


def test_no_module_re_defaults_a_setting() -> None:
    """Settings are read as typed fields, never ``getattr(settings..., "key", default)``."""
    pattern = re.compile(r"getattr\(\s*(getattr\(\s*)?(self\.)?(settings|s)\b[^,]*,\s*[\"']")
    offenders = [f"{p.relative_to(SRC)}:{n}" for p in _sources() if p not in GETATTR_EXEMPT
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line) and p != LOADER]
    assert offenders == []


def test_the_detector_sees_a_re_read() -> None:
    """The pattern above is not vacuous: it flags the shapes it is meant to."""
    pattern = re.compile(r"getattr\(\s*(getattr\(\s*)?(self\.)?(settings|s)\b[^,]*,\s*[\"']")
    for line in ('getattr(settings.dns, "x", True)', 'getattr(getattr(settings, "nat", None), "y")',
                 'getattr(self.settings, "z", 0)'):
        assert pattern.search(line), line
