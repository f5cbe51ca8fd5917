"""One local bare mirror per repository URL and credential, fetched incrementally, locked while in use.

The mirror's folder name is a hash of the URL without credentials and of a digest of the
credential used (none, a token, a key), and the URL is passed to each fetch rather than
saved as a remote, so no token is ever written to disk. Keying by credential means a sync
only ever reads objects its own credential fetched: a namespace without the token of a
private repository gets a mirror of its own, whose first fetch fails as the remote answers
it — it can never be served commits another namespace's token fetched (nor can a partial
view, such as anonymous access to some refs, reach objects of a fuller one). Every sync
also fetches before it reads, so the remote is asked, with the caller's credential, each
time. An
exclusive ``flock`` on a lock file beside the mirror serialises syncs of one repository
(threads and processes alike), so two concurrent fetches never corrupt it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import git
from packyard.store.errors import NotFound, RemoteFailed
from packyard.sync.credentials import GitAuth, redact_url
from packyard.sync.remote import public_detail

GIT_TIMEOUT = 600
_SHA = re.compile(r"[0-9a-f]{7,40}")


class Mirror:
    def __init__(self, path: Path, url: str, auth: GitAuth) -> None:
        self.path = path
        self.url = url
        self.shown = redact_url(url)
        """The URL as messages name it: no credential-looking query value."""
        self.auth = auth
        self.repo = git.Repo(path)

    def git(self, *args: str, env: dict | None = None) -> str:
        """Run git in the mirror; failures come back redacted as RemoteFailed."""
        try:
            return self.repo.git.execute(
                ["git", *args],
                env={**os.environ, **self.auth.env, **(env or {})},
                kill_after_timeout=GIT_TIMEOUT,
            )
        except git.GitCommandError as exc:
            detail = public_detail(self.auth.redact(str(exc.stderr or exc).strip()), self.shown)
            raise RemoteFailed(f"git {args[0]} failed for {self.shown}: {detail}") from None

    def fetch(self) -> None:
        self.git("fetch", "--prune", "--force", self.url, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")

    def default_branch(self) -> str:
        out = self.git("ls-remote", "--symref", self.url, "HEAD")
        for line in out.splitlines():
            if line.startswith("ref: ") and line.endswith("\tHEAD"):
                return line[5:].split("\t")[0].removeprefix("refs/heads/")
        raise NotFound(f"{self.shown} has no default branch; name a ref")

    def resolve(self, ref: str | None) -> tuple[str, str]:
        """(ref name, commit sha) for a branch, tag or commit; fetches first."""
        self.fetch()
        name = ref or self.default_branch()
        for candidate in (f"refs/heads/{name}", f"refs/tags/{name}"):
            try:
                return name, self.repo.git.rev_parse("--verify", "--quiet", f"{candidate}^{{commit}}")
            except git.GitCommandError:
                continue
        if _SHA.fullmatch(name):
            try:
                return name, self.repo.git.rev_parse("--verify", "--quiet", f"{name}^{{commit}}")
            except git.GitCommandError:
                try:
                    self.git("fetch", self.url, name)
                    return name, self.repo.git.rev_parse("--verify", "--quiet", f"{name}^{{commit}}")
                except (RemoteFailed, git.GitCommandError):
                    pass
        raise NotFound(f"ref {name!r} is not a branch, tag or commit of {self.shown}")


class Mirrors:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, url: str, identity: str = "") -> Path:
        # "v2": mirrors of earlier versions were keyed by URL alone and may hold objects
        # fetched with someone's token, so they are never reused (delete them at will)
        key = f"v2\0{url}\0{identity}"
        return self.root / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".git")

    @contextmanager
    def open(self, url: str, auth: GitAuth) -> Iterator[Mirror]:
        """The mirror of ``url`` (created on first use), held exclusively while in use."""
        path = self.path_for(url, auth.identity)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not (path / "HEAD").exists():
                    git.Repo.init(path, bare=True)
                yield Mirror(path, url, auth)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
