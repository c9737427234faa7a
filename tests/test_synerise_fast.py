"""Synerise ``/v4/events``: the hand-written fast path accepts exactly what the
marshmallow schemas accept, and loads the same data; cached bearer tokens keep
expiry and revocation exact."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner

from example_app import create_app
from flask_eventtrack import get_state
from flask_eventtrack.dialects import _synerise_reader
from flask_eventtrack.dialects._synerise_reader import Invalid, SyneriseReader, load
from flask_eventtrack.events import Event
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key
from flask_eventtrack.schemas.synerise import RESERVED_PARAMS

MAX = 1024  # EVENTTRACK_MAX_STRING_LENGTH's default
DEPTH = 8  # EVENTTRACK_MAX_JSON_DEPTH's default
UUID = "e0097757-d1e2-44ac-ba3c-d97979a354c1"


def nested(levels: int, leaf: Any = 1) -> Any:
    """``levels`` containers, alternating dict and list, around ``leaf``."""
    value = leaf
    for n in range(levels):
        value = {"k": value} if n % 2 else [value]
    return value


def custom(**fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"action": "dog.bark", "label": "bark", "client": {"id": 5}}
    item.update(fields)
    return {k: v for k, v in item.items() if v is not DROP}


DROP: Any = object()

CLIENTS: list[Any] = [
    {"id": 5},
    {"id": "5"},
    {"id": 0},
    {"id": -7},
    {"id": 10**1023},  # 1024 digits
    {"id": 10**1024},  # 1025 digits
    {"id": True},
    {"id": 1.0},
    {"id": 1.5},
    {"id": ""},
    {"id": None},
    {"id": "x" * MAX},
    {"id": "x" * (MAX + 1)},
    {"id": "a\x00b"},
    {"id": [5]},
    {"customId": "c-1"},
    {"customId": 5},
    {"customId": ""},
    {"customId": None},
    {"uuid": UUID},
    {"uuid": UUID.upper()},
    {"uuid": "{" + UUID.replace("-", "") + "}"},
    {"uuid": "urn:uuid:" + UUID},
    {"uuid": "not-a-uuid"},
    {"uuid": UUID + "0"},
    {"uuid": 5},
    {"uuid": None},
    {"uuid": " " * 70},
    {"email": "jan@example.com"},
    {"email": "Jan.Kowalski+tag@example.co.uk"},
    {"email": "jan@localhost"},
    {"email": "not-an-email"},
    {"email": "jan@"},
    {"email": "x" * 250 + "@e.com"},
    {"email": ""},
    {"email": 5},
    {"email": None},
    {"id": 5, "customId": "c", "uuid": UUID, "email": "jan@example.com"},
    {"email": "jan@example.com", "uuid": UUID},
    {"customId": "c", "id": None},
    # null counts as absent for an identifier; all of them null is no identifier
    {"id": 5, "customId": None, "uuid": None, "email": None},
    {"id": None, "customId": None, "uuid": None, "email": None},
    {"email": "jan@example.com", "id": None},
    {"uuid": UUID, "customId": None},
    {"id": 5, "phone": None},
    {"id": 5, "email": "nope"},
    {"id": 5, "phone": "123"},
    {"phone": "123"},
    {},
    None,
    [],
    "5",
    5,
]

PARAMS: list[Any] = [
    {},
    {"loudness": 3, "mood": "happy", "mailmanScared": True, "ratio": 0.5, "none": None},
    {"list": [1, "a", None, 1.5, [2, {"x": "y"}]], "obj": {"a": {"b": "c"}}},
    *({name: 1} for name in sorted(RESERVED_PARAMS)),
    {"Label": 1, "clientid": 1, "ID": 1},  # reserved names are case-sensitive
    {"a": nested(DEPTH - 1)},
    {"a": nested(DEPTH - 2)},
    {"a": nested(DEPTH)},
    {"a": nested(DEPTH - 1, "s")},
    {"a": nested(DEPTH - 1, [])},
    {"a": nested(DEPTH - 2, {})},
    {"a": "v" * MAX},
    {"a": "v" * (MAX + 1)},
    {"a": ["v" * (MAX + 1)]},
    {"a": {"b": "v" * (MAX + 1)}},
    {"k" * MAX: 1},
    {"k" * (MAX + 1): 1},
    {"a": {"k" * (MAX + 1): 1}},
    {"a\x00": 1},
    {"a": "b\x00c"},
    {"a": ["\x00"]},
    {"a": {"b\x00": 1}},
    {"a": math.nan},
    {"a": math.inf},
    {"a": [1, -math.inf]},
    {"a": {"b": math.nan}},
    {"a": 10**30},
    {"a": ""},
    {"": 1},
    None,
    [],
    [{"a": 1}],
    "params",
    5,
]

TIMES: list[Any] = [
    "2022-11-28T12:18:27Z",
    "2022-11-28T12:18:27z",
    "2022-11-28t12:18:27Z",
    "2022-11-28T12:18:27+00:00",
    "2022-11-28T12:18:27-04:00",
    "2022-11-28T12:18:27.123Z",
    "2022-11-28T12:18:27.123456+02:00",
    "2022-11-28T12:18:27.1+02:00",
    "2022-11-28 12:18:27Z",
    "2022-11-28T12:18:27",
    "2022-11-28T12:18:27.123",
    "2022-11-28",
    "2999-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "2022-13-01T00:00:00Z",
    "20221128T121827Z",
    "2022-11-28T12:18:27+25:00",
    "2022-11-28T12:18:27Z" + " " * 44,
    "2022-11-28T12:18:27Z" + " " * 45,
    "2022-11-28T12:18:27." + "1" * 38 + "+00:00",  # 64 characters
    "2022-11-28T12:18:27." + "1" * 39 + "+00:00",  # 65: fromisoformat would take it
    "2022-11-28T12:18:27.123456+05:30:00.123456",
    "",
    "yesterday",
    1669637907,
    1669637907.5,
    None,
    True,
    ["2022-11-28T12:18:27Z"],
]

SALTS: list[Any] = ["s", "salt-1", "", "x" * MAX, "x" * (MAX + 1), "a\x00", 5, 1.5, True, None, ["s"], {}]
LABELS: list[Any] = ["bark", "", "x" * MAX, "x" * (MAX + 1), "a\x00b", 5, True, None, ["bark"]]
ACTIONS: list[Any] = [
    "dog.bark",
    "page.visit",
    "a",
    "A1:b-c_d.e",
    "x" * 128,
    "x" * 129,
    "",
    "dog bark",
    "_dog",
    ".dog",
    "dog.bark\n",
    "dog/bark",
    "żółw",
    5,
    True,
    None,
    ["dog.bark"],
]
SKUS: list[Any] = ["A1", "", 5, 0, -1, True, False, 1.5, None, ["A1"], {"a": 1}, "x" * (MAX + 1), "\x00"]

# Hand-picked bodies, then one mutation per field and tricky value.
SAMPLES: list[tuple[str, Any]] = [
    ("custom", custom()),
    ("custom", custom(client={"id": 5092159999}, time="2022-11-28T12:18:27Z", params={"loudness": 3})),
    ("custom", custom(label=DROP)),
    ("custom", custom(client=DROP)),
    ("custom", custom(action=DROP)),
    ("custom", custom(type="custom")),
    ("custom", custom(parmas={"a": 1})),
    ("custom", custom(eventUUID=UUID)),
    ("custom", custom(time="2022-11-28T12:18:27Z", eventSalt="s")),
    ("custom", custom(eventSalt="s")),
    ("custom", custom(time=None, params=None, eventSalt=None)),  # null optionals count as absent
    ("custom", custom(time=None, eventSalt="s")),
    ("custom", {}),
    ("custom", []),
    ("custom", None),
    ("custom", "dog.bark"),
    ("hit-timer", {"label": "t", "client": {"id": 1}}),
    ("hit-timer", {"label": "t", "client": {"id": 1}, "action": "client.hitTimer"}),
    ("hit-timer", {"label": "t", "client": {"id": 1}, "action": "dog.bark"}),
    ("hit-timer", {"label": "t", "client": {"id": 1}, "action": "x" * 2000}),
    ("hit-timer", {"label": "t", "client": {"id": 1}, "action": None, "time": None}),
    ("added-to-cart", {"label": "t", "client": {"id": 1}, "params": None}),
    ("hit-timer", {"label": "t", "client": {"id": 1}, "type": "hit-timer"}),
    ("visited-page", {"label": "t", "client": {"customId": "c"}, "params": {"url": "https://e.com/"}}),
    ("added-to-cart", {"label": "t", "client": {"id": 1}}),
    (
        "added-to-cart",
        {"label": "t", "client": {"id": 1}, "params": {"sku": "A1"}, "action": "product.addToCart"},
    ),
]
for value in CLIENTS:
    SAMPLES += [("custom", custom(client=value)), ("logged-in", custom(action=DROP, client=value))]
for value in PARAMS:
    SAMPLES += [("custom", custom(params=value)), ("shared", custom(action=DROP, params=value))]
for value in TIMES:
    SAMPLES += [("custom", custom(time=value)), ("searched", custom(action=DROP, time=value))]
for value in SALTS:
    SAMPLES += [("custom", custom(eventSalt=value, time="2022-11-28T12:18:27Z"))]
    SAMPLES += [("registered", custom(action=DROP, eventSalt=value))]
for value in LABELS:
    SAMPLES += [("custom", custom(label=value)), ("logged-out", custom(action=DROP, label=value))]
for value in ACTIONS:
    SAMPLES += [("custom", custom(action=value)), ("hit-timer", custom(action=value))]
for value in SKUS:
    for endpoint in ("added-to-cart", "removed-from-cart", "added-to-favorites"):
        SAMPLES += [(endpoint, custom(action=DROP, params={"sku": value, "qty": 2}))]
    SAMPLES += [("custom", custom(params={"sku": value}))]


def schema_load(reader: SyneriseReader, endpoint: str, item: Any) -> dict[str, Any] | None:
    schema = reader.schemas.custom if endpoint == "custom" else reader.schemas.for_endpoint(endpoint)
    try:
        return load(schema, item)
    except Invalid:
        return None


def outcome(reader: SyneriseReader, endpoint: str, item: Any) -> dict[str, Any] | list[dict[str, Any]]:
    """The event ``v4_event`` builds, or the errors it raises."""
    try:
        event: Event = reader.v4_event("acme", item, endpoint)
    except Invalid as exc:
        return exc.errors
    return {**event.to_dict(), "replace": event.replace, "keep_future": event.keep_future}


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyneriseReader]:
    """One app for the whole module: the readers only validate, never write."""
    path = tmp_path_factory.mktemp("fast")
    app = create_app({"TESTING": True, "SECRET_KEY": "k", "EVENTTRACK_STORE_URL": f"sqlite:///{path}/e.db"})
    yield SyneriseReader(get_state(app))
    get_state(app).store.close()


def test_the_samples_cover_both_answers(reader: SyneriseReader) -> None:
    """The samples are worth something only if both paths accept some and refuse some."""
    accepted = [schema_load(reader, endpoint, item) is not None for endpoint, item in SAMPLES]
    assert len(SAMPLES) > 300 and 100 < sum(accepted) < len(SAMPLES) - 100


@pytest.mark.parametrize(("endpoint", "item"), SAMPLES)
def test_fast_path_accepts_exactly_what_the_schema_accepts(
    reader: SyneriseReader, endpoint: str, item: Any
) -> None:
    fast = reader.fast_v4(item, endpoint)
    slow = schema_load(reader, endpoint, item)
    assert (fast is None) == (slow is None), (fast, slow)
    assert fast == slow


@pytest.mark.parametrize(("endpoint", "item"), SAMPLES[:: max(1, len(SAMPLES) // 60)])
def test_both_paths_build_the_same_event(
    reader: SyneriseReader, endpoint: str, item: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    monkeypatch.setattr(_synerise_reader, "utcnow", lambda: now)  # eventSalt without time
    fast = outcome(reader, endpoint, item)
    monkeypatch.setattr(reader, "fast_v4", lambda item, endpoint: None)
    assert outcome(reader, endpoint, item) == fast


def test_a_valid_body_never_reaches_marshmallow(
    reader: SyneriseReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("marshmallow ran for a valid body")

    monkeypatch.setattr(reader.schemas.custom, "load", refuse)
    event = reader.v4_event(
        "acme", custom(params={"a": [1, {"b": "c"}]}, time="2022-11-28T12:18:27Z"), "custom"
    )
    assert event.type == "dog.bark" and event.user == "5" and event.props == {"a": [1, {"b": "c"}]}
    nulls = custom(client={"id": 5, "email": None}, params=None, time=None, eventSalt=None)
    event = reader.v4_event("acme", nulls, "custom")
    assert event.user == "5" and event.props == {} and event.dedup_key is None


# -- bearer tokens: the per-worker cache keeps expiry and revocation exact ---------------


def post(client: FlaskClient, token: str) -> Any:
    body = json.dumps(custom())
    headers = {"Authorization": f"Bearer {token}"}
    return client.post("/v4/events/custom", data=body, content_type="application/json", headers=headers)


def exchange(client: FlaskClient, secret: str) -> str:
    token: str = client.post("/v4/auth/token", json={"apiKey": secret}).get_json()["token"]
    return token


def test_a_cached_token_still_expires_on_time(
    client: FlaskClient, state: EventTrackState, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = exchange(client, create_key(state.store, "acme", "api").secret)
    assert post(client, token).status_code == 202  # verified once: now cached
    signed = int(time.time())
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: signed + 3600 + 5)
    response = post(client, token)
    assert response.status_code == 401 and "expired" in response.get_json()["message"]
    monkeypatch.undo()
    token = exchange(client, create_key(state.store, "acme", "api").secret)
    assert post(client, token).status_code == 202
    signed = int(time.time())
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: signed - 5)
    response = post(client, token)  # signed in the future: itsdangerous refuses it too
    assert response.status_code == 401 and "expired" in response.get_json()["message"]


def test_revocation_is_immediate_and_needs_no_key_scan(
    client: FlaskClient, state: EventTrackState, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = create_key(state.store, "acme", "api")
    token = exchange(client, key.secret)

    def no_scan(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("list_keys scanned on a request")

    monkeypatch.setattr(state.store, "list_keys", no_scan)
    assert post(client, token).status_code == 202
    assert post(client, token).status_code == 202
    assert state.store.revoke_key(key.id)
    response = post(client, token)
    assert response.status_code == 401 and "revoked" in response.get_json()["message"]


def test_a_tampered_copy_of_a_cached_token_is_refused(client: FlaskClient, state: EventTrackState) -> None:
    token = exchange(client, create_key(state.store, "acme", "api").secret)
    assert post(client, token).status_code == 202
    # Change the signature's first character: the last one of a base64 text may
    # carry only padding bits, so changing it can leave the bytes as they were.
    head, _, signature = token.rpartition(".")
    tampered = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    assert post(client, tampered).status_code == 401


def test_an_action_with_a_final_newline_is_refused_by_both_paths(reader: SyneriseReader) -> None:
    item = custom(action="dog.bark\n")
    assert reader.fast_v4(item, "custom") is None and schema_load(reader, "custom", item) is None
