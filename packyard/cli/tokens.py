"""``packyard token``: create, list, revoke API tokens.

With ``--local`` the command opens the catalog (``PACKYARD_DATA`` or ``PACKYARD_DATABASE_URL``) directly instead of
calling the server: that is how the first admin token is made on a fresh install (it needs
``packyard[server]``, like the server itself).
"""

from __future__ import annotations

import click

from packyard.cli.output import client, console, emit_json, table

LOCAL = click.option(
    "--local", is_flag=True, help="Write the catalog in PACKYARD_DATA directly (bootstrap; packyard[server])."
)
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group("token", no_args_is_help=True)
def app() -> None:
    """API tokens: create (secret shown once), list, revoke."""


def _local():  # noqa: ANN202 - store.tokens.Tokens, imported only when used (keeps the client CLI fast)
    from packyard.cli.extras import require_server

    require_server("token --local")
    from packyard.settings import get_settings, secret
    from packyard.store.catalog import Catalog
    from packyard.store.tokens import Tokens

    settings = get_settings()
    return Tokens(
        Catalog(
            settings.data / "catalog.db",
            url=secret(settings.database_url),
            timeout=settings.database_timeout,
            pool_size=2,
        )
    )


@app.command("create")
@click.option("--scope", required=True, help="Namespace it covers (with children), or '*'.")
@click.option("--role", default="read", show_default=True, help="read, write or admin.")
@click.option("--name", default="", help="A label to recognise it by.")
@LOCAL
@JSON
def create(scope: str, role: str, name: str, local: bool, as_json: bool) -> None:
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
@LOCAL
@JSON
def list_(local: bool, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    rows = [t.to_dict() for t in _local().list()] if local else client().tokens()
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["id", "name", "scope", "role", "created", "revoked"])


@app.command("revoke")
@click.argument("token_id")
@LOCAL
def revoke(token_id: str, local: bool) -> None:
    """Revoke a token by id; it stops working at once."""
    token = _local().revoke(token_id).to_dict() if local else client().revoke_token(token_id)
    console.print(f"revoked token {token['id']}")
