"""The command line against the real API and database: token create, apply, get, delete, export."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
import yaml as pyyaml
from api_manifests import BACKEND, NETWORK_SET, TIERS
from click.testing import CliRunner

from services.api import cli


@pytest.fixture
def run(api):
    """Run a command with the environment of a user of the test server (admin token)."""

    def invoke(command, args, *, token: str | None = None, stdin: str | None = None):
        env = {
            "RINGFENCE_URL": api.server.url,
            "RINGFENCE_TOKEN": token or api.tokens["admin"],
            "RINGFENCE_DATABASE_URL": api.server.settings.database_url,
        }
        return CliRunner().invoke(command, args, env=env, input=stdin, catch_exceptions=False)

    return invoke


def test_token_create_prints_the_token_alone_on_the_last_line_and_it_works(api, run):
    result = run(
        cli.token, ["create", "--name", "ci", "--role", "developer", "--tier", "default", "--namespace", "storefront"]
    )
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    assert " " not in secret
    me = httpx.post(
        f"{api.server.url}/graphql",
        json={"query": "{ me { name role tiers namespaces } }"},
        headers={"Authorization": f"Bearer {secret}"},
    ).json()
    assert me == {
        "data": {"me": {"name": "ci", "role": "developer", "tiers": ["default"], "namespaces": ["storefront"]}}
    }
    listing = run(cli.token, ["list"])
    assert any(line.startswith("ci\tdeveloper") for line in listing.stdout.splitlines())
    assert run(cli.token, ["revoke", "--name", "ci"]).exit_code == 0
    time.sleep(0.6)  # the server's token cache lasts 0.5 s in the tests
    assert (
        httpx.post(
            f"{api.server.url}/graphql",
            json={"query": "{ me { name } }"},
            headers={"Authorization": f"Bearer {secret}"},
        ).status_code
        == 401
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "tier-admin"], "needs at least one --tier"),
        (["--role", "developer", "--tier", "default"], "needs at least one --namespace"),
        (["--role", "viewer", "--namespace", "storefront"], "do not apply"),
        (["--role", "root"], "'root' is not one of"),
    ],
)
def test_token_create_refuses_grants_the_role_does_not_take(api, run, args, message):
    result = run(cli.token, ["create", "--name", "x", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_apply_get_delete_and_export_round_trip(api, run, tmp_path):
    manifest = tmp_path / "policies.yaml"
    manifest.write_text(TIERS + "---" + BACKEND + "---" + NETWORK_SET)
    applied = run(cli.apply, ["-f", str(manifest)])
    assert applied.exit_code == 0, applied.output
    assert "NetworkPolicy storefront/default.backend applied" in applied.stdout

    table = run(cli.get, ["np", "-n", "storefront"])
    assert table.stdout.splitlines()[1].split()[:3] == ["NetworkPolicy", "storefront", "default.backend"]
    as_yaml = run(cli.get, ["NetworkPolicy", "backend", "-n", "storefront", "-o", "yaml"])
    document = pyyaml.safe_load(as_yaml.stdout)
    assert document["spec"]["selector"] == "app == 'backend'"
    as_json = orjson.loads(run(cli.get, ["tier", "-o", "json"]).stdout)
    assert sorted(item["metadata"]["name"] for item in as_json["items"]) == ["platform", "security"]

    # Edit what `get` printed and apply it back: its resourceVersion guards against lost updates.
    document["spec"]["order"] = 5
    assert run(cli.apply, ["-f", "-"], stdin=pyyaml.safe_dump(document)).exit_code == 0
    stale = run(cli.apply, ["-f", "-"], stdin=pyyaml.safe_dump(document))
    assert stale.exit_code == 1
    assert "CONFLICT" in stale.stderr

    exported = list(pyyaml.safe_load_all(run(cli.export, []).stdout))
    assert sorted(d["kind"] for d in exported) == ["NetworkPolicy", "NetworkSet", "Tier", "Tier"]
    assert all("resourceVersion" not in d["metadata"] for d in exported)

    assert run(cli.delete, ["networkset", "partners", "-n", "storefront"]).exit_code == 0
    missing = run(cli.get, ["networkset", "partners", "-n", "storefront"])
    assert missing.exit_code == 1
    assert "not found" in missing.stderr


def test_client_errors_name_the_problem(api, run):
    invalid = run(cli.apply, ["-f", "-"], stdin=BACKEND.replace("app == 'backend'", "app == "))
    assert invalid.exit_code == 1
    assert "INVALID_MANIFEST" in invalid.stderr
    assert "spec.selector" in invalid.stderr
    refused = run(cli.apply, ["-f", "-"], stdin=TIERS, token=api.tokens["viewer"])
    assert refused.exit_code == 1
    assert "FORBIDDEN" in refused.stderr
    gone = run(cli.delete, ["tier", "nowhere"])
    assert (gone.exit_code, "NOT_FOUND" in gone.stderr) == (1, True)
