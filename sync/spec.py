"""What a sync does: the repository, the ref, which folder, where it lands, which files."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field

from packyard.store.errors import InvalidInput
from packyard.store.names import validate_path
from packyard.sync.credentials import CredentialRef, check_url, split_userinfo

IGNORE_FILE = ".packyardignore"


@dataclass(frozen=True)
class SyncSpec:
    url: str
    ref: str | None = None
    path: str = ""
    """Sub-folder of the repository to sync (default: the root)."""
    prefix: str = ""
    """Folder inside the namespace the files land under (default: the root)."""
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    delete: bool = False
    credential: CredentialRef | None = None

    def __post_init__(self) -> None:
        check_url(self.url)
        if self.path:
            validate_path(self.path.strip("/"))
        if self.prefix:
            validate_path(self.prefix.strip("/"))
        object.__setattr__(self, "path", self.path.strip("/"))
        object.__setattr__(self, "prefix", self.prefix.strip("/"))

    @classmethod
    def from_dict(cls, data: dict) -> SyncSpec:
        data = dict(data)
        credential = data.pop("credential", None)
        return cls(**data, credential=CredentialRef(**credential) if credential else None)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["credential"] = self.credential.to_dict() if self.credential else None
        return data

    def without_secrets(self) -> SyncSpec:
        """The spec with any ``user:token@`` removed from the URL, for storing and showing."""
        clean, user, password = split_userinfo(self.url)
        if user or password:
            return SyncSpec(**{**self.__dict__, "url": clean})
        return self

    def target(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative


class Filter:
    """include/exclude globs plus ``.packyardignore`` lines, matched on repository-relative paths.

    Patterns follow the familiar gitignore shapes: ``*.pyc`` (any file of that name at any
    depth), ``docs/`` (a folder and all below it), ``/build`` (anchored at the synced
    folder), ``!keep.txt`` (re-include); the last matching ignore line wins.
    """

    def __init__(self, include: list[str], exclude: list[str], ignore_lines: list[str]) -> None:
        for pattern in [*include, *exclude]:
            if not pattern or pattern.strip() != pattern:
                raise InvalidInput(f"{pattern!r} is not a usable glob")
        self.include = include
        self.exclude = exclude
        self.ignore = [line.strip() for line in ignore_lines if line.strip() and not line.lstrip().startswith("#")]

    @staticmethod
    def _match(pattern: str, path: str) -> bool:
        folder = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        anchored = pattern.startswith("/") or "/" in pattern
        pattern = pattern.lstrip("/")
        parts = path.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))] if anchored else parts
        if folder:
            candidates = candidates[:-1]  # a folder pattern never matches the file itself
        return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)

    def selects(self, path: str) -> bool:
        if path == IGNORE_FILE:
            return False
        if self.include and not any(fnmatch.fnmatchcase(path, p) or self._match(p, path) for p in self.include):
            return False
        if any(fnmatch.fnmatchcase(path, p) or self._match(p, path) for p in self.exclude):
            return False
        ignored = False
        for line in self.ignore:
            negated = line.startswith("!")
            if self._match(line[1:] if negated else line, path):
                ignored = not negated
        return not ignored
