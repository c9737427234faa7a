"""Profile API rules: one confirmation per orderId, one e-mail open per window, under races.

The races run both as threads of one app and as two worker processes sharing one
SQLite file; the store decides inside its write transaction, so exactly one wins.
"""

from __future__ import annotations

import multiprocessing
import threading
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from flask_eventtrack.events import Event, utcnow
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key
from flask_eventtrack.stores import EventQuery

EMAIL = "alexandru@example.com"
ROUNDS = 15


@pytest.fixture
def key(state: EventTrackState) -> str:
    return create_key(state.store, "acme").secret


def create_user(client: FlaskClient, key: str, user: dict[str, Any]) -> None:
    response = client.post("/v1/user", json={"user": user}, headers={"Authorization": key})
    assert response.status_code == 200


def send(client: FlaskClient, key: str, event: dict[str, Any], user: str = EMAIL) -> dict[str, Any]:
    body = {"user": {"email": user}, "event": event}
    response = client.post("/v1/event/", json=body, headers={"Authorization": key})
    assert response.status_code == 200, response.json
    results: dict[str, Any] = response.json["results"]
    return results


def stored(state: EventTrackState, type: str) -> list[Event]:
    return list(state.store.iter_events(EventQuery(type=type)))


def duplicates(state: EventTrackState) -> list[str | None]:
    return [r.type for r in state.store.iter_rejected(EventQuery()) if r.reason == "duplicate"]


# -- confirmation: first orderId wins ----------------------------------------------------


def test_second_confirmation_with_same_order_id_is_discarded(
    client: FlaskClient, state: EventTrackState, key: str
) -> None:
    create_user(client, key, {"email": EMAIL})
    first = send(client, key, {"confirmation": {"orderId": "O-1", "total": 10}})
    assert first["message"] == "Event created"
    again = send(client, key, {"confirmation": {"orderId": "O-1", "total": 99}})
    assert again["message"] == "Event discarded" and again["reason"] == "duplicate"
    assert "order:O-1" in again["description"]
    numeric = send(client, key, {"confirmation": {"orderId": 7}})
    assert numeric["message"] == "Event created"
    assert send(client, key, {"confirmation": {"orderId": "7"}})["message"] == "Event discarded"
    assert send(client, key, {"confirmation": {"orderId": "O-2"}})["message"] == "Event created"
    events = stored(state, "confirmation")
    assert [(e.props["orderId"], e.dedup_key) for e in events] == [
        ("O-1", "order:O-1"),
        ("7", "order:7"),
        ("O-2", "order:O-2"),
    ]
    assert events[0].props["total"] == 10.0  # the first one was kept, not replaced
    assert duplicates(state) == ["confirmation", "confirmation"]


def test_order_ids_are_per_tenant(client: FlaskClient, state: EventTrackState, key: str) -> None:
    other = create_key(state.store, "globex").secret
    create_user(client, key, {"email": EMAIL})
    create_user(client, other, {"email": EMAIL})
    assert send(client, key, {"confirmation": {"orderId": "O-1"}})["message"] == "Event created"
    assert send(client, other, {"confirmation": {"orderId": "O-1"}})["message"] == "Event created"


# -- e-mail opens: once per window ---------------------------------------------------------


def test_email_opens_count_once_per_window(client: FlaskClient, state: EventTrackState, key: str) -> None:
    create_user(client, key, {"email": EMAIL})
    create_user(client, key, {"email": "other@example.com"})
    assert send(client, key, {"email_open": {"campaign_id": "c1"}})["message"] == "Event created"
    later = send(client, key, {"email_open": {"campaign_id": "c2"}})
    assert later["message"] == "Event discarded" and later["reason"] == "duplicate"
    assert "20 minutes" in later["description"]
    # another user, and other kinds, are not limited
    assert send(client, key, {"email_open": {}}, user="other@example.com")["message"] == "Event created"
    assert send(client, key, {"email_click": {"campaign_id": "c1"}})["message"] == "Event created"
    assert send(client, key, {"email_click": {"campaign_id": "c1"}})["message"] == "Event created"
    assert len(stored(state, "email_open")) == 2
    assert duplicates(state) == ["email_open"]


def _earlier_open(state: EventTrackState, minutes: int) -> None:
    at = utcnow() - timedelta(minutes=minutes)
    state.pipeline.submit(
        [
            Event(
                tenant="acme",
                source="profile",
                type="email_open",
                user=EMAIL,
                user_kind="email",
                occurred_at=at,
            )
        ]
    )


@pytest.mark.parametrize(("minutes_ago", "kept"), [(30, True), (21, True), (19, False), (1, False)])
def test_default_window_is_twenty_minutes(
    client: FlaskClient, state: EventTrackState, key: str, minutes_ago: int, kept: bool
) -> None:
    create_user(client, key, {"email": EMAIL})
    _earlier_open(state, minutes_ago)
    message = send(client, key, {"email_open": {}})["message"]
    assert message == ("Event created" if kept else "Event discarded")


class TestConfiguredWindow:
    @pytest.fixture
    def config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {**config, "EVENTTRACK_PROFILE_EMAIL_OPEN_WINDOW": 300}

    @pytest.mark.parametrize(("minutes_ago", "kept"), [(10, True), (6, True), (4, False)])
    def test_window_is_a_setting(
        self, client: FlaskClient, state: EventTrackState, key: str, minutes_ago: int, kept: bool
    ) -> None:
        create_user(client, key, {"email": EMAIL})
        _earlier_open(state, minutes_ago)
        message = send(client, key, {"email_open": {}})["message"]
        assert message == ("Event created" if kept else "Event discarded")
        if not kept:
            (rejection,) = state.store.iter_rejected(EventQuery())
            assert "5 minutes" in rejection.message


# -- races -----------------------------------------------------------------------------------


def _round_events(r: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"u{r}@example.com", {"email_open": {"campaign_id": f"c{r}"}}),
        (f"u{r}@example.com", {"confirmation": {"orderId": f"O-{r}"}}),
    ]


def _check_race_outcome(state: EventTrackState, answers: list[tuple[int, str, str]]) -> None:
    """Per round and rule: one ``Event created``, one ``Event discarded``; the store agrees."""
    for r in range(ROUNDS):
        for kind in ("email_open", "confirmation"):
            messages = sorted(m for (rr, k, m) in answers if rr == r and k == kind)
            assert messages == ["Event created", "Event discarded"], (r, kind, messages)
    assert len(stored(state, "email_open")) == ROUNDS
    assert len({e.user for e in stored(state, "email_open")}) == ROUNDS
    assert len(stored(state, "confirmation")) == ROUNDS
    assert sorted(duplicates(state)) == sorted(["confirmation", "email_open"] * ROUNDS)


def test_racing_threads_keep_one(client: FlaskClient, state: EventTrackState, key: str, app: Any) -> None:
    for r in range(ROUNDS):
        create_user(client, key, {"email": f"u{r}@example.com"})
    barrier = threading.Barrier(2)
    answers: list[tuple[int, str, str]] = []
    failures: list[BaseException] = []

    def worker() -> None:
        own = app.test_client()
        try:
            for r in range(ROUNDS):
                for user, event in _round_events(r):
                    barrier.wait(timeout=30)
                    (kind,) = event
                    answers.append((r, kind, send(own, key, event, user=user)["message"]))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    _check_race_outcome(state, answers)


def _process_worker(url: str, key: str, barrier: Any, queue: Any) -> None:
    from example_app import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key", "EVENTTRACK_STORE_URL": url})
    client = app.test_client()
    answers = []
    try:
        for r in range(ROUNDS):
            for user, event in _round_events(r):
                barrier.wait(timeout=60)
                (kind,) = event
                body = {"user": {"email": user}, "event": event}
                response = client.post("/v1/event/", json=body, headers={"Authorization": key})
                answers.append((r, kind, response.json["results"]["message"]))
    finally:
        queue.put(answers)


def test_racing_processes_keep_one(client: FlaskClient, state: EventTrackState, key: str) -> None:
    for r in range(ROUNDS):
        create_user(client, key, {"email": f"u{r}@example.com"})
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    queue = ctx.Queue()
    url = state.config["EVENTTRACK_STORE_URL"]
    workers = [ctx.Process(target=_process_worker, args=(url, key, barrier, queue)) for _ in range(2)]
    for p in workers:
        p.start()
    answers = [answer for _ in workers for answer in queue.get(timeout=180)]
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0
    _check_race_outcome(state, answers)


def test_concurrent_attribute_merges_lose_nothing(
    client: FlaskClient, state: EventTrackState, key: str, app: Any
) -> None:
    create_user(client, key, {"email": EMAIL})
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        own = app.test_client()
        barrier.wait(timeout=30)
        for i in range(10):
            send(own, key, {"update": {f"w{n}_{i}": i}})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    profile = state.store.get_profile("acme", state.pipeline.user_key(EMAIL))
    assert profile is not None
    assert profile["attributes"] == {f"w{n}_{i}": i for n in range(4) for i in range(10)}
    assert len(stored(state, "update")) == 40
