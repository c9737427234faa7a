"""Profile events API: users, the seed's requests, every event kind, envelopes, rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_eventtrack import get_state
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key
from flask_eventtrack.stores import EventQuery

EMAIL = "alexandru@example.com"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture
def key(state: EventTrackState) -> str:
    return create_key(state.store, "acme").secret


def post(client: FlaskClient, key: str | None, path: str, body: Any, **headers: str) -> TestResponse:
    if key is not None:
        headers["Authorization"] = key
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", headers=headers)


def send(
    client: FlaskClient, key: str, user: dict[str, Any], event: dict[str, Any], **headers: str
) -> TestResponse:
    return post(client, key, "/v1/event/", {"user": user, "event": event}, **headers)


def create_user(client: FlaskClient, key: str, user: dict[str, Any], **attributes: Any) -> TestResponse:
    response = post(client, key, "/v1/user", {"user": user, "attributes": attributes})
    assert response.status_code == 200, response.json
    return response


def events(state: EventTrackState, **filters: Any) -> list[dict[str, Any]]:
    return [e.to_dict() for e in state.store.iter_events(EventQuery(**filters))]


def rejected(state: EventTrackState) -> list[dict[str, Any]]:
    return [r.to_dict() for r in state.store.iter_rejected(EventQuery())]


def errors(response: TestResponse) -> list[dict[str, str]]:
    body = response.get_json()
    assert set(body) == {"errors"}
    for error in body["errors"]:
        assert set(error) == {"message", "description"} and error["message"] and error["description"]
    result: list[dict[str, str]] = body["errors"]
    return result


def on_disk(state: EventTrackState) -> bytes:
    """Every byte of the SQLite file and its WAL: where raw ids must not be."""
    path = state.store.path  # type: ignore[attr-defined]
    data = b""
    for suffix in ("", "-wal"):
        try:
            with open(path + suffix, "rb") as fh:
                data += fh.read()
        except FileNotFoundError:
            pass
    return data


# -- the seed's own requests -------------------------------------------------------------


def test_seed_update_of_firstname(client: FlaskClient, state: EventTrackState, key: str) -> None:
    create_user(client, key, {"email": EMAIL})
    response = send(client, key, {"email": EMAIL}, {"update": {"firstname": "alexandru"}})
    assert response.status_code == 200
    assert response.json == {
        "results": {"message": "Event created", "email": "Event was created for the specified user"}
    }
    (event,) = events(state)
    assert event["tenant"] == "acme" and event["source"] == "profile" and event["type"] == "update"
    assert event["user"] == state.pipeline.user_key(EMAIL) != EMAIL
    assert event["user_kind"] == "email"
    assert event["props"] == {"firstname": "alexandru"}
    profile = state.store.get_profile("acme", state.pipeline.user_key(EMAIL))
    assert profile is not None and profile["attributes"] == {"firstname": "alexandru"}
    assert profile["email"] is None  # not kept by default
    assert EMAIL.encode() not in on_disk(state)


def test_seed_generic_my_event(client: FlaskClient, state: EventTrackState, key: str) -> None:
    create_user(client, key, {"email": EMAIL})
    event = {"generic": {"generic": {"event_name": "my_event", "firstname": "alexandru"}}}
    response = send(client, key, {"email": EMAIL}, event)
    assert response.status_code == 200 and response.json["results"]["message"] == "Event created"
    (stored,) = events(state)
    assert stored["type"] == "my_event"
    assert stored["props"] == {"firstname": "alexandru"}
    profile = state.store.get_profile("acme", state.pipeline.user_key(EMAIL))
    assert profile is not None and profile["attributes"] == {}  # a generic event is not an update


def test_seed_missing_event_message(client: FlaskClient, state: EventTrackState, key: str) -> None:
    create_user(client, key, {"email": EMAIL})
    response = post(client, key, "/v1/event/", {"user": {"email": EMAIL}})
    assert response.status_code == 400
    assert errors(response) == [
        {
            "message": "Missing event information",
            "description": "Please send event information along with user",
        }
    ]
    (rejection,) = rejected(state)
    assert rejection["reason"] == "schema_violation" and rejection["tenant"] == "acme"


# -- users -------------------------------------------------------------------------------


def test_create_then_update_user_merges_attributes(
    client: FlaskClient, state: EventTrackState, key: str
) -> None:
    first = create_user(client, key, {"_id": "u-1"}, firstname="Ana", plan="free", city="Cluj")
    assert first.json["results"]["message"] == "User created"
    assert first.json["results"]["user"]["attributes"] == {"firstname": "Ana", "plan": "free", "city": "Cluj"}
    second = create_user(client, key, {"_id": "u-1"}, plan="pro", city=None)
    assert second.json["results"]["message"] == "User updated"
    assert second.json["results"]["user"]["attributes"] == {"firstname": "Ana", "plan": "pro"}
    assert "email" not in second.json["results"]["user"]
    assert events(state) == []  # saving a user is not an event


def test_numeric_id_and_string_id_are_the_same_user(
    client: FlaskClient, state: EventTrackState, key: str
) -> None:
    create_user(client, key, {"_id": 42})
    assert send(client, key, {"_id": "42"}, {"update": {"a": 1}}).status_code == 200
    assert events(state)[0]["user_kind"] == "_id"


def test_get_user_returns_attributes_and_events_newest_first_paginated(
    client: FlaskClient, state: EventTrackState, key: str
) -> None:
    create_user(client, key, {"email": EMAIL}, firstname="alexandru")
    for n in range(5):
        assert send(client, key, {"email": EMAIL}, {"page_view": {"url": f"/p/{n}"}}).status_code == 200
    response = client.get(f"/v1/user/{EMAIL}?per_page=2", headers={"Authorization": key})
    assert response.status_code == 200
    body = response.json["results"]
    assert body["user"]["attributes"] == {"firstname": "alexandru"}
    assert body["user"]["user_key"] == state.pipeline.user_key(EMAIL)
    assert [e["props"]["url"] for e in body["events"]] == ["/p/4", "/p/3"]
    assert body["pagination"] == {"page": 1, "per_page": 2, "total": 5, "pages": 3}
    last = client.get(f"/v1/user/{EMAIL}?per_page=2&page=3", headers={"Authorization": key}).json
    assert [e["props"]["url"] for e in last["results"]["events"]] == ["/p/0"]
    by_hash_only = client.get("/v1/user/someone-else@example.com", headers={"Authorization": key})
    assert by_hash_only.status_code == 404
    assert errors(by_hash_only)[0]["message"] == "User not found"


@pytest.mark.parametrize("query", ["page=0", "page=x", "per_page=0", "per_page=201", "page=-1"])
def test_bad_pagination_is_400(client: FlaskClient, key: str, query: str) -> None:
    create_user(client, key, {"_id": "u"})
    response = client.get(f"/v1/user/u?{query}", headers={"Authorization": key})
    assert response.status_code == 400
    assert errors(response)[0]["message"] == "Invalid pagination"


def test_users_are_per_tenant(client: FlaskClient, state: EventTrackState, key: str) -> None:
    other = create_key(state.store, "globex").secret
    create_user(client, key, {"email": EMAIL})
    response = send(client, other, {"email": EMAIL}, {"update": {"a": 1}})
    assert response.status_code == 400 and errors(response)[0]["message"] == "User not found"
    assert client.get(f"/v1/user/{EMAIL}", headers={"Authorization": other}).status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"attributes": {"a": 1}}, "Missing user information"),
        ({"user": {"name": "x"}}, "Invalid user information"),
        ({"user": {"email": EMAIL}, "attributes": [1]}, "Invalid attributes"),
        ({"user": {"email": EMAIL}, "attributes": {"a": [[[[[[[[[1]]]]]]]]]}}, "Invalid attributes"),
    ],
)
def test_bad_user_requests(
    client: FlaskClient, state: EventTrackState, key: str, body: Any, message: str
) -> None:
    response = post(client, key, "/v1/user", body)
    assert response.status_code == 400
    assert errors(response)[0]["message"] == message
    assert state.store.get_profile("acme", state.pipeline.user_key(EMAIL)) is None


# -- the e-mail is kept only when the host app allows it -----------------------------------


class TestKeepEmail:
    @pytest.fixture
    def config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {**config, "EVENTTRACK_PROFILE_KEEP_EMAIL": True}

    def test_email_is_kept_and_shown(self, client: FlaskClient, state: EventTrackState, key: str) -> None:
        response = create_user(client, key, {"email": EMAIL})
        assert response.json["results"]["user"]["email"] == EMAIL
        profile = state.store.get_profile("acme", state.pipeline.user_key(EMAIL))
        assert profile is not None and profile["email"] == EMAIL
        # the events still carry the hash only
        send(client, key, {"email": EMAIL}, {"update": {"a": 1}})
        assert events(state)[0]["user"] == state.pipeline.user_key(EMAIL)

    def test_login_adds_the_email_to_an_id_user(
        self, client: FlaskClient, state: EventTrackState, key: str
    ) -> None:
        create_user(client, key, {"_id": "anon-7"})
        assert (
            send(client, key, {"_id": "anon-7"}, {"login": {"email": EMAIL, "firstname": "A"}}).status_code
            == 200
        )
        profile = state.store.get_profile("acme", state.pipeline.user_key("anon-7"))
        assert profile is not None and profile["email"] == EMAIL
        assert profile["attributes"] == {"firstname": "A"}


# -- event kinds -----------------------------------------------------------------------------


def test_update_merges_and_null_removes(client: FlaskClient, state: EventTrackState, key: str) -> None:
    create_user(client, key, {"email": EMAIL}, firstname="a", lastname="b")
    send(client, key, {"email": EMAIL}, {"update": {"firstname": "c", "lastname": None, "tags": ["x"]}})
    profile = state.store.get_profile("acme", state.pipeline.user_key(EMAIL))
    assert profile is not None and profile["attributes"] == {"firstname": "c", "tags": ["x"]}


def test_update_never_stores_identifier_attributes(
    client: FlaskClient, state: EventTrackState, key: str
) -> None:
    create_user(client, key, {"_id": "u-9"})
    send(client, key, {"_id": "u-9"}, {"update": {"email": EMAIL, "_id": "other", "firstname": "z"}})
    assert events(state)[0]["props"] == {"firstname": "z"}
    profile = state.store.get_profile("acme", state.pipeline.user_key("u-9"))
    assert profile is not None and profile["attributes"] == {"firstname": "z"}
    assert EMAIL.encode() not in on_disk(state)


def test_login_merges_and_links_identities(client: FlaskClient, state: EventTrackState, key: str) -> None:
    create_user(client, key, {"_id": "anon-1"})
    create_user(client, key, {"email": EMAIL})
    send(client, key, {"_id": "anon-1"}, {"page_view": {"url": "/before-login"}})
    response = send(client, key, {"_id": "anon-1"}, {"login": {"email": EMAIL, "firstname": "A"}})
    assert response.status_code == 200
    (login,) = events(state, type="login")
    assert login["props"] == {"firstname": "A"}
    profile = state.store.get_profile("acme", state.pipeline.user_key("anon-1"))
    assert profile is not None and profile["attributes"] == {"firstname": "A"} and profile["email"] is None
    # the e-mail user's profile now shows what the anonymous user did
    shown = client.get(f"/v1/user/{EMAIL}", headers={"Authorization": key}).json["results"]["events"]
    assert {e["type"] for e in shown} == {"page_view", "login"}
    assert EMAIL.encode() not in on_disk(state)


@pytest.mark.parametrize(
    ("event", "type", "item_id", "props"),
    [
        (
            {"page_view": {"url": "/a", "title": "A", "extra": 1}},
            "page_view",
            None,
            {"url": "/a", "title": "A"},
        ),
        ({"product_view": {"product_id": 7, "price": 9.5}}, "product_view", "7", {"price": 9.5}),
        (
            {"add_to_cart": {"product_id": "P1", "quantity": 2, "price": 10}},
            "add_to_cart",
            "P1",
            {"quantity": 2, "price": 10.0},
        ),
        ({"remove_from_cart": {"product_id": "P1"}}, "remove_from_cart", "P1", {"quantity": 1}),
        (
            {
                "confirmation": {
                    "orderId": "O-1",
                    "total": 20,
                    "currency": "EUR",
                    "products": [{"product_id": "P1", "quantity": 2, "price": 10}],
                }
            },
            "confirmation",
            None,
            {
                "orderId": "O-1",
                "total": 20.0,
                "currency": "EUR",
                "products": [{"product_id": "P1", "quantity": 2, "price": 10.0}],
            },
        ),
        ({"email_open": {"campaign_id": "c1"}}, "email_open", None, {"campaign_id": "c1"}),
        (
            {"email_click": {"campaign_id": "c1", "url": "https://shop.example/x"}},
            "email_click",
            None,
            {"campaign_id": "c1", "url": "https://shop.example/x"},
        ),
    ],
)
def test_standard_kinds_are_stored_with_their_schema(
    client: FlaskClient,
    state: EventTrackState,
    key: str,
    event: dict[str, Any],
    type: str,
    item_id: str | None,
    props: dict[str, Any],
) -> None:
    create_user(client, key, {"email": EMAIL})
    response = send(client, key, {"email": EMAIL}, event)
    assert response.status_code == 200, response.json
    (stored,) = events(state)
    assert (stored["type"], stored["item_id"], stored["props"]) == (type, item_id, props)
    assert stored["item_type"] == ("product" if item_id else None)


def test_unexpected_fields_are_ignored(client: FlaskClient, state: EventTrackState, key: str) -> None:
    create_user(client, key, {"email": EMAIL, "nickname": "x"})
    body = {
        "user": {"email": EMAIL, "color": "red"},
        "event": {"page_view": {"url": "/", "zzz": 1}},
        "extra": 2,
    }
    assert post(client, key, "/v1/event/", body).status_code == 200
    assert events(state)[0]["props"] == {"url": "/"}


# -- errors in the vendor envelope -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message", "words"),
    [
        ({"event": {"update": {}}}, "Missing user information", "user"),
        ({"user": None, "event": {"update": {}}}, "Missing user information", "user"),
        ({"user": "x", "event": {"update": {}}}, "Invalid user information", "object"),
        ({"user": {}, "event": {"update": {}}}, "Invalid user information", "_id"),
        ({"user": {"email": "not-an-email"}, "event": {"update": {}}}, "Invalid user information", "email"),
        ({"user": {"_id": True}, "event": {"update": {}}}, "Invalid user information", "_id"),
        ({"user": {"email": EMAIL}, "event": {"purchase": {}}}, "Unknown event kind", "purchase"),
        ({"user": {"email": EMAIL}, "event": {}}, "Invalid event information", "exactly one"),
        (
            {"user": {"email": EMAIL}, "event": {"update": {}, "login": {}}},
            "Invalid event information",
            "one",
        ),
        ({"user": {"email": EMAIL}, "event": [1]}, "Invalid event information", "object"),
        ({"user": {"email": EMAIL}, "event": {"update": 5}}, "Invalid event data", "object"),
        (
            {"user": {"email": EMAIL}, "event": {"generic": {"generic": {"firstname": "x"}}}},
            "Invalid event data",
            "event_name",
        ),
        (
            {"user": {"email": EMAIL}, "event": {"generic": {"event_name": "x"}}},
            "Invalid event data",
            "generic",
        ),
        ({"user": {"email": EMAIL}, "event": {"page_view": {}}}, "Invalid event data", "event.page_view.url"),
        (
            {"user": {"email": EMAIL}, "event": {"add_to_cart": {"product_id": "P", "quantity": "2"}}},
            "Invalid event data",
            "quantity",
        ),
        (
            {"user": {"email": EMAIL}, "event": {"add_to_cart": {"product_id": "P", "price": True}}},
            "Invalid event data",
            "price",
        ),
        (
            {"user": {"email": EMAIL}, "event": {"confirmation": {"total": 1}}},
            "Invalid event data",
            "orderId",
        ),
        (
            {"user": {"email": EMAIL}, "event": {"confirmation": {"orderId": "1", "products": [{}]}}},
            "Invalid event data",
            "product_id",
        ),
        (
            {"user": {"email": EMAIL}, "event": {"update": {"score": "x" * 2000}}},
            "Invalid event data",
            "1024",
        ),
        ([{"user": {"email": EMAIL}}], "Invalid request", "object"),
    ],
)
def test_bad_requests_are_400_in_the_envelope_and_logged(
    client: FlaskClient, state: EventTrackState, key: str, body: Any, message: str, words: str
) -> None:
    create_user(client, key, {"email": EMAIL})
    response = post(client, key, "/v1/event/", body)
    assert response.status_code == 400
    (error,) = errors(response)
    assert error["message"] == message
    assert words in error["description"]
    assert events(state) == []
    (rejection,) = rejected(state)
    assert rejection["source"] == "profile" and rejection["reason"] == "schema_violation"
    assert EMAIL not in (rejection["payload"] or "")  # ids are hashed in the log too
    assert EMAIL.encode() not in on_disk(state)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_400(
    client: FlaskClient, state: EventTrackState, key: str, value: str
) -> None:
    create_user(client, key, {"email": EMAIL})
    body = json.dumps({"user": {"email": EMAIL}, "event": {"update": {"score": "VALUE"}}})
    body = body.replace('"VALUE"', value)
    response = post(client, key, "/v1/event/", body)
    assert response.status_code == 400
    assert "NaN" in errors(response)[0]["description"]


def test_unknown_user_is_400(client: FlaskClient, state: EventTrackState, key: str) -> None:
    response = send(client, key, {"email": EMAIL}, {"update": {"firstname": "x"}})
    assert response.status_code == 400
    (error,) = errors(response)
    assert error["message"] == "User not found" and "POST /v1/user" in error["description"]
    (rejection,) = rejected(state)
    assert rejection["reason"] == "unknown_user" and rejection["type"] == "update"
    assert json.loads(rejection["payload"])["user"]["email"] == "hash:" + state.pipeline.user_key(EMAIL)
    assert state.store.get_profile("acme", state.pipeline.user_key(EMAIL)) is None  # update did not create


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (b'{"user": ', "application/json", "invalid_json"),
        (b"\xff\xfe", "application/json", "invalid_json"),
        (b'{"user": {}}', "text/plain", "content_type"),
    ],
)
def test_malformed_bodies_are_400(
    client: FlaskClient, state: EventTrackState, key: str, data: bytes, content_type: str, reason: str
) -> None:
    response = client.post("/v1/event/", data=data, content_type=content_type, headers={"Authorization": key})
    assert response.status_code == 400
    assert errors(response)[0]["message"] == "Invalid request"
    (rejection,) = rejected(state)
    assert rejection["reason"] == reason


def test_body_over_the_limit_is_413_in_the_envelope(tmp_path: Any, config: dict[str, Any]) -> None:
    from example_app import create_app

    app = create_app({**config, "EVENTTRACK_MAX_CONTENT_LENGTH": 100})
    client = app.test_client()
    secret = create_key(get_state(app).store, "acme").secret
    response = send(client, secret, {"email": EMAIL}, {"update": {"bio": "x" * 200}})
    assert response.status_code == 413
    assert errors(response)[0]["message"] == "Request too large"
    # Under the key's tenant, where its own stats and exports find it (not "default").
    refused = list(get_state(app).store.iter_rejected(EventQuery()))
    assert [(r.reason, r.tenant) for r in refused] == [("size_violation", "acme")]
    get_state(app).store.close()


def test_the_host_apps_max_content_length_is_the_same_413_in_the_envelope(config: dict[str, Any]) -> None:
    """Not Flask's HTML page, logged nowhere: read_body takes the host's limit as its own."""
    from example_app import create_app

    app = create_app({**config, "MAX_CONTENT_LENGTH": 100})
    secret = create_key(get_state(app).store, "acme").secret
    response = send(app.test_client(), secret, {"email": EMAIL}, {"update": {"bio": "x" * 200}})
    assert response.status_code == 413 and errors(response)[0]["message"] == "Request too large"
    assert "MAX_CONTENT_LENGTH of 100 bytes" in errors(response)[0]["description"]
    refused = list(get_state(app).store.iter_rejected(EventQuery()))
    assert [(r.reason, r.tenant) for r in refused] == [("size_violation", "acme")]
    get_state(app).store.close()


@pytest.mark.parametrize("path", ["/v1/event/", "/v1/user"])
def test_missing_wrong_or_revoked_key_is_401(client: FlaskClient, state: EventTrackState, path: str) -> None:
    issued = create_key(state.store, "acme")
    tracker = create_key(state.store, "acme", kind="tracker").secret
    body = {"user": {"email": EMAIL}, "event": {"update": {}}}
    state.store.revoke_key(issued.id)
    for secret, words in [
        (None, "required"),
        ("et_api_nope_nope", "not valid"),
        (issued.secret, "revoked"),
        (tracker, "tracker"),
        ("Bearer " + issued.secret, "scheme"),
    ]:
        response = post(client, secret, path, body)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'ApiKey realm="profile"'  # HTTP: a 401 names a scheme
        assert words in errors(response)[0]["description"]
    assert {r["reason"] for r in rejected(state)} == {"auth_failure"}
    assert len(rejected(state)) == 5
    assert events(state) == [] and state.store.get_profile("acme", state.pipeline.user_key(EMAIL)) is None


def test_get_user_needs_a_key(client: FlaskClient, key: str) -> None:
    create_user(client, key, {"email": EMAIL})
    assert client.get(f"/v1/user/{EMAIL}").status_code == 401
    assert client.get(f"/v1/user/{EMAIL}", headers={"Authorization": "wrong"}).status_code == 401


def test_paths_with_and_without_slash_are_different(
    client: FlaskClient, state: EventTrackState, key: str
) -> None:
    create_user(client, key, {"email": EMAIL})
    response = send(client, key, {"email": EMAIL}, {"update": {}})
    assert response.status_code == 200
    wrong = post(client, key, "/v1/event", {"user": {"email": EMAIL}, "event": {"update": {}}})
    assert wrong.status_code == 404 and "/v1/event/" in errors(wrong)[0]["description"]
    assert post(client, key, "/v1/user/", {"user": {"email": EMAIL}}).status_code == 404
    assert len(events(state)) == 1


def test_store_unavailable_is_503_with_retry_after(
    client: FlaskClient, state: EventTrackState, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_eventtrack.errors import StoreUnavailable

    create_user(client, key, {"email": EMAIL})

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("The event store is busy.", retry_after=7)

    monkeypatch.setattr(state.store, "write", down)
    response = send(client, key, {"email": EMAIL}, {"update": {"firstname": "x"}})
    assert response.status_code == 503 and response.headers["Retry-After"] == "7"
    assert errors(response)[0]["message"] == "Service unavailable"
    profile = state.store.get_profile("acme", state.pipeline.user_key(EMAIL))
    assert profile is not None and profile["attributes"] == {}  # nothing acknowledged, nothing merged


# -- settings ------------------------------------------------------------------------------


class TestPrefix:
    @pytest.fixture
    def config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {**config, "EVENTTRACK_PROFILE_URL_PREFIX": "/profile-api"}

    def test_prefix_moves_every_path(self, client: FlaskClient, state: EventTrackState, key: str) -> None:
        assert post(client, key, "/profile-api/v1/user", {"user": {"_id": "1"}}).status_code == 200
        body = {"user": {"_id": "1"}, "event": {"update": {}}}
        assert post(client, key, "/profile-api/v1/event/", body).status_code == 200
        assert client.get("/profile-api/v1/user/1", headers={"Authorization": key}).status_code == 200
        assert post(client, key, "/v1/event/", body).status_code == 404


def test_dialect_can_be_switched_off(config: dict[str, Any]) -> None:
    from example_app import create_app

    app: Flask = create_app({**config, "EVENTTRACK_DIALECTS": "cortex"})
    try:
        assert app.test_client().post("/v1/event/", json={}).status_code == 404
    finally:
        get_state(app).store.close()
