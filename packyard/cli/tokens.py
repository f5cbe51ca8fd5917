"""``packyard token``: create, list, revoke API tokens.

With ``--local`` the command opens the catalog (``PACKYARD_DATA`` or ``PACKYARD_DATABASE_URL``) directly instead of
calling the server: that is how the first admin token is made on a fresh install.
"""

from __future__ import annotations

import typer

from packyard.cli.output import client, console, emit_json, table

app = typer.Typer(help="API tokens: create (secret shown once), list, revoke.", no_args_is_help=True)
LOCAL = typer.Option(False, "--local", help="Write the catalog in PACKYARD_DATA directly (bootstrap).")


def _local():  # noqa: ANN202 - store.tokens.Tokens, imported only when used (keeps the client CLI fast)
    from packyard.settings import secret
    from packyard.store.catalog import Catalog
    from packyard.store.tokens import Tokens

    settings = _settings()
    return Tokens(
        Catalog(
            settings.data / "catalog.db",
            url=secret(settings.database_url),
            timeout=settings.database_timeout,
            pool_size=2,
        )
    )


@app.command("create")
def create(
    scope: str = typer.Option(..., "--scope", help="Namespace it covers (with children), or '*'."),
    role: str = typer.Option("read", "--role", help="read, write or admin."),
    name: str = typer.Option("", "--name", help="A label to recognise it by."),
    local: bool = LOCAL,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create a token. The secret is printed once and cannot be shown again."""
    if local:
        token, secret = _local().create(scope, role, name=name)
        result = {"token": token.to_dict(), "secret": secret}
    else:
        result = client().create_token(scope, role, name)
    if as_json:
        emit_json(result)
        return
    token = result["token"]
    console.print(f"token {token['id']} (scope {token['scope']}, role {token['role']}); secret, shown once:")
    print(result["secret"])


@app.command("list")
def list_(local: bool = LOCAL, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List tokens (never their secrets)."""
    rows = [t.to_dict() for t in _local().list()] if local else client().tokens()
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["id", "name", "scope", "role", "created", "revoked"])


@app.command("revoke")
def revoke(token_id: str, local: bool = LOCAL) -> None:
    """Revoke a token by id; it stops working at once."""
    token = _local().revoke(token_id).to_dict() if local else client().revoke_token(token_id)
    console.print(f"revoked token {token['id']}")


def _settings():  # noqa: ANN202 - packyard.settings.Settings, imported when a command runs (pydantic-settings is slow to import)
    from packyard.settings import get_settings

    return get_settings()
