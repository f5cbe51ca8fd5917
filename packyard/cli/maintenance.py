"""``packyard fsck`` and ``packyard gc``: the operator's view of the store, its retention and its collector.

Both open the catalog in ``PACKYARD_DATA`` and the blob backend the settings describe (the
local folder or the S3 bucket), like ``token create --local``: they are for whoever runs
the server, need no token, and work while the server is down as well as while it takes
writes (every deletion is age-based and checked under the catalog's write lock; see
``store/collector.py``).
"""

from __future__ import annotations

import sys

import click

from packyard.cli.extras import require_server
from packyard.cli.output import console, emit_json

GRACE = click.option(
    "--grace",
    type=float,
    help="Seconds an unreferenced blob or temporary file must be old to count as abandoned "
    "(default PACKYARD_GC_GRACE_SECONDS).",
)
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _store():  # noqa: ANN202 - imported only when used (minio is slow to import)
    from packyard.wiring import open_store

    return open_store(_settings())


def _collector():  # noqa: ANN202
    return _store().collector


def _size(n: int) -> str:
    from packyard.store.blobs.base import human_size

    return human_size(n)


@click.command("fsck")
@GRACE
@JSON
def fsck(grace: float | None, as_json: bool) -> None:
    """Check the store: rows whose blob is missing (exit 1), unreferenced blobs, temporary files (packyard[server])."""
    require_server("fsck")
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


@click.command("gc")
@click.option("--apply/--dry-run", default=False, help="Delete; with --dry-run (the default), only list.")
@GRACE
@click.option("--retention/--no-retention", default=True, help="Run the namespaces' retention policies first.")
@JSON
def gc(apply: bool, grace: float | None, retention: bool, as_json: bool) -> None:
    """Run the retention policies, then remove unreferenced blobs and temporary files older than
    the grace (dry run by default).

    Retention removes catalog rows (audited); their blobs become garbage that this run's
    collector takes once past the grace (an old blob is past it at once). A dry run shows the
    retention plan and the garbage there is now; the rows' blobs show up in the next one.
    Needs packyard[server].
    """
    require_server("gc")
    import getpass
    import socket

    from packyard.cli.namespaces import print_plan

    settings = _settings()
    store = _store()
    store.retention.duty = 1.0  # the operator's run: no hot path in this process to leave time to
    plan = None
    if retention:  # without the lease: a server's pass that died holding it must not block the operator
        plan = store.retention.run(apply=apply, actor=f"packyard gc ({getpass.getuser()}@{socket.gethostname()})")
        plan = plan.to_dict()
    report = store.collector.collect(settings.gc_grace_seconds if grace is None else grace, apply=apply)
    if as_json:
        emit_json({**report.to_dict(), "retention": plan})
        return
    if plan is not None:
        if plan["skipped"]:
            console.print(f"retention skipped: {plan['skipped']}")
        else:
            print_plan(plan)
    for item in report.collectable:
        console.print(f"{'removed' if apply else 'would remove'} {item['kind']} {item['name']} ({item['size']} bytes)")
    unlisted = report.collectable_total.count - len(report.collectable)
    if unlisted:
        console.print(f"... and {unlisted} more (not listed)")
    if apply:
        console.print(f"removed {report.removed.count} objects, {report.removed.bytes} bytes")
    else:
        total = report.collectable_total
        console.print(f"dry run: would remove {total.count} objects, {total.bytes} bytes (--apply to delete)")


def _settings():  # noqa: ANN202 - packyard.settings.Settings, imported when a command runs (pydantic-settings is slow to import)
    from packyard.settings import get_settings

    return get_settings()
