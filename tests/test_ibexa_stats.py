"""Ibexa semantics read back: consumption maximum, scenario/trigger statistics, categories."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import eventtrack
from flask_eventtrack.cli import cli
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.ibexa_stats import consumption, item_categories, scenario_stats, trigger_stats


def ok(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 204, response.get_data(as_text=True)


def test_consumption_keeps_every_event_and_reports_the_highest(
    client: FlaskClient, state: EventTrackState
) -> None:
    for percentage in (10, 20, 30, 40, 50, 30, 20):
        ok(client, f"/api/00000/consume/viewer/3/466?percentage={percentage}")
    ok(client, "/api/00000/consume/viewer/3/500?percentage=5")
    ok(client, "/api/00000/consume/other/3/466?percentage=90")
    rows = consumption(state)
    viewer, other = state.pipeline.user_key("viewer"), state.pipeline.user_key("other")
    assert sorted((r["user"], r["item_id"], r["percentage"], r["events"]) for r in rows) == sorted(
        [(viewer, "466", 50, 7), (viewer, "500", 5, 1), (other, "466", 90, 1)]
    )
    assert consumption(state, user="viewer", item_type="3", item_id="466") == [
        {"tenant": "00000", "user": viewer, "item_type": "3", "item_id": "466", "percentage": 50, "events": 7}
    ]


def test_consume_without_percentage_counts_as_fully_consumed(
    client: FlaskClient, state: EventTrackState
) -> None:
    ok(client, "/api/00000/consume/viewer/3/452?percentage=40")
    ok(client, "/api/00000/consume/viewer/3/452")
    assert [r["percentage"] for r in consumption(state)] == [100]


def test_consumption_of_an_account_includes_what_it_watched_before_login(
    client: FlaskClient, state: EventTrackState
) -> None:
    ok(client, "/api/00000/consume/anon1/3/466?percentage=80")
    ok(client, "/api/00000/login/anon1/johndoe")
    ok(client, "/api/00000/consume/johndoe/3/466?percentage=30")
    (row,) = consumption(state, user="johndoe")
    assert (row["user"], row["percentage"], row["events"]) == (state.pipeline.user_key("johndoe"), 80, 2)


@pytest.fixture
def two_customers(config: dict[str, Any]) -> dict[str, Any]:
    config["EVENTTRACK_IBEXA_CUSTOMERS"] = "11111,22222"
    return config


def test_another_tenants_login_does_not_change_a_users_consumption(
    two_customers: dict[str, Any], client: FlaskClient, state: EventTrackState
) -> None:
    """Review finding 5: identity links are followed within the tenant of the events only."""
    ok(client, "/api/11111/consume/victim/3/466?percentage=10")
    ok(client, "/api/11111/consume/stranger/3/466?percentage=90")
    ok(client, "/api/22222/login/stranger/victim")  # tenant B stitches tenant A's users
    victim = state.pipeline.user_key("victim")
    expected = [
        {"tenant": "11111", "user": victim, "item_type": "3", "item_id": "466", "percentage": 10, "events": 1}
    ]
    assert consumption(state, tenant="11111", user="victim") == expected
    assert consumption(state, user="victim") == expected  # every tenant: each with its own links
    ok(client, "/api/22222/consume/stranger/3/466?percentage=70")
    assert consumption(state, user="victim") == [
        *expected,
        {
            "tenant": "22222",
            "user": victim,
            "item_type": "3",
            "item_id": "466",
            "percentage": 70,
            "events": 1,
        },
    ]


def test_consumption_cli(app: Flask, client: FlaskClient) -> None:
    ok(client, "/api/00000/consume/viewer/3/466?percentage=10")
    ok(client, "/api/00000/consume/viewer/3/466?percentage=60")
    result = app.test_cli_runner().invoke(cli, ["consumption", "--user", "viewer"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["percentage"] for line in result.stdout.splitlines()] == [60]


def send_recommendation_traffic(client: FlaskClient) -> None:
    ok(client, "/api/00000/rendered/u1/1/128,129,155?scenario=also_bought")
    ok(client, "/api/00000/rendered/u2/1/128,129?scenario=also_bought")
    ok(client, "/api/00000/clickrecommended/u1/1/155?scenario=also_bought")
    ok(client, "/api/00000/rendered/u1/1/7?scenario=top_sellers")
    ok(client, "/api/00000/clickrecommended/u3/1/9?scenario=landing")
    ok(client, "/api/00000/triggeropened/u1?triggername=cart_reminder")
    ok(client, "/api/00000/triggeropened/u2?triggername=cart_reminder")
    ok(client, "/api/00000/clicktriggered/u2/1/128?triggername=cart_reminder")
    ok(client, "/api/00000/clicktriggered/u2/1/129?triggername=cart_reminder")


def test_scenario_statistics(client: FlaskClient, state: EventTrackState) -> None:
    send_recommendation_traffic(client)
    rows = {r["scenario"]: r for r in scenario_stats(state)}
    assert set(rows) == {"also_bought", "top_sellers", "landing"}
    assert (rows["also_bought"]["shown"], rows["also_bought"]["clicked"], rows["also_bought"]["users"]) == (
        5,
        1,
        2,
    )
    assert rows["also_bought"]["rate"] == 0.2
    assert (rows["top_sellers"]["shown"], rows["top_sellers"]["clicked"], rows["top_sellers"]["rate"]) == (
        1,
        0,
        0.0,
    )
    assert (rows["landing"]["shown"], rows["landing"]["clicked"], rows["landing"]["rate"]) == (0, 1, None)
    assert scenario_stats(state, tenant="99999") == []
    future = datetime.now(UTC) + timedelta(days=1)
    assert scenario_stats(state, since=future) == []


def test_trigger_statistics(client: FlaskClient, state: EventTrackState) -> None:
    send_recommendation_traffic(client)
    (row,) = trigger_stats(state)
    assert row == {
        "tenant": "00000",
        "triggername": "cart_reminder",
        "shown": 2,
        "clicked": 2,
        "users": 2,
        "rate": 1.0,
    }


def test_scenarios_cli(app: Flask, client: FlaskClient) -> None:
    send_recommendation_traffic(client)
    runner = app.test_cli_runner()
    result = runner.invoke(cli, ["scenarios"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Scenarios")
    assert any(line.split()[:6] == ["00000", "also_bought", "5", "1", "2", "0.2"] for line in lines)
    assert any(line.split()[:6] == ["00000", "cart_reminder", "2", "2", "2", "1.0"] for line in lines)
    result = runner.invoke(cli, ["scenarios", "--json", "--tenant", "00000", "--since", "2000-01-01"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(r["kind"], r.get("scenario") or r.get("triggername")) for r in rows} == {
        ("scenario", "also_bought"),
        ("scenario", "top_sellers"),
        ("scenario", "landing"),
        ("trigger", "cart_reminder"),
    }
    result = runner.invoke(cli, ["scenarios", "--json", "--until", "2000-01-01"])
    assert result.exit_code == 0 and result.stdout == ""


def test_item_in_two_categories_until_the_old_one_ages_out(
    app: Flask, client: FlaskClient, state: EventTrackState
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=200)
    with app.app_context():  # an old click, as an import of history would record it
        eventtrack.emit(
            "click",
            user="u0",
            tenant="00000",
            source="ibexa",
            item_type="1",
            item_id="123",
            occurred_at=long_ago,
            props={"categorypath": "Archive"},
        )
    ok(client, "/api/00000/click/u1/1/123?categorypath=%2FShoes%2FChildren")
    ok(client, "/api/00000/click/u2/1/123?categorypath=Sale/")
    ok(client, "/api/00000/click/u3/1/124?categorypath=Other")
    seen = item_categories("1", "123", state=state)
    assert set(seen) == {"Archive", "Shoes/Children", "Sale"}
    assert seen["Archive"] == long_ago.replace(microsecond=long_ago.microsecond // 1000 * 1000)
    recent = item_categories("1", "123", since=datetime.now(UTC) - timedelta(days=90), state=state)
    assert set(recent) == {"Shoes/Children", "Sale"}
    future = datetime.now(UTC) + timedelta(days=1)
    assert item_categories(1, 123, since=future, state=state) == {}


def test_scenarios_table_escapes_control_characters(app: Flask, client: FlaskClient) -> None:
    """A C1 control (CSI, U+009B) in a scenario name would run in the operator's terminal."""
    assert client.get("/api/00000/rendered/u1/1/7?scenario=x%C2%9B2J").status_code == 204
    result = app.test_cli_runner().invoke(cli, ["scenarios"])
    assert result.exit_code == 0, result.output
    assert "\x9b" not in result.stdout and "x\\x9b2J" in result.stdout
