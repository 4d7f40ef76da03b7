"""``edgesec run`` starts without the CLI framework; everything else still reaches typer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgesec.runcmd import parse_run


@pytest.mark.parametrize(("argv", "config", "debug", "fmt"), [
    (["-c", "a.ini"], "a.ini", 0, "text"),
    (["--config", "a.ini", "-ddd"], "a.ini", 3, "text"),
    (["-c", "a.ini", "-d", "-d", "--log-format", "json"], "a.ini", 2, "json"),
    (["--log-format=json", "-ca.ini"], "a.ini", 0, "json"),
])
def test_run_options(argv: list[str], config: str, debug: int, fmt: str) -> None:
    args = parse_run(argv)
    assert args is not None
    assert (args.config, args.debug, args.log_format) == (Path(config), debug, fmt)


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["-h"], ["-c"], ["-c", "a.ini", "extra"], ["-c", "a.ini", "--frob"],
    ["-c", "a.ini", "--log"],  # no abbreviations: typer would not take them either
])
def test_anything_else_goes_to_typer(argv: list[str]) -> None:
    assert parse_run(argv) is None


def _importtime(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "edgesec.cli", *argv],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def _imported(stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip().split(".")[0]
            for line in stderr.splitlines() if line.startswith("import time:")}


def test_run_does_not_import_typer_rich_or_pydantic(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ini"
    bad.write_text('[system]\nexecAp = "perhaps"\n')
    out = _importtime(tmp_path, "run", "-c", str(bad))
    assert out.returncode == 2 and "execAp" in out.stderr and "Traceback" not in out.stderr
    assert not _imported(out.stderr) & {"typer", "rich", "pydantic", "click"}
    # the same command with --help is typer's
    helped = _importtime(tmp_path, "run", "--help")
    assert helped.returncode == 0 and "--log-format" in helped.stdout
    assert "typer" in _imported(helped.stderr)


def test_every_log_setup_rate_limits_repeated_lines() -> None:
    """`edgesec run` (runcmd) and the CLI share one set-up, and it installs the limit."""
    import logging

    from edgesec.logsetup import setup_logging
    from edgesec.ratelog import RateLimitFilter

    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        setup_logging(logging.INFO)
        assert root.handlers and all(
            any(isinstance(f, RateLimitFilter) for f in h.filters) for h in root.handlers)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
