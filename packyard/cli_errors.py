"""The one table that turns packyard's exceptions into CLI exit codes and one-line messages."""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console
from rich.text import Text

from packyard.store import errors

EXIT: dict[type[errors.PackyardError], int] = {
    errors.InvalidInput: 2,
    errors.NotFound: 3,
    errors.Conflict: 4,
    errors.TooLarge: 5,
    errors.Unauthenticated: 6,
    errors.Forbidden: 7,
    errors.BackendUnavailable: 8,
    errors.RemoteFailed: 9,
}

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def exit_code(exc: errors.PackyardError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT:
            return EXIT[cls]
    return 1


def run(entry: Callable[[], object]) -> None:
    """Run the CLI; a PackyardError becomes one 'error: ...' line and its exit code."""
    try:
        entry()
    except errors.PackyardError as exc:
        _stderr.print(Text.assemble(("error: ", "bold red"), exc.message))
        sys.exit(exit_code(exc))
