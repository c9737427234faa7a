"""Store edge cases, on SQLite *and* PostgreSQL: the definitions cap across
processes, users with many linked ids, and sub-millisecond time bounds."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from _pg import new_schema

from flask_eventtrack import store_from_url
from flask_eventtrack.events import Event, Rejection, new_event_id, parse_time
from flask_eventtrack.stores import MAX_DEFINITION_PARAMS, EventQuery, Store
from flask_eventtrack.stores.sqlite import SQLiteStore

T0 = parse_time("2026-01-05T10:00:00.000Z")
HALF_MS = timedelta(microseconds=500)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def pg_schema() -> str:
    return new_schema()


@pytest.fixture
def open_store(store_url: str, pg_schema: str) -> Iterator[Any]:
    """Opens stores on one database, as separate worker processes would; closes them after."""
    opened: list[Store] = []

    def open_one() -> Store:
        opened.append(store_from_url(store_url, schema=pg_schema))
        return opened[-1]

    yield open_one
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store: Any) -> Store:
    s: Store = open_store()
    return s


def ev(user: str = "u1", *, at: datetime = T0, type_: str = "click", **kw: Any) -> Event:
    kw.setdefault("received_at", at)
    return Event(type=type_, user=user, tenant="t1", source="test", occurred_at=at, id=new_event_id(), **kw)


def execute(store: Store, sql: str, *args: Any) -> None:
    """One statement, committed (``?`` placeholders on both stores)."""
    if isinstance(store, SQLiteStore):
        store.conn.execute(sql, args)
    else:
        store._rows(sql.replace("?", "%s"), args)  # type: ignore[attr-defined]


def params_of(store: Store) -> list[str]:
    (row,) = store.definitions()
    return list(row["params"])


# -- the definitions cap holds in the stored row -----------------------------
def test_definitions_cap_holds_across_workers(open_store: Any) -> None:
    first, second = open_store(), open_store()
    names = [f"a{i:04d}" for i in range(MAX_DEFINITION_PARAMS)]
    first.write([ev(props=dict.fromkeys(names, 1))])
    # A second worker (or a restart) knows nothing of the stored names.
    second.write([ev(props=dict.fromkeys((f"b{i:04d}" for i in range(MAX_DEFINITION_PARAMS)), 1))])
    second.write([ev(props={"c": 1})])
    assert params_of(open_store()) == names


def test_definitions_cap_keeps_stored_names_and_adds_the_smallest_new_ones(open_store: Any) -> None:
    first, second = open_store(), open_store()
    stored = [f"m{i:04d}" for i in range(MAX_DEFINITION_PARAMS - 3)]
    first.write([ev(props=dict.fromkeys(stored, 1))])
    second.write([ev(props=dict.fromkeys(["z", "m0000", "b", "a", "c", "y"], 1))])
    assert params_of(first) == sorted([*stored, "a", "b", "c"])


def test_definitions_row_over_the_cap_keeps_its_names_and_takes_no_more(store: Store) -> None:
    store.write([ev(props={"x": 1})])
    legacy = [f"p{i:04d}" for i in range(MAX_DEFINITION_PARAMS + 10)]  # written before the cap held
    execute(store, "UPDATE definitions SET params = ?", "[" + ",".join(f'"{n}"' for n in legacy) + "]")
    store._known.clear()  # as in a new worker
    store.write([ev(props={"a": 1})])
    assert params_of(store) == legacy


def test_remembered_definitions_stay_bounded_and_the_catalog_keeps_every_type(
    store: Store, monkeypatch: Any
) -> None:
    """A client inventing event types and keys must not grow each worker's memory
    without bound; what a worker forgot, the catalog still has, and still merges."""
    monkeypatch.setattr("flask_eventtrack.stores.MAX_KNOWN_NAMES", 30)

    def remembered() -> int:
        return sum(1 + len(params) for params in store._known.values())

    store.write([ev(type_=f"kind{i:02d}", props={"a": 1}) for i in range(25)])  # one batch: 50 names
    assert 0 < remembered() <= 30
    for i in range(25):
        store.write([ev(type_=f"kind{i:02d}", props={"b": 1, f"only{i}": 1})])
        assert remembered() <= 30
    store.write([ev(type_="kind00", props={"a": 1, "c": 1})])
    catalog = {row["name"]: row["params"] for row in store.definitions()}
    assert len(catalog) == 25
    assert catalog["kind00"] == ["a", "b", "c", "only0"]
    assert all(catalog[f"kind{i:02d}"] == ["a", "b", f"only{i}"] for i in range(1, 25))


def test_a_known_definition_costs_no_catalog_write(store: Store) -> None:
    """The bound must not cost the common case: a type seen before, nothing new."""
    store.write([ev(type_=f"kind{i}", props={"a": 1}) for i in range(100)])
    assert store.new_definitions([ev(type_="kind7", props={"a": 1})]) == []


# -- a user with more linked ids than SQLite binds variables ------------------
def test_reads_a_user_with_more_linked_ids_than_sqlite_binds(store: Store, monkeypatch: Any) -> None:
    if isinstance(store, SQLiteStore):
        connect = store._connect

        def low_limit(**kw: Any) -> sqlite3.Connection:
            conn = connect(**kw)
            conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 50)  # the default is 32766: stay fast
            return conn

        monkeypatch.setattr(store, "_connect", low_limit)
        store.close()
    store.write([ev(f"anon-{i}", links_to="john") for i in range(120)])
    store.write([ev("john", at=T0 + timedelta(seconds=1)), ev("other")])
    users = store.linked_users("john", "t1")
    assert len(users) == 121
    query = EventQuery(tenant="t1", users=users)
    assert sorted(e.user for e in store.iter_events(query)) == sorted(users)  # type: ignore[type-var]
    assert store.count_events(query) == 121


@pytest.mark.parametrize("users", [["a"], ["a", "b"]])
def test_sqlite_user_filter_reads_the_user_index(tmp_path: Any, users: list[str]) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/events.db")
    statements: list[str] = []
    connect = store._connect

    def traced(**kw: Any) -> sqlite3.Connection:
        conn = connect(**kw)
        conn.set_trace_callback(statements.append)  # with bound values expanded
        return conn

    store._connect = traced  # type: ignore[method-assign]
    try:
        query = EventQuery(tenant="t1", users=users, newest_first=True, limit=10)
        list(store.iter_events(query))
        store.count_events(query)
        selects = [s for s in statements if s.startswith("SELECT")]
        assert len(selects) == 2
        for sql in selects:
            plan = " ".join(row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql))
            assert "INDEX idx_events_user_occurred_at" in plan, (sql, plan)
    finally:
        store.close()


# -- time bounds finer than the stored millisecond ----------------------------
def test_sub_millisecond_bounds_round_up(store: Store) -> None:
    store.write(
        [ev(at=T0, item_id="A"), ev(at=T0 + timedelta(milliseconds=1), item_id="B")],
        [Rejection("bad", "m", "test", tenant="t1", received_at=T0)],
    )

    def ids(**bounds: Any) -> list[str | None]:
        query = EventQuery(**bounds)
        found = [e.item_id for e in store.iter_events(query)]
        assert store.count_events(query) == len(found)
        return found

    assert ids(until=T0 + HALF_MS) == ["A"]  # A is before the bound
    assert ids(since=T0 + HALF_MS) == ["B"]  # A is not at or after it
    assert ids(since=T0, until=T0 + timedelta(milliseconds=1)) == ["A"]  # whole milliseconds: as they are
    plus_one = timezone(timedelta(hours=1))
    assert ids(until=(T0 + HALF_MS).astimezone(plus_one)) == ["A"]
    assert ids(until=datetime.max.replace(tzinfo=UTC)) == ["A", "B"]  # rounding up would overflow
    assert ids(since=datetime.max.replace(tzinfo=UTC)) == []
    assert len(list(store.iter_rejected(EventQuery(until=T0 + HALF_MS)))) == 1
    assert list(store.iter_rejected(EventQuery(since=T0 + HALF_MS))) == []


def test_local_time_bounds_round_in_utc_across_a_dst_change(store: Store) -> None:
    """Rounding on the local clock moved a bound by an hour around the repeated hour."""
    from zoneinfo import ZoneInfo

    new_york = ZoneInfo("America/New_York")
    before, inside = datetime(2025, 11, 2, 5, 59, 59, 999000, UTC), datetime(2025, 11, 2, 6, 30, tzinfo=UTC)
    store.write([ev(at=before, item_id="before"), ev(at=inside, item_id="inside")])
    # 01:59:59.9995 EDT is 05:59:59.9995Z: rounds up to 06:00:00.000Z, not 07:00Z
    until = datetime(2025, 11, 2, 1, 59, 59, 999500, tzinfo=new_york)
    assert [e.item_id for e in store.iter_events(EventQuery(until=until))] == ["before"]
    # 01:30:00.0005 EST (fold=1) is 06:30:00.0005Z: "inside" is before it
    since = datetime(2025, 11, 2, 1, 30, 0, 500, tzinfo=new_york, fold=1)
    assert [e.item_id for e in store.iter_events(EventQuery(since=since))] == []
    assert [e.item_id for e in store.iter_events(EventQuery(until=since))] == ["before", "inside"]


@pytest.mark.parametrize("bound", ["since", "until"])
def test_a_naive_time_bound_is_refused_not_read_two_ways(bound: str) -> None:
    """SQLite took a naive bound for local time and PostgreSQL for UTC: the same query read
    different events. Like ``emit()``, a query takes aware times only."""
    with pytest.raises(ValueError, match=f"EventQuery.{bound} must be an aware datetime"):
        EventQuery(**{bound: datetime(2026, 1, 5, 8, 0)})
    with pytest.raises(TypeError, match=f"EventQuery.{bound} must be a datetime, not date"):
        EventQuery(**{bound: datetime(2026, 1, 5).date()})
    query = EventQuery(**{bound: datetime(2026, 1, 5, 8, 0, tzinfo=UTC)})
    setattr(query, bound, datetime(2026, 1, 5, 8, 0))  # set after the query was made: still refused
    with pytest.raises(ValueError, match=f"EventQuery.{bound} must be an aware datetime"):
        Store.where_clause(query, rejected=False, param="?", users=lambda u: ("", []), time_value=str)
