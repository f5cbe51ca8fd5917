"""A sync plan: every path marked added, updated, deleted, unchanged or skipped.

The plan is computed from the mirror and the namespace's current heads without writing
anything, so a dry run is just a plan. A file whose git blob id equals the one recorded
beside its head is unchanged without reading its bytes; only the others are hashed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from packyard.store.errors import InvalidInput, InvalidName, NotFound, TooLarge
from packyard.store.names import validate_path
from packyard.sync.mirror import Mirror
from packyard.sync.spec import IGNORE_FILE, Filter, SyncSpec

STATUSES = ("added", "updated", "deleted", "unchanged", "skipped")


@dataclass
class RepoFile:
    path: str
    """Namespace path (prefix applied)."""
    git_blob: str
    size: int


@dataclass
class PlanEntry:
    path: str
    status: str
    size: int | None = None
    git_blob: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Plan:
    ref: str
    commit: str
    entries: list[PlanEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for entry in self.entries:
            counts[entry.status] += 1
        return counts


def list_tree(mirror: Mirror, commit: str, spec: SyncSpec) -> tuple[list[RepoFile], list[PlanEntry], list[str], Filter]:
    """The files the spec selects at ``commit``, the skipped entries, warnings, and the filter
    (globs plus ``.packyardignore``) that also decides which namespace files a sync governs."""
    treeish = f"{commit}:{spec.path}" if spec.path else f"{commit}^{{tree}}"
    if spec.path:
        try:
            kind = mirror.repo.git.cat_file("-t", treeish)
        except Exception:  # noqa: BLE001 - git says "does not exist" in several ways
            kind = None
        if kind != "tree":
            raise NotFound(f"the repository has no folder {spec.path!r} at {commit[:12]}")
    out = mirror.repo.git.execute(["git", "ls-tree", "-r", "-l", "-z", treeish], strip_newline_in_stdout=False)
    listed: list[tuple[str, str, str, str, str]] = []
    ignore_lines: list[str] = []
    for record in out.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, kind, sha, size = meta.split()
        listed.append((mode, kind, sha, size, path))
        if path == IGNORE_FILE and kind == "blob":
            ignore_lines = mirror.repo.git.cat_file("-p", sha).splitlines()
    selector = Filter(spec.include, spec.exclude, ignore_lines)
    files: list[RepoFile] = []
    skipped: list[PlanEntry] = []
    warnings: list[str] = []
    for mode, kind, sha, size, path in listed:
        if not selector.selects(path):
            continue
        target = spec.target(path)
        if kind == "commit":
            skipped.append(PlanEntry(target, "skipped", reason="submodule"))
            warnings.append(f"skipped submodule {path}")
            continue
        if mode == "120000":
            skipped.append(PlanEntry(target, "skipped", reason="symbolic link"))
            warnings.append(f"skipped symbolic link {path} (links are never followed)")
            continue
        try:
            validate_path(target)
        except InvalidName as exc:
            raise InvalidInput(f"repository path {path!r} cannot be a namespace path: {exc}") from exc
        files.append(RepoFile(target, sha, int(size)))
    return files, skipped, warnings, selector


def check_sizes(files: list[RepoFile], limit: int | None) -> None:
    if limit is None:
        return
    for f in files:
        if f.size > limit:
            raise TooLarge(f"{f.path} is {f.size} bytes, over the limit of {limit}; exclude it or raise the limit")


def deletions(
    spec: SyncSpec, heads: dict[str, dict], present: set[str], selector: Filter | None = None
) -> list[PlanEntry]:
    """Namespace files under the target prefix that the repository no longer has."""
    if not spec.delete:
        return []
    folder = f"{spec.prefix}/" if spec.prefix else ""
    out = []
    for path in sorted(heads):
        if path in present:
            continue
        relative = path[len(folder) :]
        if selector is not None and not selector.selects(relative):
            continue
        out.append(PlanEntry(path, "deleted", size=heads[path]["size"]))
    return out
