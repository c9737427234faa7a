"""SQLite store: durability answers (503, never a false 2xx), concurrency, schema."""

from __future__ import annotations

import multiprocessing
import sqlite3
from typing import Any

import pytest
from flask.testing import FlaskClient

from flask_eventtrack import ConfigurationError, store_from_url
from flask_eventtrack.events import Event, utcnow
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.stores import EventQuery
from flask_eventtrack.stores.sqlite import SQLiteStore

BATCH = {"data": [{"user_id": "u1", "type": "click"}, {"user_id": "u2", "type": "click"}]}


def count(state: EventTrackState) -> int:
    return state.store.count_events(EventQuery())


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    config["EVENTTRACK_SQLITE_BUSY_TIMEOUT"] = 200
    config["EVENTTRACK_RETRY_AFTER"] = 7
    return config


def test_locked_database_is_503_with_retry_after_then_recovers(
    client: FlaskClient, state: EventTrackState
) -> None:
    assert isinstance(state.store, SQLiteStore)
    other = sqlite3.connect(state.store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        response = client.post("/cortex", json=BATCH)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "7"
        assert "nothing was stored" in response.get_json()["message"]
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert count(state) == 0
    assert client.post("/cortex", json=BATCH).status_code == 200
    assert count(state) == 2


def test_disk_full_is_503_and_nothing_half_written(client: FlaskClient, state: EventTrackState) -> None:
    assert isinstance(state.store, SQLiteStore)
    conn = state.store.conn
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow: SQLITE_FULL
    big = {"data": [{"user_id": f"u{i}", "type": "click", "pad": "x" * 1000} for i in range(200)]}
    response = client.post("/cortex", json=big)
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert count(state) == 0


def test_read_only_database_is_503(client: FlaskClient, state: EventTrackState) -> None:
    assert isinstance(state.store, SQLiteStore)
    state.store.conn.execute("PRAGMA query_only = 1")
    response = client.post("/cortex", json=BATCH)
    assert response.status_code == 503
    state.store.conn.execute("PRAGMA query_only = 0")
    assert count(state) == 0


def test_custom_params_never_become_columns(client: FlaskClient, state: EventTrackState) -> None:
    assert isinstance(state.store, SQLiteStore)
    hostile = 'x" TEXT); DROP TABLE events; --'
    client.post("/cortex", json={"data": [{"user_id": "u", "type": "t", hostile: 1, "device": "m"}]})
    columns = [row[1] for row in state.store.conn.execute("PRAGMA table_info(events)")]
    assert hostile not in columns and "device" not in columns
    (event,) = state.store.iter_events(EventQuery())
    assert event.props == {hostile: 1, "device": "m"}


def test_wal_mode_and_indexes(state: EventTrackState) -> None:
    assert isinstance(state.store, SQLiteStore)
    conn = state.store.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 10000
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(events)")}
    assert {
        "idx_events_tenant_type_occurred_at",
        "idx_events_user_occurred_at",
        "idx_events_dedup",
    } <= indexes
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM events WHERE tenant='t' AND type='x' AND occurred_at > ''"
    ).fetchall()
    assert "idx_events_tenant_type_occurred_at" in str([tuple(r) for r in plan])


def test_synchronous_is_one_key_away(tmp_path: Any) -> None:
    store = store_from_url(f"sqlite:///{tmp_path}/s.db", synchronous="FULL")
    assert isinstance(store, SQLiteStore)
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    with pytest.raises(ConfigurationError, match="OFF, NORMAL, FULL or EXTRA"):
        store_from_url(f"sqlite:///{tmp_path}/s.db", synchronous="SOMETIMES")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://localhost/x", "Unknown store URL scheme 'mysql'"),
        ("sqlite://", "no file path"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_bad_store_urls(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        store_from_url(url)


def test_schema_is_versioned_and_reopening_is_idempotent(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/v.db"
    first = store_from_url(url)
    first.write([_event("a")])
    second = store_from_url(url)
    assert second.count_events(EventQuery()) == 1
    assert isinstance(second, SQLiteStore)
    applied = second.conn.execute("SELECT name FROM _sqlite_migrations").fetchall()
    assert "m001_initial" in [row[0] for row in applied]


def _event(user: str, **kwargs: Any) -> Event:
    now = utcnow()
    from flask_eventtrack.events import new_event_id

    return Event(
        tenant="t",
        source="app",
        type="x",
        user=user,
        occurred_at=now,
        received_at=now,
        id=new_event_id(),
        **kwargs,
    )


# -- several processes on one file ------------------------------------------------------


def _worker(url: str, worker: int, requests: int, queue: Any) -> None:
    from example_app import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "s", "EVENTTRACK_STORE_URL": url})
    client = app.test_client()
    acknowledged = 0
    for i in range(requests):
        batch = {"data": [{"user_id": f"w{worker}-r{i}-e{j}", "type": "click"} for j in range(5)]}
        if client.post("/cortex", json=batch).status_code == 200:
            acknowledged += 5
    queue.put(acknowledged)


def test_two_processes_write_concurrently_without_loss_or_duplicates(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    store_from_url(url)  # create the schema once, as init_app would
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(url, w, 60, queue)) for w in range(2)]
    for p in workers:
        p.start()
    acknowledged = [queue.get(timeout=120) for _ in workers]
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0
    store = store_from_url(url)
    stored = list(store.iter_events(EventQuery()))
    assert sum(acknowledged) == 2 * 60 * 5
    assert len(stored) == sum(acknowledged)
    assert len({e.id for e in stored}) == len(stored)
    assert len({e.user for e in stored}) == len(stored)  # every event once: no duplicates


def _write_in_child(store: SQLiteStore, queue: Any) -> None:
    inherited = store._local.conn  # the parent's connection, copied by fork()
    store.write([_event("child")])
    queue.put(store.conn is not inherited)


def test_a_forked_worker_opens_its_own_connection(tmp_path: Any) -> None:
    store = store_from_url(f"sqlite:///{tmp_path}/fork.db")
    assert isinstance(store, SQLiteStore)
    parent_conn = store.conn
    store.write([_event("parent")])
    ctx = multiprocessing.get_context("fork")  # what gunicorn --preload does
    queue = ctx.Queue()
    child = ctx.Process(target=_write_in_child, args=(store, queue))
    child.start()
    opened_its_own = queue.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert store.conn is parent_conn  # the parent keeps its own
    assert opened_its_own is True
    assert sorted(e.user for e in store.iter_events(EventQuery())) == ["child", "parent"]


def test_concurrent_first_start_migrations(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/race.db"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=store_from_url, args=(url,)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert store_from_url(url).count_events(EventQuery()) == 0


def test_threads_queue_on_the_process_write_lock_and_time_out_with_503(
    client: FlaskClient, state: EventTrackState
) -> None:
    import threading

    assert isinstance(state.store, SQLiteStore)
    lock = state.store._write_lock()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        response = client.post("/cortex", json=BATCH)  # waits EVENTTRACK_SQLITE_BUSY_TIMEOUT (200 ms)
        assert response.status_code == 503 and response.headers["Retry-After"] == "7"
    finally:
        release.set()
        holder.join()
    assert count(state) == 0
    assert client.post("/cortex", json=BATCH).status_code == 200
    assert count(state) == 2


def test_workers_on_an_up_to_date_database_do_not_import_sqlite_utils(tmp_path: Any) -> None:
    """sqlite-utils costs each worker ~2.6 MB of memory; it is needed only to migrate."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from flask_eventtrack import store_from_url\n"
        f"store = store_from_url('sqlite:///{tmp_path}/up.db')\n"
        "store.count_events(__import__('flask_eventtrack.stores', fromlist=['EventQuery']).EventQuery())\n"
        "print('sqlite_utils' in sys.modules)\n"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["True"]  # a new database: migrated with sqlite-utils
    assert again.stdout.split() == ["False"]  # up to date: checked with sqlite3 alone
    conn = sqlite3.connect(f"{tmp_path}/up.db")
    names = [row[0] for row in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
    assert names == ["m001_initial", "m002_profiles"]


def test_a_relative_database_path_keeps_its_file_when_the_process_changes_directory(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_eventtrack.events import new_event_id

    def event() -> Event:
        return Event(
            tenant="t", source="s", type="x", id=new_event_id(), occurred_at=utcnow(), received_at=utcnow()
        )

    monkeypatch.chdir(tmp_path)
    store = store_from_url("sqlite:///relative.db")
    try:
        assert len(store.write([event()]).stored) == 1
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        assert len(store.write([event()]).stored) == 1  # not a 503 for a file that "vanished"
        assert store.count_events(EventQuery()) == 2
        assert not (elsewhere / "relative.db").exists()
    finally:
        store.close()


def test_a_file_that_is_not_a_database_is_a_configuration_error_naming_it(tmp_path: Any) -> None:
    """Not a raw sqlite3 traceback after 20 retries meant for workers racing to migrate."""
    path = tmp_path / "corrupt.db"
    path.write_text("garbage that is no SQLite file\n" * 100)
    with pytest.raises(ConfigurationError, match=rf"{path} cannot be opened: file is not a database"):
        store_from_url(f"sqlite:///{path}")


def test_a_directory_that_cannot_be_made_is_a_configuration_error(tmp_path: Any) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigurationError, match="directory .*a-file cannot be created"):
        store_from_url(f"sqlite:///{tmp_path / 'a-file' / 'events.db'}")


@pytest.mark.parametrize(("folder", "cut"), [("run#2", "run"), ("what?", "what"), ("50%", "50%")])
def test_a_path_with_url_punctuation_opens_that_very_file(tmp_path: Any, folder: str, cut: str) -> None:
    """An instance folder named ``run#2`` must not become a database file named ``run``."""
    path = tmp_path / folder / "events.db"
    store = store_from_url(f"sqlite:///{path}")
    try:
        assert isinstance(store, SQLiteStore) and store.path == str(path)
        store.write([_event("a")])
        assert path.exists()
        assert folder == cut or not (tmp_path / cut).exists()  # urlsplit's path ended there
    finally:
        store.close()


def test_a_worker_losing_the_migration_race_retries(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite-utils checks for its table, then creates it: the worker that loses the race
    of a first start sees 'already exists' and must retry, not fail to boot."""
    import flask_eventtrack.stores.sqlite as sqlite_module

    real, calls = sqlite_module.migrate, []

    def loses_once(conn: sqlite3.Connection) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("table _sqlite_migrations already exists")
        real(conn)

    monkeypatch.setattr(sqlite_module, "migrate", loses_once)
    store = store_from_url(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        assert len(calls) == 2 and len(store.write([_event("a")]).stored) == 1
    finally:
        store.close()
