"""The one table that turns packyard's exceptions into CLI exit codes and one-line messages.

The standard library only: a base install (the client) has no rich.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

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
    errors.NotInstalled: 10,
    errors.QuotaExceeded: 11,
}


def exit_code(exc: errors.PackyardError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT:
            return EXIT[cls]
    return 1


def error_line(message: str) -> str:
    """``error: message`` on one line, the prefix in bold red on a terminal."""
    prefix = "\x1b[1;31merror:\x1b[0m " if sys.stderr.isatty() else "error: "
    return prefix + message


def run(entry: Callable[[], object]) -> None:
    """Run the CLI; a PackyardError becomes one 'error: ...' line and its exit code."""
    try:
        entry()
    except errors.PackyardError as exc:
        print(error_line(exc.message), file=sys.stderr, flush=True)
        sys.exit(exit_code(exc))
