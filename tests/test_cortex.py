"""Cortex dialect: batches, custom params, impressions, signatures, the 200 contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from flask_eventtrack import sign_body
from flask_eventtrack.dialects.cortex import CortexReader
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.stores import EventQuery

URL = "/cortex"


def events(state: EventTrackState, **filters: Any) -> list[dict[str, Any]]:
    return [e.to_dict() for e in state.store.iter_events(EventQuery(**filters))]


def rejected(state: EventTrackState) -> list[dict[str, Any]]:
    return [r.to_dict() for r in state.store.iter_rejected(EventQuery())]


def test_vendor_example_is_stored_field_by_field(client: FlaskClient, state: EventTrackState) -> None:
    body = (
        '{"data":[{"user_id":"123","item_id":"ABC","type":"purchase","device":"mobile","sale_price":49.99}]}'
    )
    response = client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 200
    (event,) = events(state)
    assert event["tenant"] == "default"
    assert event["source"] == "cortex"
    assert event["type"] == "purchase"
    assert event["user"] == state.pipeline.user_key("123") != "123"
    assert event["user_kind"] == "user_id"
    assert event["item_id"] == "ABC"
    assert event["props"] == {"device": "mobile", "sale_price": 49.99}
    assert event["occurred_at"] == event["received_at"]
    assert event["original_time"] is None
    assert event["status"] == "accepted"
    assert rejected(state) == []


def test_trailing_slash_path_also_works(client: FlaskClient, state: EventTrackState) -> None:
    assert client.post(URL + "/", json={"data": [{"user_id": "1", "type": "click"}]}).status_code == 200
    assert len(events(state)) == 1


def test_timestamp_and_shown_impressions(client: FlaskClient, state: EventTrackState) -> None:
    data = [
        {"user_id": "u1", "type": "shown", "item_id": "A", "timestamp": 1700000000},
        {"user_id": "u1", "type": "shown", "item_id": 42, "timestamp": 1700000001},
    ]
    assert client.post(URL, json={"data": data}).status_code == 200
    stored = events(state, type="shown")
    assert [e["item_id"] for e in stored] == ["A", "42"]
    assert stored[0]["occurred_at"] == "2023-11-14T22:13:20.000Z"
    assert stored[0]["original_time"] is None  # sent and kept: nothing was overridden


def test_future_timestamp_is_replaced_and_kept_as_original(
    client: FlaskClient, state: EventTrackState
) -> None:
    future = 4102444800  # 2100-01-01
    client.post(URL, json={"data": [{"user_id": "u", "type": "click", "timestamp": future}]})
    (event,) = events(state)
    assert event["occurred_at"] == event["received_at"]
    assert event["original_time"] == str(future)


def test_valid_items_of_a_batch_survive_invalid_ones(client: FlaskClient, state: EventTrackState) -> None:
    data = [
        {"user_id": "ok", "type": "click"},
        {"type": "click"},
        "not an object",
        {"user_id": "u", "type": "click", "nested": {"a": 1}},
        {"user_id": "u", "type": "click", "timestamp": "yesterday"},
        {"user_id": 5, "type": "click"},
        {"user_id": "ok2", "type": "purchase", "flag": True, "n": None},
    ]
    response = client.post(URL, json={"data": data})
    assert response.status_code == 200
    assert [e["user"] for e in events(state)] == [state.pipeline.user_key(u) for u in ("ok", "ok2")]
    reasons = rejected(state)
    assert len(reasons) == 5
    assert all(r["reason"] == "schema_violation" for r in reasons)
    messages = [r["message"] for r in reasons]
    assert messages[0].startswith("data[1]:") and "user_id" in messages[0] and "Missing data" in messages[0]
    assert messages[1].startswith("data[2]:") and "JSON object" in messages[1]
    assert "nested" in messages[2] and "string, number or boolean" in messages[2]
    assert "timestamp" in messages[3]
    assert "user_id" in messages[4] and "Not a valid string" in messages[4]
    assert json.loads(reasons[0]["payload"]) == {"type": "click"}


@pytest.mark.parametrize(
    ("body", "content_type", "reason", "words"),
    [
        (b"{not json", "application/json", "invalid_json", "not valid JSON"),
        (b'{"data": []}', "text/plain", "content_type", "Content-Type must be application/json"),
        (b'{"data": {"user_id": "u"}}', "application/json", "schema_violation", '{"data": [event, ...]}'),
        (b"[1, 2]", "application/json", "schema_violation", '{"data": [event, ...]}'),
        (b'{"data": [{"user_id": "a\\u0000b", "type": "t"}]}', "application/json", "schema_violation", "NUL"),
        (b'{"data": [{"user_id": "a\x00b", "type": "t"}]}', "application/json", "schema_violation", "NUL"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "size_violation", "nested too deeply"),
        (b"\xff\xfe", "application/json", "invalid_json", "UTF-8"),
        (b'{"data": [{"user_id": "\\ud800", "type": "t"}]}', "application/json", "invalid_json", "surrogate"),
        (b'{"data": [{"user_id": "u", "type": "t", "p": NaN}]}', "application/json", "invalid_json", "NaN"),
        (
            b'{"data": [{"user_id": "u", "type": "t", "p": -Infinity}]}',
            "application/json",
            "invalid_json",
            "NaN",
        ),
    ],
)
def test_bad_bodies_are_200_and_logged_with_a_reason(
    client: FlaskClient, state: EventTrackState, body: bytes, content_type: str, reason: str, words: str
) -> None:
    response = client.post(URL, data=body, content_type=content_type)
    assert response.status_code == 200
    assert events(state) == []
    (rejection,) = rejected(state)
    assert rejection["reason"] == reason
    assert words in rejection["message"]
    assert rejection["source"] == "cortex"


def test_escapes_that_look_alike_are_kept(client: FlaskClient, state: EventTrackState) -> None:
    # An escaped backslash before "u0000" is text, not NUL; a surrogate pair is one emoji.
    body = b'{"data": [{"user_id": "u", "type": "t", "path": "C:\\\\u0000dir", "e": "\\ud83d\\ude00"}]}'
    assert client.post(URL, data=body, content_type="application/json").status_code == 200
    (event,) = events(state)
    assert event["props"] == {"path": "C:\\u0000dir", "e": "\U0001f600"}
    assert rejected(state) == []


def test_chunked_body_over_the_limit_is_refused_whole_not_truncated(
    client: FlaskClient, state: EventTrackState
) -> None:
    import io

    body = json.dumps({"data": [{"user_id": "u", "type": "t", "pad": "x" * 1000}] * 1100}).encode()
    assert len(body) > 1024 * 1024
    response = client.post(
        URL,
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 200  # the vendor's answer to anything the client sent
    assert events(state) == []  # not the first megabyte's events: the whole body is refused
    (rejection,) = rejected(state)
    assert rejection["reason"] == "size_violation"
    small = json.dumps({"data": [{"user_id": "u", "type": "t"}]}).encode()
    response = client.post(
        URL,
        input_stream=io.BytesIO(small),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 200 and len(events(state)) == 1


def test_long_strings_are_refused(client: FlaskClient, state: EventTrackState) -> None:
    long = "x" * 1025
    data = [{"user_id": long, "type": "t"}, {"user_id": "u", "type": "t", "note": long}]
    client.post(URL, json={"data": data})
    assert events(state) == []
    assert [("1024" in r["message"]) for r in rejected(state)] == [True, True]


def test_too_many_events_in_one_request(app: Any, client: FlaskClient, state: EventTrackState) -> None:
    data = [{"user_id": "u", "type": "t"}] * 1001
    assert client.post(URL, json={"data": data}).status_code == 200
    assert events(state) == []
    (rejection,) = rejected(state)
    assert rejection["reason"] == "size_violation"
    assert "1001 events" in rejection["message"] and "limit is 1000" in rejection["message"]


def test_body_over_the_byte_limit_is_200_and_logged(client: FlaskClient, state: EventTrackState) -> None:
    """The vendor always answers 200: a 413 would make a retrying client resend for ever."""
    response = client.post(URL, data=b"x" * (1024 * 1024 + 1), content_type="application/json")
    assert response.status_code == 200 and response.get_json() == {"status": "received"}
    (rejection,) = rejected(state)
    assert rejection["reason"] == "size_violation" and "limit is 1048576" in rejection["message"]


def test_the_host_apps_max_content_length_is_a_200_and_logged_too(config: dict[str, Any]) -> None:
    from example_app import create_app
    from flask_eventtrack import get_state

    app = create_app({**config, "MAX_CONTENT_LENGTH": 1000})
    try:
        response = app.test_client().post(URL, data=b"x" * 2000, content_type="application/json")
        assert response.status_code == 200 and response.get_json() == {"status": "received"}
        (rejection,) = rejected(get_state(app))
        assert (
            rejection["reason"] == "size_violation" and "MAX_CONTENT_LENGTH of 1000" in rejection["message"]
        )
    finally:
        get_state(app).store.close()


def test_wrong_method_and_unknown_path(client: FlaskClient) -> None:
    assert client.get(URL).status_code == 405
    assert client.get(URL + "/").status_code == 405
    assert client.post("/cortex/nope", json={}).status_code == 404


# -- fast path and marshmallow agree -------------------------------------------------

SAMPLES: list[Any] = [
    {"user_id": "u", "type": "t"},
    {"user_id": "u", "type": "t", "timestamp": 0, "item_id": 7, "a": 1.5, "b": False, "c": None},
    {"user_id": "", "type": "t"},
    {"user_id": "u", "type": ""},
    {"user_id": "u", "type": "t", "timestamp": True},
    {"user_id": "u", "type": "t", "timestamp": 1.0},
    {"user_id": "u", "type": "t", "timestamp": -1},
    {"user_id": "u", "type": "t", "timestamp": 253402300800},
    {"user_id": "u", "type": "t", "item_id": True},
    {"user_id": "u", "type": "t", "item_id": ""},
    {"user_id": "u", "type": "t", "x" * 129: 1},
    {"user_id": "u", "type": "t", "l": [1]},
    {"user_id": "u", "type": "t", "s": "y" * 1025},
    {"user_id": "u", "type": "t", "s": "y" * 1024},
    {"user_id": None, "type": "t"},
    {"user_id": "u", "type": "t", "timestamp": None},
    {"user_id": "u", "type": "t", "item_id": None},
    {"user_id": "u", "type": None},
    ["u", "t"],
]


@pytest.mark.parametrize("item", SAMPLES)
def test_fast_path_accepts_exactly_what_the_schema_accepts(state: EventTrackState, item: Any) -> None:
    from marshmallow import ValidationError

    reader = CortexReader(state)
    fast = reader.fast_event(item)
    try:
        slow = reader.slow_event(item)
    except ValidationError:
        slow = None
    assert (fast is None) == (slow is None)
    if fast is not None and slow is not None:
        assert fast.to_dict() == slow.to_dict()


# -- signatures ------------------------------------------------------------------------


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    return config


@pytest.fixture
def signed_client(config: dict[str, Any], tmp_path: Any) -> Any:
    from example_app import create_app
    from flask_eventtrack import get_state

    config.update(
        EVENTTRACK_CORTEX_SIGNATURE="required",
        EVENTTRACK_CORTEX_SIGNING_KEYS=["old-key", "current-key"],
        EVENTTRACK_CORTEX_SIGNATURE_MAX_AGE=60,
    )
    app = create_app(config)
    yield app.test_client(), get_state(app)
    get_state(app).store.close()


BODY = json.dumps({"data": [{"user_id": "123", "type": "purchase"}]}).encode()


def post_signed(client: FlaskClient, body: bytes, signature: str | None) -> int:
    headers = {"X-Signature": signature} if signature is not None else {}
    return client.post(URL, data=body, content_type="application/json", headers=headers).status_code


@pytest.mark.parametrize("key", ["current-key", "old-key"])
def test_signed_body_with_an_active_key_is_stored(signed_client: Any, key: str) -> None:
    client, state = signed_client
    assert post_signed(client, BODY, sign_body(BODY, key)) == 200
    assert len(events(state)) == 1
    assert rejected(state) == []


@pytest.mark.parametrize(
    ("make_signature", "words"),
    [
        (lambda: None, "missing X-Signature"),
        (lambda: sign_body(BODY, "wrong-key"), "does not match"),
        (lambda: sign_body(BODY + b" ", "current-key"), "does not match"),
        (lambda: "garbage", "malformed X-Signature"),
        (lambda: sign_body(BODY, "current-key").replace(".", "x", 1), "malformed X-Signature"),
        (lambda: sign_body(BODY, "current-key") + ".x", "malformed X-Signature"),
        (lambda: sign_body(BODY, "current-key").replace(".", "\u00e9.", 1), "malformed X-Signature"),
    ],
)
def test_bad_signatures_answer_200_but_store_nothing(
    signed_client: Any, make_signature: Any, words: str
) -> None:
    client, state = signed_client
    assert post_signed(client, BODY, make_signature()) == 200
    assert events(state) == []
    (rejection,) = rejected(state)
    assert rejection["reason"] == "signature_failure"
    assert words in rejection["message"]


def test_expired_signature_is_rejected(signed_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    client, state = signed_client
    signature = sign_body(BODY, "current-key")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 120)
    assert post_signed(client, BODY, signature) == 200
    monkeypatch.setattr(time, "time", real)
    (rejection,) = rejected(state)
    assert rejection["reason"] == "signature_failure" and "expired" in rejection["message"]


def signed_at(body: bytes, key: str, timestamp: int) -> str:
    """What a client holding ``key`` sends when its clock says ``timestamp``."""
    import hashlib

    from itsdangerous import TimestampSigner
    from itsdangerous.encoding import base64_encode

    from flask_eventtrack.signing import BODY_SALT

    signer = TimestampSigner(key.encode(), salt=BODY_SALT, digest_method=hashlib.sha256)
    stamp = base64_encode(timestamp.to_bytes((timestamp.bit_length() + 7) // 8, "big"))
    return (stamp + b"." + signer.get_signature(body + b"." + stamp)).decode()


@pytest.mark.parametrize("ahead", [2**40, 2**62, 2**64 - 1])
def test_a_signature_dated_past_any_calendar_is_a_rejection_not_a_500(signed_client: Any, ahead: int) -> None:
    client, state = signed_client
    assert post_signed(client, BODY, signed_at(BODY, "current-key", ahead)) == 200
    assert events(state) == []
    (rejection,) = rejected(state)
    assert (
        rejection["reason"] == "signature_failure" and "ahead of the server's clock" in rejection["message"]
    )


def test_a_client_clock_a_little_fast_is_within_the_clock_skew(signed_client: Any) -> None:
    import time

    client, state = signed_client
    assert post_signed(client, BODY, signed_at(BODY, "current-key", int(time.time()) + 5)) == 200
    assert len(events(state)) == 1 and rejected(state) == []
    # EVENTTRACK_CLOCK_SKEW (300 s by default) is the limit, as for event times.
    assert post_signed(client, BODY, signed_at(BODY, "current-key", int(time.time()) + 400)) == 200
    (rejection,) = rejected(state)
    assert "ahead of the server's clock" in rejection["message"]


def test_signing_keys_from_the_environment_are_one_key(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``FLASK_EVENTTRACK_CORTEX_SIGNING_KEYS=<key>`` is a string, not a list of one-character keys."""
    from example_app import create_app
    from flask_eventtrack import get_state

    config["EVENTTRACK_CORTEX_SIGNATURE"] = "required"
    monkeypatch.setenv("FLASK_EVENTTRACK_CORTEX_SIGNING_KEYS", "current-key")
    app = create_app(config)
    client = app.test_client()
    try:
        assert post_signed(client, BODY, sign_body(BODY, "c")) == 200  # one letter of the key
        assert events(get_state(app)) == []
        assert post_signed(client, BODY, sign_body(BODY, "current-key")) == 200
        assert len(events(get_state(app))) == 1
    finally:
        get_state(app).store.close()


@pytest.mark.parametrize("keys", [[""], ["good-key", ""], [None], "", 12345, {"k": "v"}])
def test_an_empty_signing_key_is_a_configuration_error(config: dict[str, Any], keys: Any) -> None:
    # 12345: FLASK_EVENTTRACK_CORTEX_SIGNING_KEYS=12345 is JSON, an int
    from example_app import create_app
    from flask_eventtrack import ConfigurationError

    config.update(EVENTTRACK_CORTEX_SIGNATURE="required", EVENTTRACK_CORTEX_SIGNING_KEYS=keys)
    with pytest.raises(ConfigurationError, match="EVENTTRACK_CORTEX_SIGNING_KEYS"):
        create_app(config)


def test_object_id_field_is_configurable(config: dict[str, Any]) -> None:
    from example_app import create_app
    from flask_eventtrack import get_state

    config["EVENTTRACK_CORTEX_ID_FIELD"] = "account_id"
    app = create_app(config)
    client, state = app.test_client(), get_state(app)
    client.post(
        URL, json={"data": [{"account_id": "acc-1", "type": "renewal"}, {"user_id": "x", "type": "t"}]}
    )
    (event,) = events(state)
    assert event["user_kind"] == "account_id" and event["user"] == state.pipeline.user_key("acc-1")
    assert "account_id" in rejected(state)[0]["message"]
    state.store.close()


def test_timestamps_are_utc(client: FlaskClient, state: EventTrackState) -> None:
    client.post(URL, json={"data": [{"user_id": "u", "type": "t", "timestamp": 1}]})
    (event,) = state.store.iter_events(EventQuery())
    assert event.occurred_at == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_raw_ids_never_reach_the_database_file_even_when_rejected(
    client: FlaskClient, state: EventTrackState, signed_client: Any
) -> None:
    from pathlib import Path

    client.post(URL, json={"data": [{"user_id": "carol@example.com", "type": "click", "nested": {"a": 1}}]})
    client.post(URL, data=b'{"data": [{"user_id": "dave@example.com"', content_type="application/json")
    client.post(URL, json={"data": {"user_id": "erin@example.com"}})
    client.post(URL, json={"data": [{"user_id": "frank@example.com", "type": "t"}] * 1001})
    client.post(URL, json={"data": [{"user_id": "gina@example.com", "type": "t"}]})  # accepted
    signed, _ = signed_client  # the same database file, with signatures required
    signed.post(URL, json={"data": [{"user_id": "hank@example.com", "type": "t"}]})  # no signature
    path = Path(state.store.path)  # type: ignore[attr-defined]
    raw = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    assert b"example.com" not in raw
    reasons = [r["reason"] for r in rejected(state)]
    expected = ["schema_violation", "invalid_json", "schema_violation", "size_violation", "signature_failure"]
    assert reasons == expected
    first = json.loads(rejected(state)[0]["payload"])
    assert first["user_id"] == "hash:" + state.pipeline.user_key("carol@example.com")
    assert rejected(state)[1]["payload"] is None  # unparsable: ids in it could not be hashed
