"""Rich consoles for tables: a terminal's width, or a wide one when the output is a pipe or a log."""
from __future__ import annotations

from rich.console import Console


def table_console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=220)
