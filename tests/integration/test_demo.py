"""`make demo`'s story as an end-to-end test: every step must pass, and nothing
of the lab may be left afterwards."""

from __future__ import annotations

import io
import secrets

import pytest
from rich.console import Console

from edgesec import demo
from edgesec.lab import lab as lab_mod
from edgesec.lab.state import state_root

pytestmark = pytest.mark.integration


def test_demo_story_passes_every_step() -> None:
    prefix = "ld" + secrets.token_hex(3)
    out = io.StringIO()
    try:
        results = demo.run_story(prefix, Console(file=out, width=120))
    finally:
        lab_mod.down(prefix)
    text = out.getvalue()
    titles = [r.title for r in results]
    # the whole story ran (lab up, every step, teardown) ...
    assert titles == [t for t, _ in demo.STEPS] + ["The lab is removed"], text
    # ... and every step held
    failed = [f"{r.title}: {r.detail}" for r in results if not r.ok]
    assert failed == [], text
    assert "✗" not in text and text.count("✓") == len(results)
    assert lab_mod.leftovers(prefix) == []
    assert not (state_root() / prefix).exists()


def test_demo_reports_a_broken_step_instead_of_crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A part that raises makes its step ✗ with the reason; the story goes on."""
    prefix = "ld" + secrets.token_hex(3)

    def broken(_story: demo.Story) -> str:
        raise KeyError("capture service missing")

    steps = list(demo.STEPS)
    steps[2] = (steps[2][0], broken)
    monkeypatch.setattr(demo, "STEPS", tuple(steps[:4]))
    out = io.StringIO()
    try:
        results = demo.run_story(prefix, Console(file=out, width=120))
    finally:
        lab_mod.down(prefix)
    assert [r.ok for r in results] == [True, True, False, True, True], out.getvalue()
    assert "capture service missing" in results[2].detail
    assert lab_mod.leftovers(prefix) == []
