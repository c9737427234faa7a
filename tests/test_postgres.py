"""PostgreSQL store: failures answer 503 (never a 2xx) and heal by themselves;
schema versioning; exports identical to SQLite's; fork safety; settings."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import _pg_driver  # noqa: F401  (skips this module without psycopg)
import psycopg
import pytest
from _pg import TcpProxy, new_schema
from flask import Flask
from flask.testing import FlaskClient

from example_app import create_app
from flask_eventtrack import ConfigurationError, StoreUnavailable, get_state, store_from_url
from flask_eventtrack.cli import cli
from flask_eventtrack.events import Event, Rejection, parse_time
from flask_eventtrack.stores import EventQuery, Store, postgres_schema
from flask_eventtrack.stores.postgres import PostgresStore
from flask_eventtrack.stores.postgres_schema import SCHEMA_VERSION
from flask_eventtrack.stores.postgres_sql import lock_key

pytestmark = pytest.mark.postgres
BATCH = {"data": [{"user_id": "u1", "type": "click"}, {"user_id": "u2", "type": "view", "n": 1}]}
T0 = parse_time("2026-01-05T10:00:00.000Z")
T = TypeVar("T")


@pytest.fixture
def schema() -> str:
    return new_schema()


@pytest.fixture
def admin(pg_database: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        yield conn


@pytest.fixture
def pg_store(pg_database: str, schema: str) -> Iterator[PostgresStore]:
    store = store_from_url(pg_database, schema=schema, connect_timeout=1, retry_after=9)
    assert isinstance(store, PostgresStore)
    yield store
    store.close()


@pytest.fixture
def proxy(pg_database: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", 5432)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def config(config: dict[str, Any], pg_database: str, proxy: TcpProxy, schema: str) -> dict[str, Any]:
    """The app reaches PostgreSQL through the proxy, so tests can cut it off."""
    config.update(
        EVENTTRACK_STORE_URL=proxy.url(pg_database),
        EVENTTRACK_POSTGRES_SCHEMA=schema,
        EVENTTRACK_POSTGRES_CONNECT_TIMEOUT=1,
        EVENTTRACK_RETRY_AFTER=7,
    )
    return config


def count(admin: psycopg.Connection[Any], schema: str, table: str = "events") -> int:
    row = admin.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone()
    return int(row[0]) if row else -1


# -- failure and recovery ------------------------------------------------------
def test_server_down_is_503_with_retry_after_and_recovers(
    client: FlaskClient, proxy: TcpProxy, admin: psycopg.Connection[Any], schema: str
) -> None:
    assert client.post("/cortex", json=BATCH).status_code == 200
    proxy.stop()  # the database is gone: no connection, no new ones
    for _ in range(2):
        response = client.post("/cortex", json=BATCH)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "7"
        assert "nothing was stored" in response.get_json()["message"]
    assert count(admin, schema) == 2
    proxy.start()  # back, on the same address: the pool reconnects by itself
    deadline = time.monotonic() + 30
    while (response := client.post("/cortex", json=BATCH)).status_code != 200:
        assert response.status_code == 503 and "Retry-After" in response.headers
        assert time.monotonic() < deadline, "the store did not recover within 30 s"
        time.sleep(0.2)
    assert count(admin, schema) == 4


def test_cut_connections_are_replaced_without_an_error(
    client: FlaskClient, proxy: TcpProxy, admin: psycopg.Connection[Any], schema: str
) -> None:
    assert client.post("/cortex", json=BATCH).status_code == 200
    proxy.cut()  # every pooled connection is now dead (a restart looks the same)
    assert client.post("/cortex", json=BATCH).status_code == 200
    assert count(admin, schema) == 4


def test_terminated_backends_are_replaced(
    client: FlaskClient, app: Flask, admin: psycopg.Connection[Any], schema: str
) -> None:
    assert client.post("/cortex", json=BATCH).status_code == 200
    killed = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchall()
    assert killed
    assert client.post("/cortex", json=BATCH).status_code == 200
    assert count(admin, schema) == 4


def _write_while_killing(
    store: PostgresStore, admin: psycopg.Connection[Any], kills: int
) -> list[BaseException]:
    """Write a batch while its backend is terminated ``kills`` times mid-transaction.

    The admin connection holds the advisory lock the batch's dedup key needs,
    so the write waits inside its open transaction until it is killed.
    """
    lock = lock_key("dedup", "t1", "test", "order-1")
    admin.execute("SELECT pg_advisory_lock(%s)", (lock,))
    errors: list[BaseException] = []

    def write() -> None:
        try:
            store.write(
                [
                    Event("t1", "test", "click", user="u", occurred_at=T0, received_at=T0, id="e-1"),
                    Event(
                        "t1",
                        "test",
                        "buy",
                        user="u",
                        occurred_at=T0,
                        received_at=T0,
                        id="e-2",
                        dedup_key="order-1",
                    ),
                ],  # fmt: skip
                [Rejection("schema_violation", "bad", "test", received_at=T0)],
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        deadline = time.monotonic() + 20
        while kills and writer.is_alive() and time.monotonic() < deadline:
            row = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE '%%pg_advisory_xact_lock%%'"
            ).fetchone()
            kills -= 1 if row else 0
            time.sleep(0.02)
        assert kills == 0 or not writer.is_alive(), "the write never waited on its lock"
    finally:
        admin.execute("SELECT pg_advisory_unlock(%s)", (lock,))
        writer.join(timeout=20)
    return errors


def test_connection_lost_inside_a_write_is_retried_once_and_committed_once(
    pg_store: PostgresStore, admin: psycopg.Connection[Any], schema: str
) -> None:
    """Nothing was committed when the backend died before COMMIT: the write runs again, once."""
    pg_store.check()
    assert _write_while_killing(pg_store, admin, kills=1) == []
    assert count(admin, schema) == 2 and count(admin, schema, "rejected") == 1


def test_connection_lost_for_good_inside_a_write_is_503_and_commits_nothing(
    pg_store: PostgresStore, admin: psycopg.Connection[Any], schema: str
) -> None:
    pg_store.check()
    errors = _write_while_killing(pg_store, admin, kills=1000)  # every attempt, until the timeout
    assert len(errors) == 1 and isinstance(errors[0], StoreUnavailable)
    assert errors[0].retry_after == 9
    assert count(admin, schema) == 0 and count(admin, schema, "rejected") == 0
    assert count(admin, schema, "definitions") == 0
    assert pg_store.write([Event("t1", "test", "click", occurred_at=T0, received_at=T0, id="e-3")]).stored


def test_exhausted_pool_is_503_not_a_wait_forever(pg_database: str, schema: str) -> None:
    store = store_from_url(pg_database, schema=schema, pool_min_size=0, pool_max_size=1, connect_timeout=0.5)
    assert isinstance(store, PostgresStore)
    try:
        store.check()
        held = store._db.pool().getconn()
        try:
            with pytest.raises(StoreUnavailable):
                store.write([Event("t1", "test", "click", occurred_at=T0, received_at=T0, id="e-1")])
        finally:
            store._db.pool().putconn(held)
        assert store.write([Event("t1", "test", "click", occurred_at=T0, received_at=T0, id="e-2")]).stored
        assert store.count_events(EventQuery()) == 1
    finally:
        store.close()


def test_unreachable_at_start_is_503_then_works(pg_database: str, schema: str) -> None:
    proxy = TcpProxy(("127.0.0.1", 5432)).start()
    url = proxy.url(pg_database)
    proxy.stop()
    store = store_from_url(url, schema=schema, connect_timeout=1)
    try:
        with pytest.raises(StoreUnavailable):
            store.write([Event("t1", "test", "click", occurred_at=T0, received_at=T0, id="e-1")])
        proxy.start()
        assert store.write([Event("t1", "test", "click", occurred_at=T0, received_at=T0, id="e-1")]).stored
    finally:
        store.close()
        proxy.stop()


# -- schema ------------------------------------------------------------------
def test_schema_is_versioned_typed_and_in_its_own_namespace(
    pg_store: PostgresStore, admin: psycopg.Connection[Any], schema: str
) -> None:
    pg_store.check()
    versions = admin.execute(
        f'SELECT version, name FROM "{schema}".schema_version ORDER BY version'
    ).fetchall()
    assert [v for v, _ in versions] == list(range(1, SCHEMA_VERSION + 1))
    assert versions[0][1] == "m001_initial"
    types = dict(
        admin.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'events'",
            (schema,),
        ).fetchall()
    )
    assert types["occurred_at"] == types["received_at"] == "timestamp with time zone"
    assert types["props"] == "json"
    public = admin.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert public == (0,)
    # a second store (another process, a restart) finds nothing to do
    other = store_from_url(pg_store.url, schema=schema)
    try:
        other.check()
    finally:
        other.close()
    again = admin.execute(f'SELECT count(*) FROM "{schema}".schema_version').fetchone()
    assert again == (SCHEMA_VERSION,)


def test_a_later_release_migrates_an_older_schema(
    pg_database: str, admin: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database made by version 1 gets only the pending migrations, and keeps its data."""
    schema = new_schema()
    with monkeypatch.context() as m:
        m.setattr(postgres_schema, "MIGRATIONS", {1: postgres_schema.MIGRATIONS[1]})
        with psycopg.connect(pg_database) as conn:
            assert postgres_schema.migrate(conn, schema) == [1]
    admin.execute(
        f'INSERT INTO "{schema}".events (id, tenant, source, type, occurred_at, received_at, props)'
        " VALUES ('old', 't', 's', 'click', now(), now(), '{}')"
    )
    store = store_from_url(pg_database, schema=schema)
    try:
        assert store.upsert_profile("t", "u", {"a": 1}) is not None  # m002's table exists now
        assert [e.id for e in store.iter_events(EventQuery())] == ["old"]
    finally:
        store.close()
    versions = admin.execute(f'SELECT version FROM "{schema}".schema_version ORDER BY version').fetchall()
    assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))
    with psycopg.connect(pg_database) as conn:
        assert postgres_schema.migrate(conn, schema) == []


def test_processes_starting_at_once_migrate_once(pg_database: str, admin: psycopg.Connection[Any]) -> None:
    schema = new_schema()
    script = (
        "import sys; from flask_eventtrack import store_from_url;"
        "s = store_from_url(sys.argv[1], schema=sys.argv[2]); s.check(); s.close()"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, pg_database, schema]) for _ in range(6)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 6
    versions = admin.execute(f'SELECT version FROM "{schema}".schema_version ORDER BY version').fetchall()
    assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))


# -- parity with SQLite --------------------------------------------------------
def _same_history(store: Store) -> None:
    def event(i: int, **kw: Any) -> Event:
        at = T0 + timedelta(seconds=i)
        props = {"z": i, "a": [1.0, 1e16, "ü"], "m": {"y": None, "b": True}}
        return Event("t1", "test", kw.pop("type", "click"), user=f"u{i % 3}", occurred_at=at, received_at=at,
                     id=f"00000000-0000-7000-8000-{i:012d}", props=props, **kw)  # fmt: skip

    crawler = Rejection("bot", "a crawler", "test", payload="ü" * 9, received_at=T0,
                        id="00000000-0000-7000-8000-999999999999")  # fmt: skip
    store.write([event(i) for i in range(10)], [crawler])
    store.write([event(10, dedup_key="k", replace=True), event(11, dedup_key="k", replace=True)])
    store.write([event(12, type="open", once_per=timedelta(minutes=20)), event(13, links_to="u0")])


def test_exports_are_identical_to_sqlite(pg_database: str, schema: str, tmp_path: Any) -> None:
    """Same events in, the same NDJSON/CSV out (byte for byte), the same stats and catalog."""
    outputs: dict[str, list[Any]] = {}
    for url in (f"sqlite:///{tmp_path}/events.db", pg_database):
        app = create_app({"TESTING": True, "SECRET_KEY": "s", "EVENTTRACK_STORE_URL": url,
                          "EVENTTRACK_POSTGRES_SCHEMA": schema})  # fmt: skip
        store = get_state(app).store
        try:
            _same_history(store)
            runner = app.test_cli_runner()
            exports = [runner.invoke(cli, ["export", *a]) for a in ([], ["--format", "csv"], ["--rejected"])]
            assert all(r.exit_code == 0 for r in exports), [r.output for r in exports]
            outputs[url] = [r.stdout for r in exports] + [store.stats(), store.definitions(),
                                                          sorted(store.linked_users("u0"))]  # fmt: skip
        finally:
            store.close()
    sqlite, postgres = outputs.values()
    assert postgres == sqlite
    assert len(sqlite[0].splitlines()) == 13 and '"props": {"z": 0, "a": [1.0, 1e+16, "ü"]' in sqlite[0]


# -- what PostgreSQL cannot hold ---------------------------------------------
def test_nul_characters_are_rejected_not_an_error(pg_store: PostgresStore) -> None:
    result = pg_store.write(
        [Event("t1", "test", "a\x00b", occurred_at=T0, received_at=T0, id="e-1"),
         Event("t1", "test", "nul", occurred_at=T0, received_at=T0, id="e-2", props={"p": "x\x00"}),
         Event("t1", "test", "ok", occurred_at=T0, received_at=T0, id="e-3")],
        [Rejection("invalid_json", "bad \x00 body", "test", payload="\x00\ud800", received_at=T0)],
    )  # fmt: skip
    assert [e.type for e in result.stored] == ["ok"]
    assert [r.reason for r in result.rejected] == ["invalid_json", "schema_violation", "schema_violation"]
    logged = {(r.reason, r.type): r for r in pg_store.iter_rejected(EventQuery())}
    bad_body = logged[("invalid_json", None)]
    assert bad_body.message == "bad \ufffd body" and bad_body.payload == "\ufffd?"
    assert "NUL" in logged[("schema_violation", "a\ufffdb")].message
    assert json.loads(logged[("schema_violation", "a\ufffdb")].payload or "")["type"] == "a\x00b"
    assert json.loads(logged[("schema_violation", "nul")].payload or "")["props"] == {"p": "x\x00"}
    assert [e.type for e in pg_store.iter_events(EventQuery())] == ["ok"]


# -- processes and settings ------------------------------------------------------
def test_a_forked_child_opens_its_own_pool(pg_store: PostgresStore) -> None:
    pg_store.write([Event("t1", "test", "parent", occurred_at=T0, received_at=T0, id="e-1")])
    pid = os.fork()
    if pid == 0:  # the child: uses the inherited store object, then leaves at once
        code = 1
        try:
            pg_store.write([Event("t1", "test", "child", occurred_at=T0, received_at=T0, id="e-2")])
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # the parent's pooled connection still works: the child never closed it
    pg_store.write([Event("t1", "test", "parent", occurred_at=T0, received_at=T0, id="e-3")])
    assert [e.type for e in pg_store.iter_events(EventQuery())] == ["parent", "child", "parent"]


def test_pool_settings_come_from_the_config(app: Flask) -> None:
    store = get_state(app).store
    assert isinstance(store, PostgresStore)
    assert (store.min_size, store.max_size, store.connect_timeout) == (1, 10, 1.0)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"schema": "a-b; drop"}, "plain identifier"),
        ({"pool_min_size": 5, "pool_max_size": 2}, "POOL_MIN_SIZE"),
        ({"connect_timeout": 0}, "CONNECT_TIMEOUT"),
        ({"url": "postgresql://h/db?nosuchoption=1"}, "not a valid PostgreSQL URL"),
        ({"url": "postgresql:nothing"}, "is not a URL"),
    ],
)
def test_bad_settings_fail_at_init(options: dict[str, Any], words: str) -> None:
    url = options.pop("url", "postgresql://postgres@127.0.0.1/x")
    with pytest.raises(ConfigurationError, match=words):
        store_from_url(url, **options)


def test_postgres_scheme_aliases(pg_database: str, schema: str) -> None:
    for scheme in ("postgres", "postgresql+psycopg"):
        store = store_from_url(pg_database.replace("postgresql", scheme, 1), schema=schema)
        try:
            assert isinstance(store, PostgresStore)
            store.check()
        finally:
            store.close()


# -- a server that accepts connections but never answers ---------------------------
class SilentServer:
    """A "PostgreSQL" on 127.0.0.1 that accepts TCP connections and never answers
    (a hung or overloaded server). With ``hang_up_after`` it closes each connection
    after that many seconds instead of keeping it forever."""

    def __init__(self, hang_up_after: float | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.hang_up_after = hang_up_after
        if hang_up_after is not None:  # else nobody accepts: the kernel completes handshakes
            threading.Thread(target=self._accept, daemon=True).start()

    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/x?sslmode=disable&gssencmode=disable"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Timer(self.hang_up_after or 0, conn.close).start()

    def close(self) -> None:
        self.listener.close()


def _at_once(n: int, request: Callable[[], T]) -> list[tuple[T | BaseException, float]]:
    """``request()`` in ``n`` threads at once: what each returned (or raised), and when."""
    results: list[tuple[T | BaseException, float]] = []
    start = time.monotonic()

    def one() -> None:
        try:
            out: T | BaseException = request()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            out = exc
        results.append((out, time.monotonic() - start))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == n
    return results


def test_concurrent_requests_to_a_hung_server_each_get_a_503_within_the_connect_timeout(
    config: dict[str, Any],
) -> None:
    """Before this process's pool exists, one request tries to connect; the others
    wait for it at most the connect timeout (not their turn to try, N x the timeout)."""
    server = SilentServer()
    config.update(EVENTTRACK_STORE_URL=server.url(), EVENTTRACK_POSTGRES_CONNECT_TIMEOUT=1)
    app = create_app(config)
    client = app.test_client()
    try:
        results = _at_once(6, lambda: client.post("/cortex", json=BATCH))
    finally:
        get_state(app).store.close()
        server.close()
    for response, _ in results:
        assert not isinstance(response, BaseException), response
        assert response.status_code == 503 and response.headers["Retry-After"] == "7"
    # libpq waits at least 2 s for a connection; the waiters give up after 1 s
    slowest = max(elapsed for _, elapsed in results)
    assert slowest < 3.5, f"the slowest 503 came after {slowest:.1f} s"
    assert sorted(elapsed for _, elapsed in results)[-2] < 1.8


def test_requests_waiting_for_a_failed_connection_attempt_share_its_failure() -> None:
    """The attempt they waited for failed: they answer 503 at once, without trying again."""
    server = SilentServer(hang_up_after=0.5)
    store = store_from_url(server.url(), schema=new_schema(), connect_timeout=2, retry_after=9)
    event = Event("t1", "test", "click", occurred_at=T0, received_at=T0, id="e-1")
    try:
        results = _at_once(6, lambda: store.write([event]))
    finally:
        store.close()
        server.close()
    for error, _ in results:
        assert isinstance(error, StoreUnavailable) and error.retry_after == 9
    slowest = max(elapsed for _, elapsed in results)
    assert slowest < 1.5, f"the slowest 503 came after {slowest:.1f} s"
    assert server.accepted == 1


def test_a_child_forked_while_a_thread_opens_the_pool_does_not_wait_for_it() -> None:
    """The parent's thread holds the pool-creation lock at fork time; in the child
    that thread does not exist, so the child starts with a lock of its own."""
    server = SilentServer()
    store = store_from_url(server.url(), schema=new_schema(), connect_timeout=2)
    assert isinstance(store, PostgresStore)
    opening = threading.Thread(target=lambda: pytest.raises(StoreUnavailable, store._db.pool))
    opening.start()
    try:
        deadline = time.monotonic() + 5
        while not store._db._lock.locked():
            assert time.monotonic() < deadline, "the thread never started opening the pool"
            time.sleep(0.01)
        pid = os.fork()
        if pid == 0:  # the child: its lock is free, and there is no pool yet
            code = 1
            try:
                code = 0 if store._db._lock.acquire(timeout=0) and store._db._pool is None else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        opening.join(timeout=10)
        store.close()
        server.close()


@pytest.fixture
def app_role(pg_database: str, admin: psycopg.Connection[Any]) -> Iterator[tuple[str, str]]:
    """A login role without CREATE on the database, and its own URL: how many
    deployments run the app, with the schema made beforehand by an administrator."""
    role = f"et_app_{os.urandom(4).hex()}"
    database = pg_database.rsplit("/", 1)[1]
    admin.execute(f'CREATE ROLE "{role}" LOGIN')
    admin.execute(f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC, "{role}"')
    try:
        yield role, pg_database.replace("postgres@", f"{role}@", 1)
    finally:
        admin.execute(f'REASSIGN OWNED BY "{role}" TO postgres')
        admin.execute(f'DROP OWNED BY "{role}"')
        admin.execute(f'DROP ROLE "{role}"')


def _event(user: str) -> Event:
    return Event(
        tenant="t", source="s", type="x", user=user, occurred_at=T0, received_at=T0, id=os.urandom(8).hex()
    )


def test_a_role_without_create_on_the_database_runs_on_a_schema_made_for_it(
    app_role: tuple[str, str], admin: psycopg.Connection[Any], schema: str
) -> None:
    """PostgreSQL checks CREATE before IF NOT EXISTS: the store must not even ask."""
    role, url = app_role
    admin.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"')
    store = store_from_url(url, schema=schema, connect_timeout=2)
    try:
        assert len(store.write([_event("u1")]).stored) == 1  # migrated by its owner, then written
        assert store.count_events(EventQuery()) == 1
    finally:
        store.close()
    again = store_from_url(url, schema=schema, connect_timeout=2)  # an up-to-date schema: no CREATE at all
    try:
        assert len(again.write([_event("u2")]).stored) == 1
        assert again.count_events(EventQuery()) == 2
    finally:
        again.close()


def test_a_role_without_the_privileges_it_needs_gets_a_503_not_a_500(
    app_role: tuple[str, str], pg_store: PostgresStore
) -> None:
    role, url = app_role
    pg_store.write([_event("u1")])  # the schema exists, made by another role
    store = store_from_url(url, schema=pg_store.schema, connect_timeout=2)
    try:
        with pytest.raises(StoreUnavailable):
            store.write([_event("u2")])
    finally:
        store.close()
    assert pg_store.count_events(EventQuery()) == 1
