"""One daemon per state: the locks, their message, the open-directory check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgesec.config import parse_settings
from edgesec.statelock import StateLocked, acquire, open_directories, state_paths


def test_a_held_state_is_refused_with_the_holder_and_released_on_demand(tmp_path: Path) -> None:
    db = tmp_path / "edgesec.sqlite"
    first = acquire([("[system] connectionDbPath", db)])
    try:
        with pytest.raises(StateLocked, match=rf"connectionDbPath '{db}'.*pid {os.getpid()}"):
            acquire([("[supervisor] supervisorControlPath", tmp_path / "s.sock"),
                     ("[system] connectionDbPath", db)])
        # the refused attempt released what it had taken on the way
        acquire([("[supervisor] supervisorControlPath", tmp_path / "s.sock")]).release()
        assert not db.exists()  # nothing but the lock file is touched
        assert (tmp_path / "edgesec.sqlite.lock").read_text() == f"{os.getpid()}\n"
    finally:
        first.release()
    acquire([("[system] connectionDbPath", db)]).release()


def test_state_paths_follow_the_config() -> None:
    labels = [label for label, _ in state_paths(parse_settings(""))]
    assert labels == ["[system] connectionDbPath", "[system] cryptDbPath",
                      "[supervisor] supervisorControlPath"]
    off = state_paths(parse_settings("[system]\nexecCrypt = false\n"))
    assert [label for label, _ in off] == ["[system] connectionDbPath",
                                          "[supervisor] supervisorControlPath"]


def test_open_directories_are_found(tmp_path: Path) -> None:
    private, shared = tmp_path / "private", tmp_path / "shared"
    private.mkdir(mode=0o700)
    shared.mkdir()
    shared.chmod(0o755)
    found = open_directories([private / "a.sqlite", shared / "b.sqlite", shared / "c.sqlite"])
    assert found == [(shared, 0o755)]
