"""Command-line entry points of the API: ``api``, ``token``, and the calicoctl-style client commands.

The lead registers them in ``services/commands/`` (one module per command exposing ``command``).
``api`` and ``token`` talk to the database; ``apply``, ``get``, ``delete`` and ``export`` talk
GraphQL to ``RINGFENCE_URL`` with ``RINGFENCE_TOKEN``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Final

import click
import orjson
import yaml as pyyaml

from services.api.auth import create_token
from services.api.client import ApiClient, ApiClientError
from services.api.permissions import Role
from services.common.db import connect
from services.common.db import tokens as token_store
from services.common.settings import Settings, SettingsError

RESOURCE_FIELDS: Final = "kind name namespace resourceVersion yaml document"
KIND_ALIASES: Final = {
    "tier": "Tier",
    "tiers": "Tier",
    "networkpolicy": "NetworkPolicy",
    "networkpolicies": "NetworkPolicy",
    "np": "NetworkPolicy",
    "globalnetworkpolicy": "GlobalNetworkPolicy",
    "globalnetworkpolicies": "GlobalNetworkPolicy",
    "gnp": "GlobalNetworkPolicy",
    "stagednetworkpolicy": "StagedNetworkPolicy",
    "stagednetworkpolicies": "StagedNetworkPolicy",
    "snp": "StagedNetworkPolicy",
    "stagedglobalnetworkpolicy": "StagedGlobalNetworkPolicy",
    "stagedglobalnetworkpolicies": "StagedGlobalNetworkPolicy",
    "sgnp": "StagedGlobalNetworkPolicy",
    "stagedkubernetesnetworkpolicy": "StagedKubernetesNetworkPolicy",
    "sknp": "StagedKubernetesNetworkPolicy",
    "kubernetesnetworkpolicy": "KubernetesNetworkPolicy",
    "knp": "KubernetesNetworkPolicy",
    "networkset": "NetworkSet",
    "networksets": "NetworkSet",
    "globalnetworkset": "GlobalNetworkSet",
    "globalnetworksets": "GlobalNetworkSet",
    "namespace": "Namespace",
    "namespaces": "Namespace",
}


def _settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except SettingsError as error:
        raise click.UsageError(str(error)) from None


def _kind(text: str) -> str:
    return KIND_ALIASES.get(text.lower(), text)


def _fail(error: ApiClientError) -> None:
    message = f"Error: {error}" if error.code is None else f"Error ({error.code}): {error}"
    click.echo(message, err=True)
    raise SystemExit(1)


# --- server and tokens ---------------------------------------------------------------------------


@click.command("api")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")  # noqa: S104 - a server
@click.option("--port", type=int, default=None, help="Port to listen on [default: RINGFENCE_PORT or 8080].")
def api(host: str, port: int | None) -> None:
    """Serve the GraphQL API (and GraphiQL, /healthz, /readyz, /metrics)."""
    import uvicorn  # noqa: PLC0415 - only this command needs the server

    from services.api.app import create_app  # noqa: PLC0415 - builds the schema, slow to import

    settings = _settings()
    try:
        app = create_app(settings)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    uvicorn.run(
        app, host=host, port=port or settings.port, log_level="info", ws="websockets-sansio", proxy_headers=True
    )


@click.group("token")
def token() -> None:
    """Manage API tokens (stored hashed in the database)."""


@token.command("create")
@click.option("--name", required=True, help="Who the token is for (shown in the audit log).")
@click.option("--role", required=True, type=click.Choice([role.value for role in Role]), help="What it may do.")
@click.option("--tier", "tiers", multiple=True, help="A tier the role applies to (tier-admin, developer); repeatable.")
@click.option(
    "--namespace", "namespaces", multiple=True, help="A namespace the role applies to (developer); repeatable."
)
def token_create(name: str, role: str, tiers: tuple[str, ...], namespaces: tuple[str, ...]) -> None:
    """Create a token; it is printed once, alone on the last line."""

    async def run(database_url: str) -> str:
        connection = await connect(database_url)
        try:
            return await create_token(connection, name, role, tiers, namespaces)
        finally:
            await connection.close()

    try:
        secret = asyncio.run(run(_database_url()))
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    grants = ", ".join(part for part in (_listed("tiers", tiers), _listed("namespaces", namespaces)) if part)
    click.echo(
        f"Created {role} token {name!r}{' for ' + grants if grants else ''}. Keep it: it is not shown again.", err=True
    )
    click.echo(secret)


@token.command("list")
def token_list() -> None:
    """List tokens (names and grants; secrets are not stored)."""

    async def run(database_url: str) -> list[token_store.TokenRecord]:
        connection = await connect(database_url)
        try:
            return await token_store.list_tokens(connection)
        finally:
            await connection.close()

    for record in asyncio.run(run(_database_url())):
        state = "revoked" if record.revoked_at else "active"
        click.echo(
            f"{record.name}\t{record.role}\ttiers={','.join(record.tiers) or '-'}\t"
            f"namespaces={','.join(record.namespaces) or '-'}\t{state}\t{record.created_at:%Y-%m-%d %H:%M}"
        )


@token.command("revoke")
@click.option("--name", required=True, help="Revoke every active token of this name.")
def token_revoke(name: str) -> None:
    """Revoke tokens by name (API replicas notice within seconds)."""

    async def run(database_url: str) -> int:
        connection = await connect(database_url)
        try:
            return await token_store.revoke_tokens(connection, name)
        finally:
            await connection.close()

    count = asyncio.run(run(_database_url()))
    click.echo(f"Revoked {count} token(s) named {name!r}.")
    if count == 0:
        raise SystemExit(1)


def _database_url() -> str:
    url = _settings().database_url
    if url is None:
        raise click.UsageError("RINGFENCE_DATABASE_URL is not set")
    return url


def _listed(label: str, values: tuple[str, ...]) -> str:
    return f"{label} {', '.join(values)}" if values else ""


# --- client commands ------------------------------------------------------------------------------


def _client() -> ApiClient:
    settings = _settings()
    if not settings.token:
        raise click.UsageError("RINGFENCE_TOKEN is not set (create one with `ringfence token create`)")
    return ApiClient(settings.url, settings.token)


@click.command("apply")
@click.option(
    "-f", "--filename", "file", required=True, type=click.File("r"), help="Manifests (YAML or JSON); - for stdin."
)
@click.option("--dry-run", is_flag=True, help="Validate and check permissions and versions; store nothing.")
def apply(file: Any, dry_run: bool) -> None:
    """Create or update resources from calicoctl-style manifests, all or none."""
    text = file.read()
    query = f"mutation($y: String!, $d: Boolean) {{ applyManifests(yaml: $y, dryRun: $d) {{ {RESOURCE_FIELDS} }} }}"
    try:
        with _client() as client:
            applied = client.execute(query, {"y": text, "d": dry_run})["applyManifests"]
    except ApiClientError as error:
        for detail in error.details:
            click.echo(f"  {_describe(detail)}", err=True)
        _fail(error)
        return
    verb = "would apply" if dry_run else "applied"
    for item in applied:
        where = f"{item['namespace']}/" if item["namespace"] else ""
        click.echo(f"{item['kind']} {where}{item['name']} {verb} (resourceVersion {item['resourceVersion']})")


def _describe(detail: dict[str, Any]) -> str:
    if "document" in detail:
        position = f" (position {detail['position']})" if "position" in detail else ""
        path = f" {detail['path']}:" if detail.get("path") else ""
        return f"document {detail['document']}:{path} {detail['message']}{position}"
    return str(detail.get("message", detail))


@click.command("get")
@click.argument("kind")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default=None, help="Namespace of namespaced resources (all when omitted).")
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table", show_default=True)
def get(kind: str, name: str | None, namespace: str | None, output: str) -> None:
    """Show resources of KIND (NetworkPolicy, gnp, Tier, ...), or the one named NAME."""
    resource_kind = _kind(kind)
    try:
        with _client() as client:
            if name is None:
                query = (
                    f"query($k: String, $ns: String) {{ resources(kind: $k, namespace: $ns) {{ {RESOURCE_FIELDS} }} }}"
                )
                items = client.execute(query, {"k": resource_kind, "ns": namespace})["resources"]
            else:
                query = (
                    "query($k: String!, $n: String!, $ns: String) "
                    f"{{ resource(kind: $k, name: $n, namespace: $ns) {{ {RESOURCE_FIELDS} }} }}"
                )
                found = client.execute(query, {"k": resource_kind, "n": name, "ns": namespace})["resource"]
                if found is None:
                    where = f" in namespace {namespace!r}" if namespace else ""
                    click.echo(f"Error: {resource_kind} {name!r}{where} not found", err=True)
                    raise SystemExit(1)
                items = [found]
    except ApiClientError as error:
        _fail(error)
        return
    _print(items, output, single=name is not None)


def _print(items: list[dict[str, Any]], output: str, *, single: bool) -> None:
    if output == "yaml":
        click.echo("---\n".join(item["yaml"] for item in items), nl=False)
    elif output == "json":
        documents = [item["document"] for item in items]
        value: Any = documents[0] if single else {"apiVersion": "v1", "kind": "List", "items": documents}
        click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
    else:
        rows = [("KIND", "NAMESPACE", "NAME", "VERSION")]
        rows += [(i["kind"], i["namespace"] or "", i["name"], i["resourceVersion"]) for i in items]
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        for row in rows:
            click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@click.command("delete")
@click.argument("kind")
@click.argument("name")
@click.option("-n", "--namespace", default=None, help="Namespace of a namespaced resource.")
@click.option("--resource-version", default=None, help="Delete only if the resource is still at this version.")
def delete(kind: str, name: str, namespace: str | None, resource_version: str | None) -> None:
    """Delete the resource KIND NAME."""
    query = """mutation($k: String!, $n: String!, $ns: String, $v: String) {
      deleteResource(kind: $k, name: $n, namespace: $ns, resourceVersion: $v) }"""
    try:
        with _client() as client:
            client.execute(query, {"k": _kind(kind), "n": name, "ns": namespace, "v": resource_version})
    except ApiClientError as error:
        _fail(error)
        return
    where = f"{namespace}/" if namespace else ""
    click.echo(f"{_kind(kind)} {where}{name} deleted")


@click.command("export")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def export(output: str) -> None:
    """Print every stored resource, without server-managed metadata, ready to apply elsewhere."""
    try:
        with _client() as client:
            items = client.execute("{ resources { document } }")["resources"]
    except ApiClientError as error:
        _fail(error)
        return
    documents = []
    for item in items:
        document = dict(item["document"])
        metadata = {
            k: v
            for k, v in document.get("metadata", {}).items()
            if k not in ("resourceVersion", "uid", "creationTimestamp")
        }
        document["metadata"] = metadata
        documents.append(document)
    if output == "json":
        click.echo(
            orjson.dumps({"apiVersion": "v1", "kind": "List", "items": documents}, option=orjson.OPT_INDENT_2).decode()
        )
        return
    sys.stdout.write(pyyaml.safe_dump_all(documents, sort_keys=False))


__all__ = ["api", "apply", "delete", "export", "get", "token"]
