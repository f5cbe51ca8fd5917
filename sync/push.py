"""Push back: commit a namespace's files into a git branch (Kestra's PushNamespaceFiles).

The branch is fetched into a fresh temporary repository, the namespace's files are written
under the chosen folder, and the difference is committed and pushed — or, on a dry run,
only reported. Paths with a ``.git`` segment are refused: written into a work tree they
could plant hooks or config that git would then run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import git
from packyard.store.core import Store
from packyard.store.errors import InvalidInput, RemoteFailed
from packyard.store.names import validate_path
from packyard.sync.credentials import CredentialRef, GitAuth, git_auth, redact_url
from packyard.sync.mirror import GIT_TIMEOUT
from packyard.sync.remote import RemotePolicy, public_detail

AUTHOR = {"GIT_AUTHOR_NAME": "packyard", "GIT_AUTHOR_EMAIL": "packyard@localhost"}


@dataclass
class PushResult:
    namespace: str
    url: str
    branch: str
    dry_run: bool
    changes: list[dict] = field(default_factory=list)
    commit: str | None = None
    pushed: bool = False

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def _git(repo: git.Repo, auth: GitAuth, url: str, *args: str, env: dict | None = None) -> str:
    try:
        return repo.git.execute(
            ["git", *args], env={**os.environ, **auth.env, **(env or {})}, kill_after_timeout=GIT_TIMEOUT
        )
    except git.GitCommandError as exc:
        raise RemoteFailed(
            f"git {args[0]} failed for {redact_url(url)}: "
            f"{public_detail(auth.redact(str(exc.stderr or exc).strip()), redact_url(url))}"
        ) from None


def check_branch(branch: str) -> str:
    """Refuse what git would not take as a branch name (``main:refs/heads/x`` is a refspec, and
    pushing it would write another ref): git's own ``check-ref-format`` rules, plus the names it
    reserves (``HEAD``, ``@``) and a leading ``-`` that would read as an option."""
    ok = bool(branch) and not branch.startswith("-") and branch not in ("HEAD", "@")
    if ok:
        try:
            git.Git().execute(["git", "check-ref-format", f"refs/heads/{branch}"])
        except git.GitCommandError:
            ok = False
    if not ok:
        raise InvalidInput(f"{branch!r} is not a valid branch name (see git check-ref-format)")
    return branch


def push(
    store: Store,
    namespace: str,
    url: str,
    *,
    branch: str,
    path: str = "",
    prefix: str = "",
    message: str | None = None,
    delete: bool = False,
    dry_run: bool = False,
    credential: CredentialRef | None = None,
    secrets_dir: Path | None = None,
    credential_envs: tuple[str, ...] = (),
    actor: str = "packyard",
    policy: RemotePolicy | None = None,
) -> PushResult:
    target, protocols, config = (policy or RemotePolicy()).check(url)
    path = path.strip("/")
    if path:
        validate_path(path)
    check_branch(branch)
    files = store.files.list(namespace, f"{prefix.strip('/')}/" if prefix.strip("/") else "")
    for f in files:
        # git treats .git case-insensitively (.GIT, .Git); on such a file system it is the same folder
        if any(segment.lower() == ".git" for segment in f.path.split("/")):
            raise InvalidInput(f"{f.path} has a '.git' segment and cannot be pushed into a repository")
    result = PushResult(namespace, redact_url(url), branch, dry_run)
    work = Path(tempfile.mkdtemp(prefix="packyard-push-"))
    try:
        with git_auth(target, credential, secrets_dir, credential_envs, protocols, config, namespace=namespace) as (
            clean,
            auth,
        ):
            repo = git.Repo.init(work)
            remote_heads = _git(repo, auth, url, "ls-remote", "--heads", clean, f"refs/heads/{branch}")
            if remote_heads.strip():
                _git(repo, auth, url, "fetch", "--depth=1", clean, f"refs/heads/{branch}")
                repo.git.checkout("-B", branch, "FETCH_HEAD")
            else:
                repo.git.checkout("--orphan", branch)
            root = work / path if path else work
            strip = len(prefix.strip("/")) + 1 if prefix.strip("/") else 0
            wanted = set()
            for f in files:
                relative = f.path[strip:]
                target = root / relative
                wanted.add(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                with store.files.open(f) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1024 * 1024)
            if delete and root.exists():
                for existing in list(root.rglob("*")):
                    if existing.is_file() and ".git" not in existing.relative_to(work).parts and existing not in wanted:
                        existing.unlink()
            root.mkdir(parents=True, exist_ok=True)  # git refuses a pathspec that names nothing
            try:
                repo.git.add("-A", "--", path or ".")
            except git.GitCommandError as exc:
                raise InvalidInput(f"git refuses the namespace's files: {str(exc.stderr or '').strip()}") from None
            # -z: names exactly as they are (no quoting of non-ASCII or special characters)
            status = repo.git.diff("--cached", "--name-status", "--no-renames", "-z").split("\0")
            for code, name in zip(status[0::2], status[1::2], strict=False):
                result.changes.append(
                    {"status": {"A": "added", "M": "updated", "D": "deleted"}.get(code, code), "path": name}
                )
            if dry_run or not result.changes:
                return result
            env = {
                **AUTHOR,
                "GIT_COMMITTER_NAME": AUTHOR["GIT_AUTHOR_NAME"],
                "GIT_COMMITTER_EMAIL": AUTHOR["GIT_AUTHOR_EMAIL"],
            }
            text = message or f"packyard: sync namespace {namespace} ({actor})"
            _git(repo, auth, url, "commit", "-q", "-m", text, env=env)
            result.commit = repo.head.commit.hexsha
            _git(repo, auth, url, "push", clean, f"HEAD:refs/heads/{branch}")
            result.pushed = True
            return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
