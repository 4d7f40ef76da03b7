"""The package type-checks: ``mypy --strict src/edgesec`` reports no errors.

Configured in ``pyproject.toml`` (``[tool.mypy]``); mypy comes with the ``test``
extras, so the test is skipped only where mypy is not installed at all.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                reason="mypy is not installed (pip install -e '.[test]')")


def test_mypy_strict_reports_no_errors() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "src/edgesec"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert proc.returncode == 0 and not errors, (
        f"mypy --strict found {len(errors)} error(s):\n" + "\n".join(errors[:50])
        + proc.stderr[-2000:])
