"""Client input never causes a 500, whatever the dialect.

Seeded mutations of each dialect's valid requests (values swapped for other
JSON types, keys dropped, strings stretched, bytes flipped, random paths and
headers) are sent to every endpoint; any 5xx other than a deliberate 503 fails.
The seed is fixed, so a failure replays exactly.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key
from flask_eventtrack.tokens import Tokens, app_secret_keys

ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**63, 1.5, float("1e308"), "", "x" * 5000, "\u202e", "😀", "a\\b",
    [], [1, [2, [3]]], {}, {"a": {"b": {"c": {}}}}, "2022-13-45T99:00:00Z", "NaN",
    "\ud800", float("nan"), float("-inf"), 10**400,
]  # fmt: skip


def mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """A copy of ``value`` with one random change somewhere inside."""
    if isinstance(value, dict) and value and depth < 6:
        key = rng.choice(list(value))
        copy = dict(value)
        action = rng.random()
        if action < 0.2:
            del copy[key]
        elif action < 0.3:
            copy[rng.choice(["", "x" * 300, "__proto__", "id", "type", "time"])] = rng.choice(ODD_VALUES)
        else:
            copy[key] = mutate(value[key], rng, depth + 1)
        return copy
    if isinstance(value, list) and value and depth < 6:
        copy_list = list(value)
        index = rng.randrange(len(copy_list))
        copy_list[index] = mutate(copy_list[index], rng, depth + 1)
        return copy_list
    return rng.choice(ODD_VALUES)


@pytest.fixture
def credentials(app: Flask, state: EventTrackState, client: FlaskClient) -> dict[str, str]:
    api = create_key(state.store, "acme", "api")
    tracker = create_key(state.store, "acme", "tracker")
    with app.app_context():
        token = Tokens(app_secret_keys(app), 3600, state.store).issue("acme", api.id)
    client.post("/v1/user", json={"user": {"email": "a@example.com"}}, headers={"Authorization": api.secret})
    return {"api": api.secret, "tracker": tracker.secret, "token": token}


def json_requests(creds: dict[str, str]) -> list[tuple[str, dict[str, str], Any]]:
    bearer = {"Authorization": f"Bearer {creds['token']}"}
    profile = {"Authorization": creds["api"]}
    return [
        (
            "/cortex",
            {},
            {"data": [{"user_id": "1", "type": "purchase", "item_id": "A", "timestamp": 1700000000}]},
        ),
        (
            "/v4/events/custom",
            bearer,
            {
                "action": "dog.bark",
                "client": {"id": 5},
                "label": "bark",
                "time": "2022-11-28T12:18:27Z",
                "params": {"loudness": 3},
                "eventSalt": "s",
            },
        ),
        (
            "/v4/events/hit-timer",
            bearer,
            {"client": {"uuid": "e0097757-d1e2-44ac-ba3c-d97979a354c1"}, "label": "t"},
        ),
        (
            "/v4/events/batch",
            bearer,
            [
                {"type": "custom", "action": "a.b", "client": {"email": "a@example.com"}, "label": "l"},
                {"type": "shared", "client": {"id": 1}, "label": "l"},
            ],
        ),
        (
            "/v4/transactions",
            bearer,
            {
                "client": {"id": 1},
                "orderId": "o1",
                "value": {"amount": 10, "currency": "EUR"},
                "products": [
                    {"sku": "s1", "quantity": 1, "finalUnitPrice": {"amount": 10, "currency": "EUR"}}
                ],
            },
        ),
        (
            f"/events/v1/single/recommendation.view?token={creds['tracker']}",
            {},
            {
                "correlationId": "c",
                "clientUUID": "e0097757-d1e2-44ac-ba3c-d97979a354c1",
                "items": ["1"],
                "eventTimestamp": 1670505802000,
            },
        ),
        (
            f"/events/v1/batch?token={creds['tracker']}",
            {},
            {
                "eventType": "recommendation.click",
                "items": [
                    {"correlationId": "c", "clientUUID": "e0097757-d1e2-44ac-ba3c-d97979a354c1", "items": []}
                ],
            },
        ),
        ("/v4/auth/token", {}, {"apiKey": creds["api"]}),
        (
            "/v1/event/",
            profile,
            {"user": {"email": "a@example.com"}, "event": {"update": {"firstname": "x"}}},
        ),
        (
            "/v1/event/",
            profile,
            {
                "user": {"email": "a@example.com"},
                "event": {"generic": {"generic": {"event_name": "my_event", "a": 1}}},
            },
        ),
        (
            "/v1/event/",
            profile,
            {"user": {"email": "a@example.com"}, "event": {"confirmation": {"orderId": "o-1", "total": 3}}},
        ),
        ("/v1/user", profile, {"user": {"email": "b@example.com"}, "attributes": {"plan": "pro"}}),
    ]


def assert_no_500(response: Any, what: str) -> None:
    assert response.status_code < 500 or response.status_code == 503, (
        what,
        response.status_code,
        response.data,
    )


def test_valid_requests_are_accepted(client: FlaskClient, credentials: dict[str, str]) -> None:
    for path, headers, body in json_requests(credentials):
        response = client.post(path, json=body, headers=headers)
        assert response.status_code < 300, (path, response.status_code, response.data)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_json_bodies_never_cause_a_500(
    client: FlaskClient, credentials: dict[str, str], seed: int
) -> None:
    rng = random.Random(seed)
    for path, headers, body in json_requests(credentials):
        for _ in range(40):
            mutated = mutate(body, rng)
            text = json.dumps(mutated, allow_nan=True)
            assert_no_500(
                client.post(path, data=text, headers=headers, content_type="application/json"),
                f"{path} {text[:300]}",
            )


@pytest.mark.parametrize("seed", range(2))
def test_corrupted_bytes_never_cause_a_500(
    client: FlaskClient, credentials: dict[str, str], seed: int
) -> None:
    rng = random.Random(seed)
    for path, headers, body in json_requests(credentials):
        raw = bytearray(json.dumps(body).encode())
        for _ in range(25):
            damaged = bytearray(raw)
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            content_type = rng.choice(
                ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
            )
            assert_no_500(
                client.post(path, data=bytes(damaged), headers=headers, content_type=content_type), path
            )


IBEXA_PATHS = [
    "/api/00000/click/Js79009234YU7/1/123?categorypath=%2FShoes%2FChildren",
    "/api/00000/buy/johndoe/1/129?quantity=2&fullprice=4.44EUR",
    "/api/00000/consume/Js79009234YU7/3/466?percentage=60",
    "/api/00000/rendered/Js79009234YU7/1/128,129,155?scenario=also_bought",
    "/api/00000/login/Js79009234YU7/johndoe",
    "/api/00000/triggeropened/johndoe?triggername=welcome",
    "/api/00000/rate/johndoe/1/133?rating=100",
]
URL_NOISE = ["%", "%ZZ", "%00", "%5C", "%2F", "..", "/", ",", "?", "&", "=", "#", "😀", "%FF%FE", "x" * 3000,
             "-1", "2147483648", "0", ";", " ", "+", "%2B", "\\"]  # fmt: skip


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_mutated_ibexa_urls_never_cause_a_500(client: FlaskClient, method: str) -> None:
    rng = random.Random(method)
    for path in IBEXA_PATHS:
        for _ in range(40):
            cut = rng.randrange(1, len(path))
            mutated = path[:cut] + rng.choice(URL_NOISE) + path[cut + rng.randint(0, 3) :]
            assert_no_500(client.open(mutated, method=method), mutated)


def test_random_paths_and_methods_never_cause_a_500(client: FlaskClient) -> None:
    rng = random.Random(7)
    prefixes = [
        "/cortex",
        "/v4/events/",
        "/events/v1/single/",
        "/v1/user/",
        "/v1/event",
        "/api/00000/",
        "/v4/",
    ]
    for _ in range(150):
        path = (
            rng.choice(prefixes) + rng.choice(URL_NOISE) + rng.choice(["", "x", "/y", "recommendation.view"])
        )
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
        headers = rng.choice(
            [{}, {"Authorization": "Bearer x"}, {"Authorization": "\x7f"}, {"Content-Length": "5"}]
        )
        assert_no_500(client.open(path, method=method, headers=headers, data=b"{}"), f"{method} {path}")
