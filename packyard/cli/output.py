"""How the CLI shows things: JSON for scripts, rich tables and progress bars for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from packyard.client import Client

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
CHUNK = 1024 * 1024


def client() -> Client:
    # imported here, not at the top: httpx and pydantic-settings are most of what a command
    # costs to start, and ``--help`` (or a local command) never needs them
    from packyard.client import Client
    from packyard.settings import get_settings

    return Client.from_settings(get_settings())


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


UNLIMITED = 1 << 20
"""Off a terminal (a pipe, a file, a CI log) nothing knows the width: rich would assume 80
columns and cut every cell to fit, so a table is laid out as wide as its longest cell."""


def table(rows: Iterable[dict], columns: list[str], title: str | None = None) -> None:
    """Rows as a table, fitted to a terminal; off a terminal, whole lines (for scripts: ``--json``)."""
    from rich.table import Table

    t = Table(title=title)
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    if console.is_terminal:
        console.print(t)
    else:  # print(width=) cannot widen past the console's width: this console is as wide as needed
        Console(file=sys.stdout, width=UNLIMITED, highlight=False, no_color=True).print(t, crop=False)


@contextmanager
def transfer(description: str, total: int | None) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal; a no-op advance() otherwise."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def read_chunks(stream: IO[bytes], advance: Any) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        advance(len(chunk))
        yield chunk
