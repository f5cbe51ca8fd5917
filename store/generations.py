"""In-memory change counters that let the index serve pre-rendered pages without queries.

Every committed change to a namespace's distributions bumps that namespace's counter, and
every settings change bumps a global one. A cached page remembers the counters it was
rendered under; a reader takes the counters *before* it reads the catalog, so a page
rendered during a concurrent write is stored under the old counters and is re-rendered on
the next request. Counters start at zero with the process, like the cache they guard.
"""

from __future__ import annotations

import threading
from collections import defaultdict


class Generations:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._namespaces: defaultdict[str, int] = defaultdict(int)
        self.settings = 0
        self.created = 0
        """Bumped when namespaces are created: the chain of a namespace that did not exist
        (read as its nearest existing ancestor's) may now start with it."""

    def bump(self, namespace: str) -> None:
        """Call after the change's transaction has committed."""
        with self._lock:
            self._namespaces[namespace] += 1

    def bump_settings(self) -> None:
        with self._lock:
            self.settings += 1

    def bump_created(self) -> None:
        with self._lock:
            self.created += 1

    def stamp(self, chain: list[str]) -> tuple[int, ...]:
        """The counters a page over ``chain`` depends on."""
        return (self.settings, *(self._namespaces[ns] for ns in chain))
