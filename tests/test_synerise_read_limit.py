"""``EVENTTRACK_SYNERISE_READ_LIMIT`` bounds every read of a profile's events, the
default page (no ``?limit=``) included. On every store."""

from __future__ import annotations

from typing import Any

import pytest
from _pg import config_on_every_store  # noqa: F401 - the config fixture: every store
from flask.testing import FlaskClient
from test_synerise import issue_token

from example_app import create_app
from flask_eventtrack import get_state
from flask_eventtrack.extension import EventTrackState

PATH = "/v4/events/profile/id/p"


def send(client: FlaskClient, token: str, count: int) -> None:
    batch = [{"type": "custom", "action": "a.b", "client": {"id": "p"}, "label": "l"} for _ in range(count)]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/v4/events/batch", json=batch, headers=headers).status_code == 202


def read(client: FlaskClient, token: str, query: str = "") -> Any:
    return client.get(PATH + query, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("read_limit", [10, 99])
def test_default_page_is_the_read_limit_when_lower(
    config: dict[str, Any], tmp_path: Any, read_limit: int
) -> None:
    app = create_app({**config, "EVENTTRACK_SYNERISE_READ_LIMIT": read_limit})
    app.instance_path = str(tmp_path / "instance")
    client, state = app.test_client(), get_state(app)
    try:
        token = issue_token(client, state)
        send(client, token, read_limit + 5)
        assert len(read(client, token).get_json()) == read_limit
        assert len(read(client, token, f"?limit={read_limit}").get_json()) == read_limit
        assert read(client, token, f"?limit={read_limit + 1}").status_code == 400
    finally:
        state.store.close()


def test_default_page_is_100_under_a_higher_read_limit(client: FlaskClient, state: EventTrackState) -> None:
    token = issue_token(client, state)
    send(client, token, 105)
    assert len(read(client, token).get_json()) == 100
    assert len(read(client, token, "?limit=105").get_json()) == 105
