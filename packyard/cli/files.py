"""``packyard files``: put, get, ls, rm, mv, history, restore, export, import."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from packyard.cli.output import client, console, emit_json, read_chunks, save_stream, table, transfer
from packyard.store.errors import InvalidInput

PATH = click.Path(path_type=Path)


@click.group("files", no_args_is_help=True)
def app() -> None:
    """Namespace files with revisions."""


def json_option(f):  # noqa: ANN001, ANN201
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


@app.command("put")
@click.argument("ns")
@click.argument("path")
@click.argument("source", required=False)
def put(ns: str, path: str, source: str | None) -> None:
    """Write a file as the path's next revision (identical bytes add none).

    PATH is the path inside the namespace; SOURCE the local file to upload ('-' for stdin;
    default: PATH)."""
    source = source or path
    if source == "-":
        result, created = client().put_file(ns, path, read_chunks(sys.stdin.buffer, lambda n: None))
    else:
        local = Path(source)
        if not local.is_file():
            raise InvalidInput(f"{source} is not a readable file")
        with local.open("rb") as stream, transfer(f"put {path}", local.stat().st_size) as advance:
            result, created = client().put_file(ns, path, read_chunks(stream, advance))
    verb = "wrote" if created else "unchanged"
    console.print(f"{verb} {ns}:{result['path']} revision {result['revision']} sha256 {result['sha256']}")


@app.command("get")
@click.argument("ns")
@click.argument("path")
@click.option("-o", "--output", type=PATH, help="Write here instead of stdout.")
@click.option("--revision", "-r", type=int, help="A specific revision.")
def get(ns: str, path: str, output: Path | None, revision: int | None) -> None:
    """Read a file (latest, or --revision N)."""
    with client().stream_file(ns, path, revision) as response:
        total = int(response.headers.get("content-length", 0)) or None
        if output is None:
            for chunk in response.iter_bytes():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        save_stream(response.iter_bytes(), output, f"get {path}", total)


@app.command("ls")
@click.argument("ns")
@click.option("--prefix", "-p", default="")
@json_option
def ls(ns: str, prefix: str, as_json: bool) -> None:
    """List current files, optionally under a prefix."""
    rows = client().list_files(ns, prefix)
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["path", "revision", "size", "sha256", "updated"])


@app.command("rm")
@click.argument("ns")
@click.argument("path")
def rm(ns: str, path: str) -> None:
    """Delete a file (a tombstone revision; history stays)."""
    result = client().delete_file(ns, path)
    console.print(f"deleted {ns}:{path} (revision {result['revision']})")


@app.command("mv")
@click.argument("ns")
@click.argument("source")
@click.argument("target")
@click.option("--overwrite", is_flag=True)
def mv(ns: str, source: str, target: str, overwrite: bool) -> None:
    """Move or rename a file."""
    result = client().move_file(ns, source, target, overwrite)
    console.print(f"moved {ns}:{source} -> {result['path']} (revision {result['revision']})")


@app.command("history")
@click.argument("ns")
@click.argument("path")
@json_option
def history(ns: str, path: str, as_json: bool) -> None:
    """Every revision of a path, tombstones included."""
    rows = client().history(ns, path)
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["revision", "deleted", "size", "sha256", "created", "author", "origin"])


@app.command("restore")
@click.argument("ns")
@click.argument("path")
@click.argument("revision", type=int)
def restore(ns: str, path: str, revision: int) -> None:
    """Make REVISION of PATH the current content again."""
    result = client().restore(ns, path, revision)
    console.print(f"restored {ns}:{path} from revision {revision} as revision {result['revision']}")


@app.command("export")
@click.argument("ns")
@click.option("-o", "--output", type=PATH, required=True, help="The zip file to write.")
@click.option("--prefix", "-p", default="")
def export(ns: str, output: Path, prefix: str) -> None:
    """Download the namespace's current files (under a prefix) as a zip."""
    with client().export(ns, prefix) as response:
        total = int(response.headers.get("content-length", 0)) or None
        save_stream(response.iter_bytes(), output, f"export {ns}", total)
    console.print(f"exported {ns} to {output}")


@app.command("import")
@click.argument("ns")
@click.argument("archive", type=PATH)
@click.option("--prefix", "-p", default="")
def import_(ns: str, archive: Path, prefix: str) -> None:
    """Expand a zip into files, all at once or not at all."""
    if not archive.is_file():
        raise InvalidInput(f"{archive} is not a readable file")
    with archive.open("rb") as stream, transfer(f"import {archive.name}", archive.stat().st_size) as advance:
        result = client().import_zip(ns, read_chunks(stream, advance), prefix)
    console.print(f"imported {len(result['files'])} files into {ns} ({result['changed']} changed)")
