"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgesec.config import Settings
from registry_world import World


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[[Settings], World]]:
    """Registries over real SQLite files (see ``registry_world``), closed after the test."""
    made: list[World] = []

    def make(cfg: Settings) -> World:
        w = World(tmp_path / str(len(made)), cfg)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
