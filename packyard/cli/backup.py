"""Backup and moving: ``packyard restore`` and ``replicate`` (the SQLite catalog in the bucket,
with Litestream), ``packyard export`` and ``import`` (one namespace as an archive).

``restore`` and ``replicate`` are for whoever runs the server: like ``fsck`` they read the
server's settings (``PACKYARD_DATA`` and the S3 variables), need no token, and need
``packyard[server]``. ``export`` and
``import`` go through a server's API with the caller's token.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from packyard.cli.extras import require_server
from packyard.cli.output import client, console, emit_json, read_chunks, save_stream, transfer
from packyard.store.errors import InvalidInput


@click.command("restore")
@click.option(
    "--if-needed",
    is_flag=True,
    help="Do nothing (exit 0) when the data folder has a catalog or the bucket has no replica: "
    "for a container's start.",
)
@click.option("--timestamp", help="Restore the catalog as it was at this time (RFC 3339, e.g. 2026-01-02T03:04:05Z).")
def restore(if_needed: bool, timestamp: str | None) -> None:
    """Bring the SQLite catalog back from the S3 bucket into an empty data folder (Litestream)."""
    require_server("restore")
    from packyard.replication import restore as run

    console.print(run(_settings(), if_needed=if_needed, timestamp=timestamp))


@click.command("replicate")
def replicate() -> None:
    """Run Litestream in the foreground, streaming the SQLite catalog into the S3 bucket (a sidecar)."""
    require_server("replicate")
    from packyard.replication import run_foreground

    sys.exit(run_foreground(_settings()))


@click.command("copy-catalog")
@click.option(
    "--to",
    "url",
    help="The empty PostgreSQL database to copy into (postgresql://USER:PASSWORD@HOST:PORT/DATABASE; "
    "default PACKYARD_DATABASE_URL).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def copy_catalog(url: str | None, as_json: bool) -> None:
    """Copy the data folder's SQLite catalog into an empty PostgreSQL database, all or nothing:
    the move to several servers. Stop the server first; blobs stay where they are."""
    require_server("copy-catalog")
    from packyard.settings import secret
    from packyard.store.catalog import Catalog
    from packyard.store.catalog_copy import copy_catalog as run
    from packyard.store.errors import NotFound

    settings = _settings()
    url = url or secret(settings.database_url)
    if not url:
        raise InvalidInput("name the PostgreSQL database: --to postgresql://… or PACKYARD_DATABASE_URL")
    path = settings.data / "catalog.db"
    if not path.is_file():
        raise NotFound(f"no SQLite catalog at {path} (PACKYARD_DATA names the data folder)")
    source, target = Catalog(path), Catalog(url=url, pool_size=2)
    try:
        counts = run(source, target)
    finally:
        target.dialect.close()
        source.dialect.close()
    if as_json:
        emit_json({"tables": counts, "rows": sum(counts.values())})
        return
    where = getattr(target.dialect, "where", "the database")
    console.print(
        f"copied {sum(counts.values())} rows in {len(counts)} tables from {path} into {where}; "
        "start the servers with PACKYARD_DATABASE_URL set to it"
    )


@click.command("export")
@click.argument("ns")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Archive to write (default NS.packyard.tar).")
def export(ns: str, output: Path | None) -> None:
    """Write namespace NS (files with history, distributions with yanks, settings; not its
    children) as one archive."""
    target = output or Path(f"{ns}.packyard.tar")
    with client().export_namespace(ns) as response:
        total = int(response.headers.get("content-length", 0)) or None
        save_stream(response.iter_bytes(), target, f"export {ns}", total)
    console.print(f"exported {ns} to {target}")


@click.command("import")
@click.argument("archive", type=click.Path(path_type=Path))
@click.option("--into", help="Import under this name instead of the archive's.")
@click.option(
    "--replace", is_flag=True, help="Replace the namespace's files, distributions and settings when it exists."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def import_(archive: Path, into: str | None, replace: bool, as_json: bool) -> None:
    """Import a namespace ARCHIVE that 'packyard export' wrote (admin role on the namespace): everything, or nothing."""
    if not archive.is_file():
        raise InvalidInput(f"{archive} is not a readable file")
    source = _archive_namespace(archive)
    target = into or source
    with archive.open("rb") as stream, transfer(f"import {archive.name}", archive.stat().st_size) as advance:
        result = client().import_namespace(
            target, read_chunks(stream, advance), replace=replace, rename_from=source if target != source else None
        )
    if as_json:
        emit_json(result)
        return
    console.print(
        f"imported {result['namespace']}: {result['files']} files ({result['revisions']} revisions), "
        f"{result['dists']} distributions ({result['yanked']} yanked)"
        + (", replacing what it held" if result["replaced"] else "")
    )


def _archive_namespace(archive: Path) -> str:
    """The namespace an archive holds, from its manifest (its first member); the server checks it again."""
    import json
    import tarfile

    from packyard.store.transfer_format import MANIFEST, MAX_MANIFEST_BYTES

    try:
        with tarfile.open(archive, mode="r|") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isreg() or first.size > MAX_MANIFEST_BYTES:
                raise InvalidInput(f"{archive} is not a namespace archive (its first member must be manifest.json)")
            member = tar.extractfile(first)
            assert member is not None
            name = json.loads(member.read()).get("namespace")
    except (tarfile.TarError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"{archive} is not a namespace archive: {exc}") from exc
    if not isinstance(name, str):
        raise InvalidInput(f"{archive} is not a namespace archive: its manifest names no namespace")
    return name


def _settings():  # noqa: ANN202 - packyard.settings.Settings, imported when a command runs
    from packyard.settings import get_settings

    return get_settings()
