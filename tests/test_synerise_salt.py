"""Synerise ``eventSalt``: overwriting, what never overwrites, and two racing overwrites."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from test_synerise import event, issue_token, post, stored, utc

from example_app import create_app
from flask_eventtrack import get_state
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.stores import EventQuery

T = "2022-11-28T12:18:27Z"


@pytest.fixture
def token(client: FlaskClient, state: EventTrackState) -> str:
    return issue_token(client, state)


def salted(**extra: Any) -> dict[str, Any]:
    return event(**{"time": T, "eventSalt": "salt-1", "client": {"id": 5092159999}, **extra})


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The pipeline's receipt times, one per request, so save times are known."""
    times = [utc(2026, 1, 1, 0, 0, s) for s in range(0, 60, 5)]
    queue = list(times)
    monkeypatch.setattr("flask_eventtrack.pipeline.utcnow", lambda: queue.pop(0))
    return times


def test_same_salt_replaces_the_event_entirely(client, state, token, clock) -> None:
    assert post(client, "/v4/events/custom", salted(params={"v": 1, "old": True}), token).status_code == 202
    [first] = stored(state)
    assert first.received_at == clock[0]
    response = post(client, "/v4/events/custom", salted(params={"v": 2}), token)
    assert response.status_code == 202
    [second] = stored(state)
    assert state.store.count_events(EventQuery()) == 1
    assert second.id == first.id
    assert second.occurred_at == first.occurred_at == utc(2022, 11, 28, 12, 18, 27)
    assert second.received_at == clock[1] != first.received_at  # the save time changes
    assert second.props == {"v": 2}
    assert second.dedup_key == first.dedup_key


def test_salted_events_in_one_batch_overwrite_too(client, state, token) -> None:
    items = [{**salted(params={"n": 1}), "type": "custom"}, {**salted(params={"n": 2}), "type": "custom"}]
    assert post(client, "/v4/events/batch", items, token).status_code == 202
    [e] = stored(state)
    assert e.props == {"n": 2}


@pytest.mark.parametrize(
    "change",
    [
        {"eventSalt": "salt-2"},
        {"time": "2022-11-28T12:18:28Z"},
        {"action": "dog.sleep"},
        {"client": {"id": 5092159998}},
        {"client": {"customId": "5092159999"}},
    ],
)
def test_a_different_salt_time_action_or_profile_is_a_new_event(client, state, token, change) -> None:
    assert post(client, "/v4/events/custom", salted(), token).status_code == 202
    assert post(client, "/v4/events/custom", salted(**change), token).status_code == 202
    assert len(stored(state)) == 2


def test_times_one_millisecond_apart_are_two_events(client, state, token) -> None:
    # int(timestamp() * 1000) gave both 269032528265: the second replaced the first
    for time in ("1978-07-11T19:15:28.265Z", "1978-07-11T19:15:28.266Z"):
        assert post(client, "/v4/events/custom", salted(time=time), token).status_code == 202
    assert len(stored(state)) == 2


def test_same_time_in_another_offset_is_the_same_occurrence(client, state, token) -> None:
    assert post(client, "/v4/events/custom", salted(params={"v": 1}), token).status_code == 202
    assert post(client, "/v4/events/custom", salted(time="2022-11-28T08:18:27-04:00", params={"v": 2}), token)
    [e] = stored(state)
    assert e.props == {"v": 2}


def test_an_event_stored_without_salt_is_never_overwritten(client, state, token) -> None:
    plain = event(time=T, client={"id": 5092159999}, params={"v": "plain"})
    assert post(client, "/v4/events/custom", plain, token).status_code == 202
    assert post(client, "/v4/events/custom", salted(params={"v": "salted"}), token).status_code == 202
    assert post(client, "/v4/events/custom", salted(params={"v": "salted again"}), token).status_code == 202
    events = stored(state)
    assert sorted(e.props["v"] for e in events) == ["plain", "salted again"]
    assert [e.dedup_key for e in events if e.props["v"] == "plain"] == [None]


def test_salts_are_per_tenant(client, state, token) -> None:
    other = issue_token(client, state, "globex")
    assert post(client, "/v4/events/custom", salted(), token).status_code == 202
    assert post(client, "/v4/events/custom", salted(), other).status_code == 202
    assert sorted(e.tenant for e in stored(state)) == ["acme", "globex"]


def test_dedup_key_holds_no_raw_id_or_salt(client, state, token) -> None:
    assert post(client, "/v4/events/custom", salted(client={"email": "jane@example.com"}), token)
    [e] = stored(state)
    assert e.dedup_key is not None and e.dedup_key.startswith("salt:")
    assert "jane" not in e.dedup_key and "salt-1" not in e.dedup_key


def test_future_time_with_salt_overwrites_and_keeps_first_time(client, state, token) -> None:
    future = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()
    assert post(client, "/v4/events/custom", salted(time=future, params={"v": 1}), token).status_code == 202
    [first] = stored(state)
    assert post(client, "/v4/events/custom", salted(time=future, params={"v": 2}), token).status_code == 202
    [second] = stored(state)
    assert second.props == {"v": 2} and second.occurred_at == first.occurred_at == first.received_at
    assert second.original_time == future


def test_salt_without_time_does_not_overwrite(client, state, token, clock, monkeypatch) -> None:
    # Without "time" the occurrence time is the receipt time, part of the salt's
    # identity: two sends received in different milliseconds are two events.
    receipts = iter(clock)
    monkeypatch.setattr("flask_eventtrack.dialects._synerise_reader.utcnow", lambda: next(receipts))
    body = salted()
    del body["time"]
    assert post(client, "/v4/events/custom", body, token).status_code == 202
    assert post(client, "/v4/events/custom", body, token).status_code == 202
    assert len(stored(state)) == 2


def test_two_workers_racing_the_same_overwrite_keep_one_event(config, state, token) -> None:
    """Two apps (two stores, two connections) on one SQLite file, as two gunicorn workers."""
    apps = [create_app(config), create_app(config)]
    rounds = 15
    barrier = threading.Barrier(len(apps))
    statuses: list[int] = []
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            test_client: FlaskClient = apps[index].test_client()
            for n in range(rounds):
                barrier.wait(timeout=30)
                body = salted(params={"worker": index, "round": n})
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
    assert errors == []
    assert statuses == [202] * (rounds * len(apps))
    events = stored(state)
    assert len(events) == 1 and state.store.count_events(EventQuery()) == 1
    assert events[0].props["round"] == rounds - 1
    assert events[0].occurred_at == utc(2022, 11, 28, 12, 18, 27)


def test_overwrites_keep_one_definition(client, state: EventTrackState, token) -> None:
    for n in range(3):
        assert post(client, "/v4/events/custom", salted(params={f"p{n}": n}), token).status_code == 202
    [definition] = state.store.definitions("acme")
    assert definition["name"] == "dog.bark" and definition["params"] == ["p0", "p1", "p2"]
    assert len(stored(state)) == 1
