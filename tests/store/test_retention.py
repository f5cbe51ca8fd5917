"""Retention policies (issue 17, item 1): each policy's dry run is exactly what it then removes,
the newest release and the head revision survive every policy, removals are audited, and
the collector then frees the blobs nothing references (item 2) with fsck finding no damage.

On SQLite with local and S3 blobs and on PostgreSQL (``catalog_url``). Age is tested by
running a pass at a later clock, as the server would days from now.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from packyard.store.blobs.base import BlobStore
from packyard.store.core import Store
from packyard.store.errors import InvalidInput

from tests.support.dists import make_wheel

ME = "tester"
DAY = 86400.0


@pytest.fixture
def store(tmp_path: Path, blob_store: BlobStore, catalog_url: str | None) -> Store:
    store = Store(tmp_path / "data", blob_store, database_url=catalog_url)
    for ns in ("company", "company.sales", "company.sales.emea", "other"):
        store.namespaces.create(ns, ME)
    return store


@pytest.fixture
def cstore(tmp_path: Path, catalog_url: str | None) -> Store:
    """For what only the catalog decides: both engines, local blobs."""
    from packyard.store.blobs import LocalBlobStore

    store = Store(tmp_path / "data", LocalBlobStore(tmp_path / "blobs"), database_url=catalog_url)
    store.namespaces.create("company", ME)
    return store


def upload(store: Store, tmp_path: Path, ns: str, project: str, version: str) -> str:
    path = make_wheel(tmp_path / "wheels" / ns, project, version)
    with path.open("rb") as stream:
        store.dists.add(ns, stream, path.name, uploader=ME)
    return path.name


def names(items: list[dict]) -> list[tuple[str, str, str]]:
    return sorted((i["kind"], i["namespace"], i["name"]) for i in items)


def dry_then_apply(store: Store, **kwargs: object) -> list[dict]:
    """A dry run, then the pass; they must agree, and a second dry run finds nothing left."""
    dry = store.retention.run(**kwargs)  # type: ignore[arg-type]
    done = store.retention.run(apply=True, **kwargs)  # type: ignore[arg-type]
    assert names(done.items) == names(dry.items)
    assert (done.frees, done.frees_count) == (dry.frees, dry.frees_count)
    assert store.retention.run(**kwargs).items == []  # type: ignore[arg-type]
    return done.items


def audited(store: Store, kind: str) -> list[dict]:
    return store.catalog.query("SELECT * FROM audit WHERE action = ? ORDER BY id", (f"retention.{kind}",))


def versions(store: Store, ns: str, project: str) -> set[str]:
    return {d.version for d in store.dists.list(ns, project)}


def test_releases_newest_n_prereleases_yanked_first_never_the_newest(store: Store, tmp_path: Path) -> None:
    for version in ("1.0", "1.1.dev1", "1.1.dev2", "1.1rc1", "1.1.dev3", "2.0.dev1"):
        upload(store, tmp_path, "company.sales", "etl", version)
    upload(store, tmp_path, "company.sales", "lonely", "0.1.dev0")
    upload(store, tmp_path, "company.sales.emea", "etl", "0.5.dev1")
    upload(store, tmp_path, "company.sales.emea", "etl", "0.6.dev1")
    upload(store, tmp_path, "other", "etl", "0.1.dev1")
    upload(store, tmp_path, "other", "etl", "0.2.dev1")
    store.dists.yank("company.sales", "etl", "1.1rc1", reason="broken", actor=ME)
    store.namespaces.update_settings("company", {"keep_releases": 4}, ME)  # inherited below
    store.namespaces.update_settings("company.sales.emea", {"keep_releases": "off"}, ME)

    # the four newest usable pre-releases stay; the yanked one goes first, though newer than two of them
    removed = dry_then_apply(store)
    assert names(removed) == [("dist", "company.sales", "etl-1.1rc1-py3-none-any.whl")]
    assert removed[0]["size"] > 0 and "yanked" in removed[0]["reason"]

    store.namespaces.update_settings("company", {"keep_releases": 0}, ME)
    removed = dry_then_apply(store)
    assert {i["version"] for i in removed} == {"1.1.dev1", "1.1.dev2", "1.1.dev3"}
    # the final release is outside the default pattern; 2.0.dev1 and lonely are their project's newest
    assert versions(store, "company.sales", "etl") == {"1.0", "2.0.dev1"}
    assert versions(store, "company.sales", "lonely") == {"0.1.dev0"}
    assert versions(store, "company.sales.emea", "etl") == {"0.5.dev1", "0.6.dev1"}  # "off" stops the inherited one
    assert versions(store, "other", "etl") == {"0.1.dev1", "0.2.dev1"}  # no policy at all
    assert len(audited(store, "dist")) == 4
    detail = json.loads(audited(store, "dist")[-1]["detail"])
    assert detail["name"].startswith("etl-1.1.dev") and detail["sha256"]

    # finals only when the pattern says so, by age; the newest survives even then
    store.namespaces.update_settings(
        "company", {"keep_release_pattern": "all", "keep_releases": None, "keep_release_days": 30}, ME
    )
    assert store.retention.run().items == []  # nothing is 30 days old yet
    later = time.time() + 31 * DAY
    removed = dry_then_apply(store, clock=later)
    # each setting is inherited on its own: emea's "off" was for keep_releases, not the age rule
    assert {(i["namespace"], i["version"]) for i in removed} == {
        ("company.sales", "1.0"),
        ("company.sales.emea", "0.5.dev1"),
    }
    assert versions(store, "company.sales", "etl") == {"2.0.dev1"}


def test_revisions_keep_the_last_n_and_the_head_also_of_a_tombstone(store: Store) -> None:
    for n in range(5):
        store.files.put("company.sales", "flow.py", io.BytesIO(b"v%d" % n), author=ME)
        store.files.put("company.sales", "gone.py", io.BytesIO(b"g%d" % n), author=ME)
    store.files.delete("company.sales", "gone.py", author=ME)
    store.files.put("other", "flow.py", io.BytesIO(b"v0"), author=ME)
    store.files.put("other", "flow.py", io.BytesIO(b"v1"), author=ME)
    store.namespaces.update_settings("company.sales", {"keep_revisions": 1}, ME)

    removed = dry_then_apply(store)
    assert names(removed) == sorted(
        [("revision", "company.sales", f"flow.py@{r}") for r in (1, 2, 3)]
        + [("revision", "company.sales", f"gone.py@{r}") for r in (1, 2, 3, 4)]
    )
    assert [r.revision for r in store.files.history("company.sales", "flow.py")] == [4, 5]
    assert [r.revision for r in store.files.history("company.sales", "gone.py")] == [5, 6]  # tombstone + one
    head = store.files.get("company.sales", "flow.py")
    assert store.files.open(head).read() == b"v4"
    restored = store.files.restore("company.sales", "gone.py", 5, author=ME)  # what is kept still restores
    assert restored.revision.revision == 7
    assert len(store.files.history("other", "flow.py")) == 2

    # by age only: young revisions stay, then all but the head go
    store.namespaces.update_settings("company.sales", {"keep_revisions": None, "keep_revision_days": 7}, ME)
    assert store.retention.run().items == []
    removed = dry_then_apply(store, clock=time.time() + 8 * DAY)
    assert len(removed) == 3  # flow.py@4, gone.py@5, gone.py@6
    assert [r.revision for r in store.files.history("company.sales", "flow.py")] == [5]
    assert [r.revision for r in store.files.history("company.sales", "gone.py")] == [7]
    assert len(audited(store, "revision")) == 10

    # the collector frees the blobs nothing references now, and fsck finds no damage
    report = store.collector.collect(0)
    assert not report.damaged and report.removed.count == 6  # v2, v3, g0-g3: other keeps v0 and v1
    assert store.files.open(store.files.get("company.sales", "flow.py")).read() == b"v4"


def test_builds_mirrored_files_bundles_and_resolutions_by_age_and_last_use(store: Store) -> None:
    now = time.time()
    log = store.blobs.put(io.BytesIO(b"a build log"))
    failed_log = store.blobs.put(io.BytesIO(b"a failed build's log"))
    mirrored = store.blobs.put(io.BytesIO(b"a wheel from upstream"))
    with store.catalog.write() as db:
        for build_id, state, sha in (
            (1, "succeeded", log.sha256),
            (2, "failed", failed_log.sha256),
            (3, "running", None),
        ):
            db.insert(
                "builds",
                {"id": build_id, "namespace": "company.sales", "path": "etl", "publish_to": "company.sales",
                 "key": f"k{build_id}", "state": state, "snapshot": "[]", "settings": "{}", "created": "2026-01-01Z",
                 "finished": None if state == "running" else "2026-01-01T00:00:00.000000Z", "log_sha256": sha},
            )  # fmt: skip
        db.insert(
            "upstream_files",
            {"upstream": "https://pypi.org/simple/", "filename": "six-1.0-py3-none-any.whl", "url": "https://x/six",
             "sha256": mirrored.sha256, "size": mirrored.size, "fetched": "2026-01-01T00:00:00.000000Z"},
        )  # fmt: skip
    store.namespaces.update_settings("company", {"upstream": "https://pypi.org/simple/"}, ME)
    used_bundle = store.bundles.put("a" * 64, io.BytesIO(bundle_bytes(b"1")), namespace="company.sales", actor=ME)[0]
    idle_bundle = store.bundles.put("b" * 64, io.BytesIO(bundle_bytes(b"2")), namespace="company.sales", actor=ME)[0]
    row = {"namespace": "company.sales", "key": "c" * 64, "state": store.index_state("company.sales"),
           "lock": "a==1 --hash=sha256:00\n", "env_key": "d" * 64, "python": "3.11", "platform": "linux",
           "requirements": ["a"]}  # fmt: skip
    store.resolutions.put(row, store.index_state("company.sales"), ME)
    settings = {"keep_build_log_days": 1, "keep_mirrored_days": 1, "keep_bundle_days": 1}
    store.namespaces.update_settings("company", settings, ME)

    # a use recorded now is what counts for the bundle asked for (not its creation)
    store.bundles.nearest("a" * 64, ["company.sales"])
    assert store.touches.flush() == 1
    with store.catalog.write() as db:  # as if it was used again three days from now
        db.execute("UPDATE last_used SET at = ? WHERE kind = 'bundle'", (now + 3 * DAY,))

    plan = store.retention.run(clock=now + 2 * DAY)
    assert names(plan.items) == [
        ("build", "company.sales", "build 2"),
        ("build_log", "company.sales", "build 1 log"),
        ("bundle", "company.sales", idle_bundle["key"]),
        ("mirrored", "company", "six-1.0-py3-none-any.whl"),
        ("resolution", "company.sales", "c" * 64),
    ]
    expected = log.size + failed_log.size + mirrored.size + idle_bundle["size"]
    assert (plan.frees_count, plan.frees) == (4, expected)
    dry_then_apply(store, clock=now + 2 * DAY)
    assert [b["id"] for b in store.builds.list("company.sales")] == [3, 1]
    assert store.builds.get(1)["log_sha256"] is None
    assert store.catalog.query("SELECT key FROM bundles") == [{"key": used_bundle["key"]}]
    assert store.catalog.query("SELECT * FROM resolutions") == []
    assert store.catalog.query("SELECT * FROM resolution_files") == []
    assert store.catalog.query("SELECT * FROM upstream_files") == []
    report = store.collector.collect(0)
    assert not report.damaged
    for gone in (log, failed_log, mirrored):
        assert not store.blobs.exists(gone.sha256)
    assert store.blobs.exists(used_bundle["sha256"])


def bundle_bytes(salt: bytes) -> bytes:
    import tarfile

    spool = io.BytesIO()
    with tarfile.open(fileobj=spool, mode="w:gz") as archive:
        for name, data in {"pyvenv.cfg": b"home = /usr/bin\n", "salt": salt}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return spool.getvalue()


BAD = [
    {"keep_releases": -1},
    {"keep_releases": 1.5},
    {"keep_releases": True},
    {"keep_revisions": "many"},
    {"keep_revision_days": float("nan")},
    {"keep_bundle_days": 10**9},
    {"keep_release_pattern": "==("},
    {"keep_release_pattern": ""},
    {"keep_mirrored_days": [1]},
]


def test_bad_policy_values_are_refused_and_change_nothing(cstore: Store) -> None:
    store = cstore
    store.namespaces.update_settings("company", {"keep_revisions": 3}, ME)
    before = store.catalog.query("SELECT * FROM audit")
    for changes in BAD:
        with pytest.raises(InvalidInput) as caught:
            store.namespaces.update_settings("company", {"inherit": False, **changes}, ME)
        assert next(iter(changes)) in caught.value.message
    assert store.namespaces.get("company").settings == {"keep_revisions": 3}
    assert store.catalog.query("SELECT * FROM audit") == before


def test_one_pass_at_a_time_under_the_lease(cstore: Store) -> None:
    store = cstore
    store.files.put("company", "a", io.BytesIO(b"1"), author=ME)
    store.files.put("company", "a", io.BytesIO(b"2"), author=ME)
    store.namespaces.update_settings("company", {"keep_revisions": 0}, ME)
    assert store.retention.take_lease("server-1")
    skipped = store.retention.run(apply=True, holder="server-2")
    assert skipped.skipped and skipped.items == [] and not skipped.applied
    assert len(store.files.history("company", "a")) == 2
    store.retention.release_lease("server-1")
    assert len(store.retention.run(apply=True, holder="server-2").items) == 1
    assert store.retention.take_lease("server-1")  # released at the end of the pass


def test_a_use_mark_stands_for_a_day_of_unmarked_uses(store: Store) -> None:
    """Uses are marked at most once a day (``store/touches.py``): a bundle last marked 1.5 days
    ago may have been used 0.5 days ago, so a one-day policy keeps it; marked 2.5 days ago, not."""
    bundle = store.bundles.put("a" * 64, io.BytesIO(bundle_bytes(b"1")), namespace="company.sales", actor=ME)[0]
    store.bundles.nearest("a" * 64, ["company.sales"])
    assert store.touches.flush() == 1
    store.namespaces.update_settings("company", {"keep_bundle_days": 1}, ME)
    now = time.time()
    for marked_ago, kept in ((1.5, True), (2.5, False)):
        with store.catalog.write() as db:
            db.execute("UPDATE last_used SET at = ? WHERE kind = 'bundle'", (now - marked_ago * DAY,))
            db.execute("UPDATE bundles SET created = '2026-01-01T00:00:00.000000Z'")
        plan = store.retention.run(clock=now)
        assert (names(plan.items) == []) is kept, (marked_ago, plan.items)
    assert names(plan.items) == [("bundle", "company.sales", bundle["key"])]
