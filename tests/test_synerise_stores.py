"""Synerise semantics on every store: the vendor's examples, overwriting with
``eventSalt`` (also racing), keys, definitions and reading back, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from _pg import config_on_every_store  # noqa: F401 - the config fixture: every store
from flask.testing import FlaskClient
from test_synerise import BATCH, DOG_BARK, RECO_BATCH, UUID, issue_token, post, stored, utc

from example_app import create_app
from flask_eventtrack import get_state
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key
from flask_eventtrack.stores import EventQuery


@pytest.fixture
def token(client: FlaskClient, state: EventTrackState) -> str:
    return issue_token(client, state)


def salted(**params: Any) -> str:
    body = json.loads(DOG_BARK)
    body.update(eventSalt="s-1", params=params)
    return json.dumps(body)


def test_examples_on_every_store(client, state, token) -> None:
    tracker = create_key(state.store, "acme", "tracker").secret
    assert post(client, "/v4/events/custom", DOG_BARK, token).status_code == 202
    assert post(client, "/v4/events/batch", BATCH, token).status_code == 202
    assert post(client, f"/events/v1/batch?token={tracker}", RECO_BATCH, None).status_code == 202
    events = stored(state, tenant="acme")
    assert (
        sorted(e.type for e in events)
        == ["client.hitTimer", "dog.bark", "dog.bark"] + ["recommendation.view"] * 2
    )
    barks = [e for e in events if e.type == "dog.bark"]
    assert all(e.props == {"loudness": 3, "mood": "happy", "mailmanScared": True} for e in barks)
    assert all(e.occurred_at == utc(2022, 11, 28, 12, 18, 27) for e in barks)
    views = [e for e in events if e.type == "recommendation.view"]
    assert {e.user for e in views} == {state.pipeline.user_key(UUID)}
    read = client.get("/v4/events/profile/id/5092159999", headers={"Authorization": f"Bearer {token}"})
    assert [e["action"] for e in read.get_json()] == ["dog.bark", "dog.bark"]
    definitions = {d["name"]: d for d in state.store.definitions("acme")}
    assert definitions["dog.bark"]["count"] == 2
    assert definitions["dog.bark"]["params"] == ["loudness", "mailmanScared", "mood"]


def test_salt_overwrite_on_every_store(client, state, token) -> None:
    assert post(client, "/v4/events/custom", salted(v=1), token).status_code == 202
    [first] = stored(state)
    assert post(client, "/v4/events/custom", salted(v=2), token).status_code == 202
    [second] = stored(state)
    assert (second.id, second.occurred_at, second.props) == (first.id, first.occurred_at, {"v": 2})
    assert state.store.count_events(EventQuery(tenant="acme")) == 1


def test_racing_overwrites_on_every_store(config, state, token) -> None:
    apps = [create_app(config), create_app(config)]
    barrier = threading.Barrier(len(apps))
    statuses: list[int] = []
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            test_client = apps[index].test_client()
            for n in range(10):
                barrier.wait(timeout=30)
                body = salted(worker=index, round=n)
                statuses.append(post(test_client, "/v4/events/custom", body, token).status_code)
        except BaseException as exc:  # reported below: a thread cannot fail the test itself
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(apps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for app in apps:
        get_state(app).store.close()
    assert errors == [] and statuses == [202] * 20
    [event] = stored(state)
    assert event.props["round"] == 9


def test_revoked_key_on_every_store(client, state) -> None:
    key = create_key(state.store, "acme", "api")
    token = client.post("/v4/auth/token", json={"apiKey": key.secret}).get_json()["token"]
    assert post(client, "/v4/events/custom", DOG_BARK, token).status_code == 202
    assert state.store.revoke_key(key.id)
    assert post(client, "/v4/events/custom", DOG_BARK, token).status_code == 401
