"""How the CLI shows things: JSON for scripts, tables and a progress line for people.

The standard library only: a base install (the client) has no rich, and a command's
start-up time counts (``packyard/entry.py``).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from packyard.client import Client

CHUNK = 1024 * 1024


class Console:
    """Lines to a stream; ``is_terminal`` says whether a person is probably reading."""

    def __init__(self, stderr: bool = False) -> None:
        self.stderr = stderr

    @property
    def file(self) -> IO[str]:
        return sys.stderr if self.stderr else sys.stdout

    @property
    def is_terminal(self) -> bool:
        return self.file.isatty()

    def print(self, message: object = "") -> None:
        print(message, file=self.file, flush=True)


console = Console()
err = Console(stderr=True)


def client() -> Client:
    """The client the command talks through (PACKYARD_URL, PACKYARD_TOKEN): imported here,
    not at the top, so ``--help`` and local commands never import it."""
    from packyard.client import Client

    return Client()


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def table(rows: Iterable[dict], columns: list[str], title: str | None = None) -> None:
    """Rows as a box-drawn table of whole cells (for scripts: ``--json``). Whole lines off a
    terminal too: nothing is cut to an assumed width."""
    cells = [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def cells_line(values: list[str], bar: str) -> str:
        return bar + bar.join(f" {v.ljust(w)} " for v, w in zip(values, widths, strict=True)) + bar

    out = []
    if title:
        out.append(title.center(sum(widths) + 3 * len(widths) + 1).rstrip())
    out.append(line("┏", "━", "┳", "┓"))
    out.append(cells_line(columns, "┃"))
    out.append(line("┡", "━", "╇", "┩"))
    out.extend(cells_line(r, "│") for r in cells)
    out.append(line("└", "─", "┴", "┘"))
    console.print("\n".join(out))


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@contextmanager
def transfer(description: str, total: int | None, unit: str = "bytes") -> Iterator[Any]:
    """A progress line on stderr when it is a terminal (erased at the end); a no-op
    ``advance(n)`` otherwise."""
    if not err.is_terminal:
        yield lambda n: None
        return
    done, last = 0, 0.0
    width = shutil.get_terminal_size().columns

    def show() -> None:
        amount = _size(done) if unit == "bytes" else str(done)
        if total:
            amount += f" / {_size(total) if unit == 'bytes' else total}"
        sys.stderr.write(f"\r{description} {amount}"[:width].ljust(width - 1))
        sys.stderr.flush()

    def advance(n: int) -> None:
        nonlocal done, last
        done += n
        if time.monotonic() - last > 0.1:
            last = time.monotonic()
            show()

    try:
        show()
        yield advance
    finally:
        sys.stderr.write("\r" + " " * (width - 1) + "\r")
        sys.stderr.flush()


def read_chunks(stream: IO[bytes], advance: Any) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        advance(len(chunk))
        yield chunk


def save_stream(chunks: Iterable[bytes], target: Path, description: str, total: int | None) -> None:
    """Write a download to ``target`` whole or not at all: into a temporary file beside it,
    renamed over it only once every byte has arrived (an interrupted ``get`` or ``export``
    leaves no half file under the name a later step would trust)."""
    import os
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(fd, 0o666 & ~umask)  # as open() would make it: mkstemp's 0600 is for the temporary name only
    try:
        with os.fdopen(fd, "wb") as out, transfer(description, total) as advance:
            for chunk in chunks:
                out.write(chunk)
                advance(len(chunk))
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def options(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Several click options as one decorator, for commands that share them."""

    def apply(f: Any) -> Any:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply
