"""``packyard fsck`` and ``packyard gc``: the operator's view of the store, and its collector.

Both open the catalog in ``PACKYARD_DATA`` and the blob backend the settings describe (the
local folder or the S3 bucket), like ``token create --local``: they are for whoever runs
the server, need no token, and work while the server is down as well as while it takes
writes (every deletion is age-based and checked under the catalog's write lock; see
``store/collector.py``).
"""

from __future__ import annotations

import sys

import typer

from packyard.cli.output import console, emit_json

GRACE = typer.Option(
    None,
    "--grace",
    help="Seconds an unreferenced blob or temporary file must be old to count as abandoned "
    "(default PACKYARD_GC_GRACE_SECONDS).",
)
JSON = typer.Option(False, "--json", help="Print JSON.")


def _collector():  # noqa: ANN202 - imported only when used (minio is slow to import)
    from packyard.wiring import open_store

    return open_store(_settings()).collector


def _size(n: int) -> str:
    from packyard.store.blobs.base import human_size

    return human_size(n)


def fsck(grace: float | None = GRACE, as_json: bool = JSON) -> None:
    """Check the store: rows whose blob is missing (exit 1), unreferenced blobs, temporary files."""
    settings = _settings()
    report = _collector().scan(settings.gc_grace_seconds if grace is None else grace)
    if as_json:
        emit_json(report.to_dict())
    else:
        console.print(
            f"blobs: {report.blobs.count} ({_size(report.blobs.bytes)}), {report.referenced} referenced by the catalog"
        )
        console.print(f"missing blobs: {len(report.missing)}; dangling rows: {len(report.dangling)}")
        for row in report.dangling:
            key = ", ".join(f"{k}={v}" for k, v in row["row"].items())
            console.print(f"  {row['table']}.{row['column']} ({key}) -> {row['sha256']} is missing")
        console.print(
            f"unreferenced blobs: {report.unreferenced.count} past the grace ({_size(report.unreferenced.bytes)}), "
            f"{report.unreferenced_young.count} younger (kept: a change may be in flight)"
        )
        console.print(
            f"temporary files: {report.temps.count} past the grace ({_size(report.temps.bytes)}), "
            f"{report.temps_young.count} younger"
        )
        console.print("damaged: catalog rows point at missing blobs" if report.damaged else "ok")
    if report.damaged:
        sys.exit(1)


def gc(
    apply: bool = typer.Option(False, "--apply", help="Delete; without it, only list what would go."),
    grace: float | None = GRACE,
    as_json: bool = JSON,
) -> None:
    """Remove unreferenced blobs and temporary files older than the grace (dry run by default)."""
    settings = _settings()
    report = _collector().collect(settings.gc_grace_seconds if grace is None else grace, apply=apply)
    if as_json:
        emit_json(report.to_dict())
        return
    for item in report.collectable:
        console.print(f"{'removed' if apply else 'would remove'} {item['kind']} {item['name']} ({item['size']} bytes)")
    if apply:
        console.print(f"removed {report.removed.count} objects, {report.removed.bytes} bytes")
    else:
        total = sum(item["size"] for item in report.collectable)
        console.print(f"dry run: would remove {len(report.collectable)} objects, {total} bytes (--apply to delete)")


def _settings():  # noqa: ANN202 - packyard.settings.Settings, imported when a command runs (pydantic-settings is slow to import)
    from packyard.settings import get_settings

    return get_settings()
