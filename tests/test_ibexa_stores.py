"""Ibexa semantics on every store: the vendor's examples replayed on SQLite and
PostgreSQL, then read back through the export CLI and the statistics helpers."""

from __future__ import annotations

import json

from _pg import config_on_every_store  # noqa: F401 - the config fixture: every store
from flask import Flask
from flask.testing import FlaskClient
from test_ibexa import EXAMPLES, EXPECTED, USER

from flask_eventtrack.cli import cli
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.ibexa_stats import consumption, scenario_stats


def test_examples_stitched_and_counted_on_every_store(
    app: Flask, client: FlaskClient, state: EventTrackState
) -> None:
    for url in EXAMPLES:
        assert client.post(url).status_code == 204, url
    for percentage in (10, 90, 40):
        assert client.get(f"/api/00000/consume/johndoe/3/466?percentage={percentage}").status_code == 204
    result = app.test_cli_runner().invoke(cli, ["export", "--user", "johndoe", "--source", "ibexa"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["type"] for r in rows] == [e[0] for e in EXPECTED] + ["consume"] * 3
    assert [r["props"] for r in rows[: len(EXPECTED)]] == [e[4] for e in EXPECTED]
    (row,) = consumption(state, user="johndoe", item_id="466")
    assert (row["percentage"], row["events"]) == (90, 4)  # 60 before login, then 10, 90, 40
    (also_bought,) = scenario_stats(state)
    assert (also_bought["scenario"], also_bought["shown"], also_bought["clicked"]) == ("also_bought", 3, 1)
    assert state.pipeline.user_key(USER) in {r["user"] for r in rows}
