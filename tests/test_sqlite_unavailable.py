"""SQLite store that cannot be opened, read, or whose file vanished: 503 with Retry-After, never a 500
and never a 2xx for an event that is in no file."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from flask_eventtrack import StoreUnavailable
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key
from flask_eventtrack.stores import EventQuery
from flask_eventtrack.stores.sqlite import SQLiteStore

EVENT = {"data": [{"user_id": "u", "type": "purchase"}]}


@pytest.fixture
def store_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/db/events.db"  # its own directory, to remove


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    config["TESTING"] = False  # as in production: an escaped exception is a 500
    return config


def lose_directory(state: EventTrackState) -> None:
    """The directory is removed, and the request is served by a thread with no connection yet."""
    assert isinstance(state.store, SQLiteStore)
    shutil.rmtree(os.path.dirname(state.store.path))
    state.store.close()


def assert_503(response: Any) -> None:
    assert response.status_code == 503, response.status_code
    assert "Retry-After" in response.headers


# -- reads: a store that cannot be opened is a 503 ---------------------------
def test_profile_api_key_lookup_is_503(client: FlaskClient, state: EventTrackState) -> None:
    key = create_key(state.store, "shop", "api").secret
    lose_directory(state)
    headers = {"Authorization": key}
    assert_503(client.post("/v1/user", json={"user": {"email": "a@example.com"}}, headers=headers))


def test_synerise_token_exchange_is_503(client: FlaskClient, state: EventTrackState) -> None:
    key = create_key(state.store, "shop", "api").secret
    lose_directory(state)
    assert_503(client.post("/v4/auth/token", json={"apiKey": key}))


def test_example_app_stats_page_is_503(client: FlaskClient, state: EventTrackState) -> None:
    lose_directory(state)
    assert client.get("/").status_code == 503


READS: dict[str, Callable[[SQLiteStore], Any]] = {
    "find_key": lambda s: s.find_key("h"),
    "get_key": lambda s: s.get_key("k"),
    "list_keys": lambda s: s.list_keys(),
    "get_profile": lambda s: s.get_profile("shop", "u"),
    "linked_users": lambda s: s.linked_users("u"),
    "count_events": lambda s: s.count_events(EventQuery()),
    "stats": lambda s: s.stats(),
    "definitions": lambda s: s.definitions(),
    "iter_events": lambda s: list(s.iter_events(EventQuery())),
    "iter_rejected": lambda s: list(s.iter_rejected(EventQuery())),
    "check": lambda s: s.check(),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_every_read_that_cannot_connect_raises_store_unavailable(
    state: EventTrackState, monkeypatch: pytest.MonkeyPatch, read: Callable[[SQLiteStore], Any]
) -> None:
    assert isinstance(state.store, SQLiteStore)
    state.store.close()

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite3, "connect", connect)
    with pytest.raises(StoreUnavailable):
        read(state.store)


def test_an_error_while_iterating_an_export_raises_store_unavailable(
    client: FlaskClient, state: EventTrackState, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = state.store
    assert isinstance(store, SQLiteStore)
    many = {"data": [{"user_id": f"u{i}", "type": "t"} for i in range(600)]}  # more than one fetch
    assert client.post("/cortex", json=many).status_code == 200
    opened: list[sqlite3.Connection] = []
    connect = store._connect

    def keep() -> sqlite3.Connection:
        opened.append(connect())
        return opened[-1]

    monkeypatch.setattr(store, "_connect", keep)
    events = store.iter_events(EventQuery())
    next(events)
    opened[0].interrupt()  # the next fetch fails: sqlite3.OperationalError("interrupted")
    with pytest.raises(StoreUnavailable):
        list(events)


# -- writes: a connection whose file vanished must not acknowledge -----------
def test_write_after_the_directory_is_removed_is_503_and_creates_nothing(
    client: FlaskClient, state: EventTrackState, tmp_path: Any
) -> None:
    assert client.post("/cortex", json=EVENT).status_code == 200  # this thread's connection is open
    shutil.rmtree(tmp_path / "db")
    assert_503(client.post("/cortex", json=EVENT))  # it would go into the unlinked file
    os.makedirs(tmp_path / "db")
    assert_503(client.post("/cortex", json=EVENT))  # no new, empty database either
    with pytest.raises(StoreUnavailable):
        list(state.store.iter_events(EventQuery()))  # nor from a read's own connection
    assert os.listdir(tmp_path / "db") == []


def test_write_after_the_file_is_replaced_is_503_then_goes_to_the_new_file(
    client: FlaskClient, state: EventTrackState, store_url: str
) -> None:
    assert isinstance(state.store, SQLiteStore)
    path = state.store.path
    assert client.post("/cortex", json=EVENT).status_code == 200
    for suffix in ("", "-wal", "-shm"):  # e.g. a backup restored over it
        os.rename(path + suffix, path + suffix + ".old")
    fresh = SQLiteStore(store_url)
    assert_503(client.post("/cortex", json=EVENT))
    assert client.post("/cortex", json=EVENT).status_code == 200  # reopened: the new file
    assert fresh.count_events(EventQuery()) == 1
    fresh.close()
