"""The store contract: every test here runs on SQLite *and* on PostgreSQL.

A feature cannot exist in one store only: ``store`` (and ``app``/``client``,
through ``store_url``) are parametrized over both. The PostgreSQL runs use the
session's throwaway database (``tests/_pg.py``) with a schema of their own.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from _pg import new_schema
from flask.testing import FlaskClient

from flask_eventtrack import store_from_url
from flask_eventtrack.events import Event, Rejection, new_event_id, parse_time, utcnow
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.stores import EventQuery, Store

T0 = parse_time("2026-01-05T10:00:00.000Z")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pg_schema() -> str:
    return new_schema()


@pytest.fixture
def store_url(store_kind: str, tmp_path: Any, request: pytest.FixtureRequest) -> str:
    if store_kind == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def config(config: dict[str, Any], pg_schema: str) -> dict[str, Any]:
    config["EVENTTRACK_POSTGRES_SCHEMA"] = pg_schema
    return config


@pytest.fixture
def store(store_url: str, pg_schema: str) -> Iterator[Store]:
    s = store_from_url(store_url, schema=pg_schema, payload_limit=100)
    yield s
    s.close()


def ev(type: str = "click", *, at: Any = T0, user: str | None = "u1", **kw: Any) -> Event:
    """An event as the pipeline hands it to a store (id and times filled)."""
    kw.setdefault("tenant", "t1")
    kw.setdefault("source", "test")
    kw.setdefault("received_at", at)
    return Event(type=type, user=user, occurred_at=at, id=new_event_id(), **kw)


def events(store: Store, **filters: Any) -> list[Event]:
    return list(store.iter_events(EventQuery(**filters)))


def rejection(reason: str = "schema_violation", **kw: Any) -> Rejection:
    kw.setdefault("received_at", T0)
    return Rejection(reason, kw.pop("message", "bad"), kw.pop("source", "test"), **kw)


# -- events ----------------------------------------------------------------
def test_round_trip_keeps_every_field_and_props_exactly(store: Store) -> None:
    props = {"zeta": 1, "alpha": "ä€😀", "big": 1e16, "small": 1.5e-7, "int": 2**53 + 1,
             "none": None, "nested": {"b": [1, 2.0, "x"], "a": True}}  # fmt: skip
    sent = ev(item_type="product", item_id="42", user_kind="email", original_time="2030-01-01T00:00:00Z",
              props=props, status="accepted", received_at=T0 + timedelta(seconds=1))  # fmt: skip
    result = store.write([sent])
    assert result.stored == [sent] and result.rejected == []
    (back,) = events(store)
    assert back.to_dict() == sent.to_dict()
    assert list(back.props) == list(props)  # key order as written (exports are identical)
    assert isinstance(back.props["big"], float) and back.props["int"] == 2**53 + 1
    assert back.occurred_at is not None and back.occurred_at.utcoffset() == timedelta(0)


def test_batch_order_limit_offset_and_count(store: Store) -> None:
    batch = [ev(at=T0 + timedelta(milliseconds=i), props={"i": i}) for i in range(300)]
    store.write(list(reversed(batch)))
    assert [e.props["i"] for e in events(store)] == list(range(300))
    assert [e.props["i"] for e in events(store, newest_first=True, limit=3)] == [299, 298, 297]
    assert [e.props["i"] for e in events(store, limit=2, offset=10)] == [10, 11]
    assert [e.props["i"] for e in events(store, offset=298)] == [298, 299]
    assert store.count_events(EventQuery(limit=1)) == 300


def test_same_time_events_are_ordered_by_id(store: Store) -> None:
    batch = [ev() for _ in range(20)]
    store.write(batch)
    assert [e.id for e in events(store)] == sorted(e.id for e in batch)  # type: ignore[type-var]


def test_query_filters(store: Store) -> None:
    store.write([
        ev("view", user="a", item_type="product", item_id="1"),
        ev("buy", user="b", item_type="product", item_id="2", at=T0 + timedelta(hours=1)),
        ev("view", user="c", tenant="t2", source="other", at=T0 + timedelta(hours=2)),
    ])  # fmt: skip
    assert [e.user for e in events(store, tenant="t2")] == ["c"]
    assert [e.user for e in events(store, source="test")] == ["a", "b"]
    assert [e.user for e in events(store, type="view")] == ["a", "c"]
    assert [e.user for e in events(store, users=["a", "c", "zz"])] == ["a", "c"]
    assert events(store, users=[]) == []
    assert [e.user for e in events(store, item_type="product", item_id="2")] == ["b"]
    assert [e.user for e in events(store, since=T0 + timedelta(hours=1))] == ["b", "c"]
    assert [e.user for e in events(store, until=T0 + timedelta(hours=1))] == ["a"]
    assert store.count_events(EventQuery(type="view", tenant="t1")) == 1


def test_local_times_are_stored_as_their_instant_even_in_a_dst_fold(store: Store) -> None:
    # 02:30 happens twice in Berlin on 2024-10-27: 00:30Z (fold=0), then 01:30Z (fold=1).
    first = datetime(2024, 10, 27, 2, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    store.write([ev("a", at=first), ev("b", at=first.replace(fold=1))])
    assert {e.type: e.occurred_at for e in events(store)} == {
        "a": datetime(2024, 10, 27, 0, 30, tzinfo=UTC),
        "b": datetime(2024, 10, 27, 1, 30, tzinfo=UTC),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"props": {"score": float("nan")}}, "props cannot be stored as JSON"),
        ({"props": {"score": float("inf")}}, "props cannot be stored as JSON"),
        ({"props": {"price": Decimal("1.5")}}, "props cannot be stored as JSON"),
        ({"props": {"at": datetime(2024, 1, 1)}}, "props cannot be stored as JSON"),
        ({"props": {"name": "lone \ud800 surrogate"}}, "unpaired surrogate"),
        ({"props": {"name": "nul \x00"}}, "NUL character"),  # PostgreSQL's jsonb refuses \u0000
        ({"props": {"nul\x00key": 1}}, "NUL character"),
        ({"type": "nul\x00type"}, "NUL character"),
        ({"item_id": "\udfff"}, "unpaired surrogate"),
    ],
)
def test_an_event_no_store_can_keep_is_rejected_and_the_rest_stored(
    store: Store, change: dict[str, Any], message: str
) -> None:
    """What a host hook may put in an event: the same rejection in every store, never a 500."""
    good, bad = ev("good"), ev("bad")
    for name, value in change.items():
        setattr(bad, name, value)
    result = store.write([good, bad, ev("good")])
    assert [e.type for e in result.stored] == ["good", "good"]
    (rejected,) = result.rejected
    assert rejected.reason == "schema_violation" and message in rejected.message
    assert [e.type for e in events(store)] == ["good", "good"]
    (logged,) = store.iter_rejected(EventQuery())
    assert logged.reason == "schema_violation" and logged.payload and '"tenant":"t1"' in logged.payload


# -- write directives ----------------------------------------------------------
def test_dedup_key_first_wins_in_one_batch_and_across_writes(store: Store) -> None:
    first = ev("confirmation", dedup_key="order-1", props={"n": 1})
    result = store.write([first, ev("confirmation", dedup_key="order-1", props={"n": 2})])
    assert result.stored == [first]
    (dup,) = result.rejected
    assert dup.reason == "duplicate" and "order-1" in dup.message and dup.type == "confirmation"
    again = store.write([ev("confirmation", dedup_key="order-1", props={"n": 3})])
    assert again.stored == [] and again.rejected[0].reason == "duplicate"
    assert [e.props for e in events(store)] == [{"n": 1}]
    # the same key in another tenant is another order
    assert store.write([ev("confirmation", dedup_key="order-1", tenant="t2")]).stored
    assert [r.reason for r in store.iter_rejected(EventQuery())] == ["duplicate", "duplicate"]


def test_replace_keeps_id_and_occurred_at(store: Store) -> None:
    original = ev("dog.bark", dedup_key="salt-1", replace=True, props={"v": 1})
    assert store.write([original]).replaced == []
    later = T0 + timedelta(minutes=5)
    newer = ev("dog.bark", dedup_key="salt-1", replace=True, props={"v": 2}, at=later, item_id="9")
    result = store.write([newer])
    assert result.replaced == [newer] and result.stored == [newer] and result.rejected == []
    assert newer.id == original.id
    assert newer.occurred_at == T0  # what hooks and signals see is what was stored
    (kept,) = events(store)
    assert (kept.id, kept.occurred_at, kept.received_at) == (original.id, T0, later)
    assert kept.props == {"v": 2} and kept.item_id == "9"


def test_once_per_window(store: Store) -> None:
    window = timedelta(minutes=20)
    opened = [ev("email_open", at=T0 + timedelta(minutes=m), once_per=window) for m in (0, 5, 19.99, 20, 41)]
    result = store.write(opened[:2])
    assert result.stored == [opened[0]] and result.rejected[0].reason == "duplicate"
    assert "20 minutes" in result.rejected[0].message
    assert not store.write([opened[2]]).stored  # still inside the window
    assert store.write([opened[3]]).stored  # exactly 20 minutes later: outside
    assert store.write([opened[4]]).stored
    assert store.write([ev("email_open", user="u2", once_per=window)]).stored  # per user
    assert store.write([ev("email_open", tenant="t2", once_per=window)]).stored  # per tenant
    assert store.write([ev("click", once_per=window)]).stored  # per type
    assert store.count_events(EventQuery(type="email_open")) == 5


def test_links_are_followed_through_chains_and_cycles(store: Store) -> None:
    store.write([ev("login", user="anon1", links_to="known"), ev("login", user="anon2", links_to="anon1")])
    store.write([ev("login", user="anon1", links_to="known")])  # the same link again: no error
    assert sorted(store.linked_users("known")) == ["anon1", "anon2", "known"]
    assert store.linked_users("anon2") == ["anon2"]
    store.write([ev("login", user="known", links_to="anon2")])  # a cycle still terminates
    assert sorted(store.linked_users("anon2")) == ["anon1", "anon2", "known"]
    # Links are per tenant: another tenant's login never stitches these users.
    store.write([ev("login", tenant="t2", user="stranger", links_to="known")])
    assert sorted(store.linked_users("known", "t1")) == ["anon1", "anon2", "known"]
    assert "stranger" in store.linked_users("known", "t2") and "anon1" not in store.linked_users(
        "known", "t2"
    )
    assert "stranger" in store.linked_users("known")  # None: every tenant (operator tools)
    assert store.count_events(EventQuery(type="login")) == 5
    # Every tenant's own links in one read; a tenant that links nothing to the user is absent.
    assert store.linked_users_by_tenant("known") == {
        tenant: set(store.linked_users("known", tenant)) for tenant in ("t1", "t2")
    }
    assert store.linked_users_by_tenant("nobody") == {}


def test_a_failed_write_keeps_nothing(store: Store) -> None:
    """Atomic: one bad event (a duplicate id) and the whole batch is gone."""
    kept = ev()
    store.write([kept])
    twin = ev()
    twin.id = kept.id
    with pytest.raises(Exception):  # noqa: B017 - each driver has its own integrity error
        store.write([ev(props={"lost": 1}), twin], [rejection()])
    assert store.count_events(EventQuery()) == 1
    assert list(store.iter_rejected(EventQuery())) == []
    assert store.write([ev(props={"after": 1})]).stored


# -- catalog, rejected log, stats ---------------------------------------------
def test_definitions_catalog_merges_params(store: Store) -> None:
    store.write([ev("dog.bark", props={"loud": 1}), ev("dog.bark", props={"b": 1})])
    store.write([ev("dog.bark", props={"a": 1, "loud": 2}, received_at=T0 + timedelta(hours=1))])
    store.write([ev("other", tenant="t2", props={})])
    rows = store.definitions("t1")
    assert rows == [
        {"tenant": "t1", "source": "test", "name": "dog.bark", "first_seen": "2026-01-05T10:00:00.000Z",
         "last_seen": "2026-01-05T11:00:00.000Z", "count": 3, "params": ["a", "b", "loud"]}
    ]  # fmt: skip
    assert [(r["tenant"], r["name"], r["params"]) for r in store.definitions()] == [
        ("t1", "dog.bark", ["a", "b", "loud"]), ("t2", "other", [])]  # fmt: skip


def test_rejected_log_caps_payloads_and_filters(store: Store) -> None:
    later = T0 + timedelta(hours=1)
    store.write([], [rejection(payload="x" * 500, tenant="a"),
                     rejection("auth_failure", payload=None, tenant="b", received_at=later)])  # fmt: skip
    first, second = store.iter_rejected(EventQuery())
    assert first.payload == "x" * 100 + "...[truncated]" and first.reason == "schema_violation"
    assert (second.reason, second.payload, second.received_at) == (
        "auth_failure",
        None,
        T0 + timedelta(hours=1),
    )
    assert [r.tenant for r in store.iter_rejected(EventQuery(tenant="b"))] == ["b"]
    assert [r.tenant for r in store.iter_rejected(EventQuery(since=T0 + timedelta(minutes=1)))] == ["b"]
    assert [r.tenant for r in store.iter_rejected(EventQuery(limit=1))] == ["a"]


def test_stats(store: Store) -> None:
    store.write([ev("click"), ev("click"), ev("buy")], [rejection(type="click", tenant="t1"), rejection()])
    assert store.stats() == [
        {"tenant": "default", "source": "test", "type": "", "accepted": 0, "rejected": 1},
        {"tenant": "t1", "source": "test", "type": "buy", "accepted": 1, "rejected": 0},
        {"tenant": "t1", "source": "test", "type": "click", "accepted": 2, "rejected": 1},
    ]


# -- keys and profiles -------------------------------------------------------
def test_keys(store: Store) -> None:
    store.add_key("k1", "t1", "api", "hash1", "ci")
    store.add_key("k2", "t2", "tracker", "hash2", "")
    row = store.find_key("hash1")
    assert row is not None and row["id"] == "k1" and row["kind"] == "api" and row["revoked_at"] is None
    assert parse_time(row["created_at"]) <= utcnow()
    assert store.find_key("nope") is None
    assert [k["id"] for k in store.list_keys()] == ["k1", "k2"]
    assert [k["id"] for k in store.list_keys("t2")] == ["k2"]
    assert "key_hash" not in store.list_keys()[0]
    assert (
        store.revoke_key("k1") is True and store.revoke_key("k1") is False and store.revoke_key("zz") is False
    )
    assert store.find_key("hash1")["revoked_at"] is not None  # type: ignore[index]
    by_id = store.get_key("k2")
    assert by_id is not None and by_id["tenant"] == "t2" and by_id["kind"] == "tracker"
    assert by_id["revoked_at"] is None and "key_hash" not in by_id
    assert store.get_key("k1")["revoked_at"] is not None  # type: ignore[index]
    assert store.get_key("zz") is None


def test_profiles(store: Store) -> None:
    assert store.get_profile("t1", "u1") is None
    assert store.upsert_profile("t1", "u1", {"a": 1}, create=False) is None
    made = store.upsert_profile("t1", "u1", {"b": 1, "a": 2}, email="u1@example.com")
    assert made is not None and made["created"] is True and made["attributes"] == {"b": 1, "a": 2}
    merged = store.upsert_profile("t1", "u1", {"a": None, "c": {"x": 1}})
    assert merged is not None and merged["created"] is False
    assert merged["attributes"] == {"b": 1, "c": {"x": 1}} and merged["email"] == "u1@example.com"
    got = store.get_profile("t1", "u1")
    assert (
        got is not None and got["attributes"] == {"b": 1, "c": {"x": 1}} and got["email"] == "u1@example.com"
    )
    assert got["created_at"] == made["created_at"] and got["updated_at"] == merged["updated_at"]
    assert store.get_profile("t2", "u1") is None


def test_profile_merge_commits_with_its_event_or_not_at_all(store: Store) -> None:
    store.upsert_profile("t1", "u1", {"a": 1})
    kept = store.write([ev("update", merge_profile=({"a": 2, "b": "x"}, None))])
    assert len(kept.stored) == 1
    assert store.get_profile("t1", "u1")["attributes"] == {"a": 2, "b": "x"}  # type: ignore[index]
    # A discarded event (duplicate order) changes no attribute.
    store.write([ev("login", dedup_key="once", merge_profile=({"c": 1}, None))])
    refused = store.write([ev("login", dedup_key="once", merge_profile=({"d": 1}, None))])
    assert refused.stored == [] and refused.rejected[0].reason == "duplicate"
    assert store.get_profile("t1", "u1")["attributes"] == {"a": 2, "b": "x", "c": 1}  # type: ignore[index]
    # No profile yet: the event is kept, no profile is created by it.
    assert len(store.write([ev("update", user="nobody", merge_profile=({"z": 1}, None))]).stored) == 1
    assert store.get_profile("t1", "nobody") is None
    # A failing write (a duplicate id: a bug, not a client error) leaves neither behind.
    first = ev("update", merge_profile=({"e": 1}, None))
    again = ev("update", merge_profile=({"f": 1}, None))
    again.id = first.id
    with pytest.raises(Exception):  # noqa: B017 - the store's own integrity error, whatever its type
        store.write([first, again])
    assert "e" not in store.get_profile("t1", "u1")["attributes"]  # type: ignore[index]
    assert [e.id for e in events(store) if e.id == first.id] == []


def test_concurrent_profile_merges_and_dedups_lose_nothing(store: Store) -> None:
    barrier = threading.Barrier(8)
    results: list[int] = []

    def worker(n: int) -> None:
        barrier.wait()
        store.upsert_profile("t1", "racer", {f"k{n}": n})
        results.append(len(store.write([ev("confirmation", dedup_key="order-9", props={"n": n})]).stored))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    profile = store.get_profile("t1", "racer")
    assert profile is not None and profile["attributes"] == {f"k{n}": n for n in range(8)}
    assert sorted(results) == [0] * 7 + [1]
    assert store.count_events(EventQuery()) == 1


def test_check_and_close_then_reuse(store: Store) -> None:
    store.check()
    store.write([ev()])
    store.close()
    store.check()  # reopens on demand
    assert store.count_events(EventQuery()) == 1


# -- through the app ---------------------------------------------------------
def test_cortex_batch_through_the_app(client: FlaskClient, state: EventTrackState) -> None:
    body = {"data": [{"user_id": "u1", "type": "purchase", "sale_price": 49.99, "item_id": 7},
                     {"user_id": "u2", "type": "view"}, {"type": "no-user"}]}  # fmt: skip
    assert client.post("/cortex", json=body).status_code == 200
    stored = list(state.store.iter_events(EventQuery(source="cortex")))
    assert [(e.type, e.item_id, e.props) for e in stored] == [
        ("purchase", "7", {"sale_price": 49.99}),
        ("view", None, {}),
    ]
    assert stored[0].user == state.pipeline.user_key("u1") != "u1"
    (bad,) = state.store.iter_rejected(EventQuery())
    assert bad.reason == "schema_violation" and bad.source == "cortex"
    assert sum(row["accepted"] for row in client.get("/").get_json()["stats"]) == 2


def test_every_abstract_store_method_is_exercised_here() -> None:
    """A method added to the contract must be tested here, on both stores."""
    source = inspect.getsource(inspect.getmodule(test_every_abstract_store_method_is_exercised_here))  # type: ignore[arg-type]
    missing = [name for name in sorted(Store.__abstractmethods__) if f"store.{name}(" not in source]
    assert missing == []
