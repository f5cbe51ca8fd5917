"""How the CLI shows things: JSON for scripts, rich tables and progress bars for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from packyard.client import Client
from packyard.settings import get_settings

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
CHUNK = 1024 * 1024


def client() -> Client:
    return Client.from_settings(get_settings())


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def table(rows: Iterable[dict], columns: list[str], title: str | None = None) -> None:
    t = Table(title=title)
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(t)


@contextmanager
def transfer(description: str, total: int | None) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal; a no-op advance() otherwise."""
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
