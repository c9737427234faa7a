"""The profile API end to end on every store: the seed's requests, the rules, and races."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import pytest
from _pg import config_on_every_store  # noqa: F401 - the config fixture: every store
from flask.testing import FlaskClient

from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key
from flask_eventtrack.stores import EventQuery

EMAIL = "alexandru@example.com"


@pytest.fixture
def key(client: FlaskClient, state: EventTrackState) -> str:
    secret = create_key(state.store, "acme").secret
    for user in (EMAIL, "u1@example.com"):
        response = client.post("/v1/user", json={"user": {"email": user}}, headers={"Authorization": secret})
        assert response.status_code == 200
    return secret


def send(client: FlaskClient, key: str, event: dict[str, Any], user: str = EMAIL) -> str:
    body = {"user": {"email": user}, "event": event}
    response = client.post("/v1/event/", json=body, headers={"Authorization": key})
    assert response.status_code == 200, response.json
    message: str = response.json["results"]["message"]
    return message


def test_seed_requests(client: FlaskClient, state: EventTrackState, key: str) -> None:
    assert send(client, key, {"update": {"firstname": "alexandru"}}) == "Event created"
    generic = {"generic": {"generic": {"event_name": "my_event", "firstname": "alexandru"}}}
    assert send(client, key, generic) == "Event created"
    shown = client.get(f"/v1/user/{EMAIL}", headers={"Authorization": key}).json["results"]
    assert shown["user"]["attributes"] == {"firstname": "alexandru"}
    assert [(e["type"], e["props"]) for e in shown["events"]] == [
        ("my_event", {"firstname": "alexandru"}),
        ("update", {"firstname": "alexandru"}),
    ]


def test_rules(client: FlaskClient, state: EventTrackState, key: str) -> None:
    assert send(client, key, {"confirmation": {"orderId": "O-1"}}) == "Event created"
    assert send(client, key, {"confirmation": {"orderId": "O-1"}}) == "Event discarded"
    assert send(client, key, {"email_open": {}}) == "Event created"
    assert send(client, key, {"email_open": {}}) == "Event discarded"
    assert send(client, key, {"email_open": {}}, user="u1@example.com") == "Event created"
    reasons = [r.reason for r in state.store.iter_rejected(EventQuery())]
    assert reasons == ["duplicate", "duplicate"]


def test_racing_threads(client: FlaskClient, state: EventTrackState, key: str, app: Any) -> None:
    barrier = threading.Barrier(4)
    answers: list[str] = []

    def worker(n: int) -> None:
        own = app.test_client()
        barrier.wait(timeout=30)
        answers.append(send(own, key, {"email_open": {}}))
        answers.append(send(own, key, {"confirmation": {"orderId": "O-9"}}))
        send(own, key, {"update": {f"w{n}": n}})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(answers) == ["Event created"] * 2 + ["Event discarded"] * 6
    assert len(list(state.store.iter_events(EventQuery(type="email_open")))) == 1
    assert len(list(state.store.iter_events(EventQuery(type="confirmation")))) == 1
    profile = state.store.get_profile("acme", state.pipeline.user_key(EMAIL))
    assert profile is not None and profile["attributes"] == {f"w{n}": n for n in range(4)}


def _worker(config: dict[str, Any], key: str, barrier: Any, queue: Any) -> None:
    from example_app import create_app

    answers: list[str] = []
    try:  # always answer, so a failing worker fails the test instead of hanging it
        client = create_app(config).test_client()
        barrier.wait(timeout=60)
        answers.append(send(client, key, {"email_open": {}}))
        answers.append(send(client, key, {"confirmation": {"orderId": "O-7"}}))
    finally:
        queue.put(answers)


def test_racing_processes(config: dict[str, Any], state: EventTrackState, key: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(config, key, barrier, queue)) for _ in range(3)]
    for p in workers:
        p.start()
    answers = [a for _ in workers for a in queue.get(timeout=180)]
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(answers) == ["Event created"] * 2 + ["Event discarded"] * 4
    assert len(list(state.store.iter_events(EventQuery(type="email_open")))) == 1
    assert len(list(state.store.iter_events(EventQuery(type="confirmation")))) == 1
