"""Terminal output for the lab and the demo: styled, but never reinterpreted.

A rich ``Console`` by default turns ``[...]`` into markup and ``:cd:`` into an
emoji, so a MAC such as ``02:ab:cd:00:00:01`` could come out as
``02🆎💿00:00:01``.  :func:`console` makes one with markup, emoji and
highlighting off (style goes through ``style=`` arguments, never through text),
and, when stdout is not a terminal (a log, CI, a pipe to grep), with no hard
wrapping: a line comes out as one line, however long.
"""

from __future__ import annotations

import sys
from typing import IO

from rich.console import Console

PIPE_WIDTH = 4096  # columns assumed when not a terminal (tables are not expanded to it)


def console(file: IO[str] | None = None) -> Console:
    """A Console that prints user data literally and wraps only on a terminal."""
    stream = file or sys.stdout
    tty = stream.isatty()
    return Console(file=stream, markup=False, emoji=False, highlight=False,
                   soft_wrap=not tty, width=None if tty else PIPE_WIDTH)
