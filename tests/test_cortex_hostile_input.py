"""Hostile or odd input to the Cortex dialect and the shared JSON parsing.

Each test failed before its fix. The ``config`` fixture runs every app test on
SQLite and then on PostgreSQL (``tests/_pg.py``).
"""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from _pg import config_on_every_store  # noqa: F401 - the config fixture: every store
from flask import Flask
from flask.testing import FlaskClient
from test_no_500 import credentials, json_requests  # noqa: F401 - the credentials fixture

from example_app import create_app
from flask_eventtrack import get_state, sign_body
from flask_eventtrack.dialects._http import MAX_BODY_DEPTH, _nested_deeper_than, _walk_deeper_than
from flask_eventtrack.dialects._redact import MAX_DEPTH as REDACT_MAX_DEPTH
from flask_eventtrack.dialects.cortex import CortexReader
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.signing import SignatureFailure, verify_body
from flask_eventtrack.stores import EventQuery

URL = "/cortex"
LIMIT = MAX_BODY_DEPTH  # past the default EVENTTRACK_MAX_JSON_DEPTH (8) plus room for envelopes (16)


def events(state: EventTrackState) -> list[dict[str, Any]]:
    return [e.to_dict() for e in state.store.iter_events(EventQuery())]


def rejected(state: EventTrackState) -> list[dict[str, Any]]:
    return [r.to_dict() for r in state.store.iter_rejected(EventQuery())]


def post(client: FlaskClient, body: str | bytes, **kwargs: Any) -> int:
    return client.post(URL, data=body, content_type="application/json", **kwargs).status_code


def nested(depth: int, kind: str = "list") -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


# -- 1. deep nesting: refused by parse_json, and redact never recurses ------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"data":[{"user_id":"u","type":"t","x":' + nested(500) + "}]}",
        '{"data":[{"user_id":"u","type":"t","x":' + nested(500, "object") + "}]}",
        '{"data":[{"user_id":' + nested(500) + ',"type":"t"}]}',
        nested(900),
    ],
    ids=["list-param", "object-param", "list-id", "whole-body"],
)
def test_deeply_nested_body_is_200_and_logged_as_too_deep(
    client: FlaskClient, state: EventTrackState, body: str
) -> None:
    assert post(client, body) == 200
    assert events(state) == []
    (rejection,) = rejected(state)
    assert rejection["reason"] == "size_violation"
    assert "nested too deeply" in rejection["message"]


def test_only_a_body_past_the_stack_guard_is_refused_whole(
    client: FlaskClient, state: EventTrackState
) -> None:
    # {"data": [{"x": <value>}]}: the value may nest LIMIT - 3 levels before the body is refused
    # as a whole; within that, the item alone is refused by the schema and the batch survives.
    fits = '{"data":[{"user_id":"u","type":"t","x":' + nested(LIMIT - 3) + '},{"user_id":"v","type":"t"}]}'
    too_deep = '{"data":[{"user_id":"u","type":"t","x":' + nested(LIMIT - 2) + "}]}"
    assert post(client, fits) == 200 and post(client, too_deep) == 200
    assert len(events(state)) == 1
    assert [r["reason"] for r in rejected(state)] == ["schema_violation", "size_violation"]
    assert f"more than {LIMIT} levels" in rejected(state)[1]["message"]


def test_the_depth_limit_holds_at_the_shortest_bodies(client: FlaskClient, state: EventTrackState) -> None:
    # The byte scan is skipped for bodies of at most 2 * LIMIT bytes: nested(LIMIT) is exactly
    # that long and deep enough, nested(LIMIT + 1) is the shortest body that is too deep.
    assert len(nested(LIMIT)) == 2 * LIMIT
    post(client, nested(LIMIT))
    post(client, nested(LIMIT + 1))
    reasons = [r["reason"] for r in rejected(state)]
    assert reasons[0] != "size_violation" and reasons[1] == "size_violation"


def test_brackets_and_escapes_inside_strings_do_not_count_as_nesting(
    client: FlaskClient, state: EventTrackState
) -> None:
    tricky = ["[" * 100, "]" * 100 + "{" * 100, '\\"[[[', "\\\\", '\\\\"', "}" * 50]
    item = {"user_id": "u", "type": "t", **{f"p{i}": text for i, text in enumerate(tricky)}}
    assert post(client, json.dumps({"data": [item] * 3})) == 200
    assert len(events(state)) == 3 and rejected(state) == []
    deep = json.dumps({"data": [{"user_id": "u", "type": "t", "s": "]" * 200, "x": json.loads(nested(300))}]})
    assert post(client, deep) == 200
    assert rejected(state)[0]["reason"] == "size_violation"


def test_the_byte_level_depth_check_agrees_with_a_walk() -> None:
    rng = random.Random(5)
    pieces = ["[", "]", "{", "}", '"', "\\", "a", "é", "😀", ","]

    def text() -> str:
        return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 5)))

    def value(depth: int) -> Any:
        roll = rng.random()
        if depth and roll < 0.35:
            return [value(depth - 1) for _ in range(rng.randint(0, 3))]
        if depth and roll < 0.7:
            return {text(): value(depth - 1) for _ in range(rng.randint(0, 3))}
        return rng.choice([text(), text(), 1, 2.5, None, True])

    for _ in range(3000):
        document = value(rng.randint(0, 8))
        body = json.dumps(document, ensure_ascii=rng.random() < 0.5).encode()
        for limit in range(9):
            assert _nested_deeper_than(body, document, limit) == _walk_deeper_than(document, limit)


def test_redact_is_iterative_and_bounded(state: EventTrackState) -> None:
    deep: Any = "alice@example.com"
    for _ in range(5000):
        deep = {"user_id": [deep]}
    redacted = CortexReader(state).redact(deep)
    text = json.dumps(redacted)  # within the encoder's recursion limit
    assert "alice@example.com" not in text and "<nested too deeply>" in text
    assert text.count("{") <= REDACT_MAX_DEPTH


def test_deep_items_are_logged_even_with_a_huge_configured_depth(config: dict[str, Any]) -> None:
    config["EVENTTRACK_MAX_JSON_DEPTH"] = 100_000  # parse_json's limit no longer protects redact
    app = create_app(config)
    client, state = app.test_client(), get_state(app)
    try:
        body = '{"data":[{"user_id":"u","type":"t","x":' + nested(600) + "}]}"
        assert post(client, body) == 200
        (rejection,) = rejected(state)
        assert rejection["reason"] == "schema_violation"
    finally:
        state.store.close()


def test_deep_bodies_are_not_a_500_on_the_other_json_dialects(
    client: FlaskClient,
    credentials: dict[str, str],  # noqa: F811
) -> None:
    for path, headers, _ in json_requests(credentials):
        response = client.post(path, data=nested(900), headers=headers, content_type="application/json")
        assert response.status_code < 500, (path, response.status_code)


# -- 2. numbers that overflow a double ---------------------------------------------------


@pytest.mark.parametrize("number", ["1e400", "-1e999", "1.8e308", "1E+309", "1" + "0" * 400 + ".5"])
def test_number_overflowing_a_double_is_invalid_json(
    client: FlaskClient, state: EventTrackState, number: str
) -> None:
    body = '{"data":[{"user_id":"u","type":"click","x":' + number + '},{"user_id":"v","type":"click"}]}'
    assert post(client, body) == 200
    assert events(state) == []
    (rejection,) = rejected(state)
    assert rejection["reason"] == "invalid_json"
    assert "out of range" in rejection["message"]


def test_big_integers_are_kept_exactly_up_to_the_parsers_limit(
    client: FlaskClient, state: EventTrackState
) -> None:
    assert post(client, '{"data":[{"user_id":"u","type":"t","x":1e400}]}') == 200  # refused
    big = 10**400
    assert post(client, '{"data":[{"user_id":"u","type":"t","x":' + str(big) + ',"y":1.7e308}]}') == 200
    assert post(client, '{"data":[{"user_id":"u","type":"t","x":1' + "0" * 5000 + "}]}") == 200
    (event,) = events(state)
    assert event["props"] == {"x": big, "y": 1.7e308}
    assert [r["reason"] for r in rejected(state)] == ["invalid_json", "invalid_json"]
    assert "4300 digits" in rejected(state)[1]["message"]


# -- 3. null timestamp and item_id: absent, on both paths ------------------------------------


def test_null_timestamp_and_item_id_count_as_absent(client: FlaskClient, state: EventTrackState) -> None:
    data = [
        {"user_id": "a", "type": "t", "timestamp": None},
        {"user_id": "b", "type": "t", "item_id": None, "note": None},  # a custom parameter may be null
        {"user_id": "c", "type": "t", "timestamp": None, "l": [1]},  # the slow path words the error
    ]
    assert client.post(URL, json={"data": data}).status_code == 200
    stored = events(state)
    assert [(e["item_id"], e["original_time"], e["props"]) for e in stored] == [
        (None, None, {}),
        (None, None, {"note": None}),
    ]
    assert stored[0]["occurred_at"] == stored[0]["received_at"]
    (bad,) = rejected(state)
    assert bad["message"].startswith("data[2]:") and "timestamp" not in bad["message"]


# -- 4. ids of any type are hashed in the rejected log ------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        ["alice@example.com"],
        {"email": "alice@example.com"},
        [["alice@example.com"]],
        {"alice@example.com": True},
        [{"x": ["alice@example.com", 7]}],
    ],
)
def test_non_scalar_ids_are_hashed_in_the_rejected_log(
    client: FlaskClient, state: EventTrackState, value: Any
) -> None:
    assert client.post(URL, json={"data": [{"user_id": value, "type": "click"}]}).status_code == 200
    assert client.post(URL, json=[{"user_id": value}]).status_code == 200  # the whole body logged
    payloads = [r["payload"] for r in rejected(state)]
    assert len(payloads) == 2
    assert not any("alice@example.com" in payload for payload in payloads)
    key = "hash:" + state.pipeline.user_key("alice@example.com")
    assert key in payloads[0] and key in payloads[1]
    path = Path(getattr(state.store, "path", "/nonexistent"))
    raw = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    assert b"alice@example.com" not in raw


def test_redact_keeps_the_shape_and_what_is_not_an_id(state: EventTrackState) -> None:
    reader = CortexReader(state)
    hashed, key = ("hash:" + state.pipeline.user_key(text) for text in ("alice", "k"))
    document = {"data": [{"user_id": ["alice", None, {"k": "alice"}], "type": "t", "n": [1, "alice"]}]}
    # under the id field keys are hashed too: {"alice@example.com": true} is an id
    assert reader.redact(document) == {
        "data": [{"user_id": [hashed, None, {key: hashed}], "type": "t", "n": [1, "alice"]}]
    }


def test_long_ids_in_refused_bodies_do_not_stay_in_memory(
    client: FlaskClient, state: EventTrackState
) -> None:
    """Every id in a refused body is hashed, and a body may be one id of ~1 MB. The
    hash cache kept each of them until 2026-12-07: ~1 MB of memory per request,
    up to its 65 536 entries, from anyone who can reach the endpoint."""
    client.post(URL, json={"data": [{"user_id": "warm", "type": "t", "timestamp": "bad"}]})
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(40):
            item = {"user_id": f"{i}-" + "x" * 200_000, "type": "t", "timestamp": "bad"}
            assert client.post(URL, json={"data": [item]}).status_code == 200
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(rejected(state)) == 41
    assert kept < 1_000_000, f"{kept} bytes kept after 40 refused bodies of 200 KB"


# -- 5. the signature binds exactly the body received ---------------------------------------


def test_signature_header_cannot_move_the_body_boundary() -> None:
    signed = b'{"data":[{"user_id":"u","type":"t","p":1.5}]}'
    header = sign_body(signed, "key")
    verify_body(signed, header, ["key"])
    prefix, _, rest = signed.partition(b".")
    with pytest.raises(SignatureFailure, match="malformed"):
        verify_body(prefix, rest.decode() + "." + header, ["key"])


def test_truncated_body_with_a_shifted_header_is_a_signature_failure(
    config: dict[str, Any], tmp_path: Any
) -> None:
    config.update(EVENTTRACK_CORTEX_SIGNATURE="required", EVENTTRACK_CORTEX_SIGNING_KEYS=["key"])
    app: Flask = create_app(config)
    client, state = app.test_client(), get_state(app)
    try:
        # "1.5" signed by a client; "1" with the header "5.<timestamp>.<signature>" used to verify.
        assert post(client, b"1", headers={"X-Signature": "5." + sign_body(b"1.5", "key")}) == 200
        (rejection,) = rejected(state)
        assert rejection["reason"] == "signature_failure"
    finally:
        state.store.close()


@pytest.mark.parametrize("text", ['\\"', "\\\\", '\\\\\\"', "\\u005c", "\\u0022", "a\\/b", ""])
def test_the_byte_level_depth_check_handles_escapes_without_walking(text: str) -> None:
    # document=None: a walk would answer "not deeper", so True can only come from the bytes.
    for depth in (3, 40):
        body = ('{"k":"' + text + '","v":' + "[" * depth + '"' + text + '"' + "]" * depth + "}").encode()
        json.loads(body)  # valid JSON, depth + 1 levels with the outer object
        assert _nested_deeper_than(body, None, depth + 1) is False
        assert _nested_deeper_than(body, None, depth) is True
