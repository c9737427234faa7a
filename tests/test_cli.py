"""``flask eventtrack export | stats | keys | migrate``."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import click
import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_eventtrack import cli as cli_module
from flask_eventtrack.events import EXPORT_FIELDS
from flask_eventtrack.extension import EventTrackState

DATA = {
    "data": [
        {"user_id": "alice", "type": "click", "item_id": "A", "timestamp": 1700000000},
        {"user_id": "bob", "type": "purchase", "item_id": "B", "timestamp": 1700003600, "price": 9.5},
        {"user_id": "alice", "type": "purchase", "item_id": "C", "timestamp": 1700007200},
        {"type": "broken"},
    ]
}


def run(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(cli_module.cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_export_ndjson_has_the_spec_fields(app: Flask, client: FlaskClient, state: EventTrackState) -> None:
    client.post("/cortex", json=DATA)
    rows = lines(run(app, "export").stdout)
    assert len(rows) == 3
    assert all(tuple(row) == EXPORT_FIELDS for row in rows)
    assert rows[1]["props"] == {"price": 9.5}
    assert rows[0]["occurred_at"] == "2023-11-14T22:13:20.000Z"


def test_export_filters(app: Flask, client: FlaskClient, state: EventTrackState) -> None:
    client.post("/cortex", json=DATA)
    assert [r["type"] for r in lines(run(app, "export", "--type", "purchase").stdout)] == ["purchase"] * 2
    by_alice = lines(run(app, "export", "--user", "alice").stdout)
    assert [r["item_id"] for r in by_alice] == ["A", "C"]
    assert all(r["user"] == state.pipeline.user_key("alice") for r in by_alice)
    window = lines(
        run(app, "export", "--since", "2023-11-14T23:00:00Z", "--until", "2023-11-15T00:00:00+00:00").stdout
    )
    assert [r["item_id"] for r in window] == ["B"]
    assert lines(run(app, "export", "--tenant", "nobody").stdout) == []
    assert len(lines(run(app, "export", "--source", "cortex").stdout)) == 3
    with app.app_context():
        state.extension.emit("signup", user="carol", source="shop")
    (emitted,) = lines(run(app, "export", "--source", "shop").stdout)  # emit() names its own sources
    assert emitted["type"] == "signup"


def test_export_rejected_log_and_csv(app: Flask, client: FlaskClient, tmp_path: Any) -> None:
    client.post("/cortex", json=DATA)
    (row,) = lines(run(app, "export", "--rejected").stdout)
    assert row["reason"] == "schema_violation" and "data[3]" in row["message"]
    out = tmp_path / "events.csv"
    run(app, "export", "--format", "csv", "--output", str(out))
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(table) == 3 and list(table[0]) == list(EXPORT_FIELDS)
    assert json.loads(table[1]["props"]) == {"price": 9.5}


def test_export_reports_progress_on_stderr(app: Flask, client: FlaskClient, monkeypatch: Any) -> None:
    monkeypatch.setattr(cli_module, "PROGRESS_EVERY", 2)
    client.post("/cortex", json=DATA)
    result = run(app, "export")
    assert len(lines(result.stdout)) == 3
    assert "... 2 of 3" in result.stderr and "exported 3 rows" in result.stderr


def test_bad_time_is_a_usage_error(app: Flask) -> None:
    result = app.test_cli_runner().invoke(cli_module.cli, ["export", "--since", "last tuesday"])
    assert result.exit_code == 2 and "not an ISO 8601" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["export", "--since", "0001-01-01T00:00:00+01:00"],  # before year 1 in UTC
        ["export", "--rejected", "--until", "9999-12-31T23:59:59-01:00"],  # after 9999
        ["scenarios", "--since", "0001-01-01T00:00:00+0100"],
    ],
)
def test_a_time_out_of_range_in_utc_is_a_usage_error(app: Flask, args: list[str]) -> None:
    result = app.test_cli_runner().invoke(cli_module.cli, args)
    assert result.exit_code == 2 and "out of range once converted to UTC" in result.output


def test_times_with_an_offset_are_converted_to_utc(app: Flask, client: FlaskClient) -> None:
    client.post("/cortex", json=DATA)  # times: 22:13:20Z, 23:13:20Z, 00:13:20Z
    rows = lines(run(app, "export", "--since", "2023-11-15T00:13:20+01:00").stdout)  # = 23:13:20Z
    assert [r["type"] for r in rows] == ["purchase", "purchase"]


def test_an_unreachable_store_is_a_one_line_error(tmp_path: Any) -> None:
    from example_app import create_app

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "s",
            "EVENTTRACK_STORE_URL": "postgresql://postgres@127.0.0.1:1/nowhere",  # nothing listens on port 1
            "EVENTTRACK_POSTGRES_CONNECT_TIMEOUT": 0.5,
            "EVENTTRACK_POSTGRES_POOL_MIN_SIZE": 0,
        }
    )
    for args in (["stats"], ["export"], ["keys", "list"]):
        result = app.test_cli_runner().invoke(cli_module.cli, args)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
        assert result.output.startswith("Error: The event store is unavailable:"), result.output
        assert "Traceback" not in result.output


def test_stats(app: Flask, client: FlaskClient) -> None:
    client.post("/cortex", json=DATA)
    rows = lines(run(app, "stats", "--json").stdout)
    counts = {(r["source"], r["type"]): (r["accepted"], r["rejected"]) for r in rows}
    assert counts[("cortex", "purchase")] == (2, 0)
    assert counts[("cortex", "click")] == (1, 0)
    assert counts[("cortex", "broken")] == (0, 1)
    table = run(app, "stats").stdout
    assert table.splitlines()[0].split() == ["tenant", "source", "type", "accepted", "rejected"]


def test_keys_create_list_revoke(app: Flask, state: EventTrackState) -> None:
    from flask_eventtrack.keys import check_key

    secret = run(app, "keys", "create", "--tenant", "acme", "--label", "shop").stdout.strip()
    assert check_key(state.store, secret) == "acme"
    (listed,) = run(app, "keys", "list").stdout.splitlines()
    key_id = listed.split()[0]
    assert "acme" in listed and "active" in listed and secret not in listed
    assert all(secret not in json.dumps(row) for row in state.store.list_keys())
    assert run(app, "keys", "revoke", key_id).exit_code == 0
    assert "revoked" in run(app, "keys", "list").stdout
    assert run(app, "keys", "revoke", key_id).exit_code == 1


def test_a_key_for_the_unsigned_cortex_tenant_comes_with_a_warning(
    app: Flask, state: EventTrackState
) -> None:
    """Unsigned Cortex posts write into EVENTTRACK_CORTEX_TENANT with no key: a tenant whose
    profile or Synerise clients use keys would take anyone's events beside theirs."""
    result = run(app, "keys", "create", "--tenant", "default")
    assert "warning: tenant 'default' also takes unsigned Cortex events" in result.stderr
    assert result.stdout.strip() and len(state.store.list_keys()) == 1  # still issued: it is a warning
    assert "warning" not in run(app, "keys", "create", "--tenant", "acme").stderr


@pytest.mark.parametrize("tenant", ["", "   "])
def test_a_key_for_an_empty_tenant_is_refused(app: Flask, state: EventTrackState, tenant: str) -> None:
    result = app.test_cli_runner().invoke(cli_module.cli, ["keys", "create", "--tenant", tenant])
    assert result.exit_code == 2 and "must not be empty" in result.output
    assert state.store.list_keys() == []


def test_every_command_has_help() -> None:
    def walk(command: click.Command) -> list[click.Command]:
        found = [command]
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                found += walk(sub)
        return found

    for command in walk(cli_module.cli):
        assert command.help, f"{command.name} has no help"


def test_migrate_at_deploy_keeps_sqlite_utils_out_of_the_workers(tmp_path: Any) -> None:
    """``flask eventtrack migrate`` creates the tables of a new database; workers
    started after it find the schema up to date and never import sqlite-utils."""
    import os
    import sqlite3
    import subprocess
    import sys

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        "FLASK_SECRET_KEY": "deploy-secret",
        "FLASK_EVENTTRACK_STORE_URL": f"sqlite:///{tmp_path}/deploy.db",
    }
    command = [sys.executable, "-m", "flask", "--app", "example_app", "eventtrack", "migrate"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert "schema is up to date" in done.stdout
    with sqlite3.connect(f"{tmp_path}/deploy.db") as conn:
        applied = [row[0] for row in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
    assert applied == ["m001_initial", "m002_profiles"]
    worker = (
        "import sys\n"
        "from example_app import create_app\n"
        "client = create_app().test_client()\n"
        "status = client.post('/cortex', json={'data': [{'user_id': 'u', 'type': 'click'}]}).status_code\n"
        "print(status, 'sqlite_utils' in sys.modules)\n"
    )
    served = subprocess.run([sys.executable, "-c", worker], env=env, capture_output=True, text=True)
    assert served.returncode == 0, served.stderr
    assert served.stdout.split() == ["200", "False"]


def test_migrate_creates_the_postgresql_schema_before_the_first_request(
    config: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    import psycopg
    from _pg import on_store

    from example_app import create_app

    app = create_app(on_store("postgresql", config, request))
    schema = config["EVENTTRACK_POSTGRES_SCHEMA"]
    query = "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = 'events'"

    def tables() -> int:
        with psycopg.connect(config["EVENTTRACK_STORE_URL"]) as conn:
            row = conn.execute(query, (schema,)).fetchone()
            assert row is not None
            return int(row[0])

    try:
        assert tables() == 0  # the pool (and the migration) waits for first use
        assert "schema is up to date" in run(app, "migrate").stdout
        assert tables() == 1
    finally:
        from flask_eventtrack import get_state

        get_state(app).store.close()
