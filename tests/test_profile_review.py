"""Profile events API: regressions of the code review (findings 3, 5, 6, 9, 10, 11)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from test_profile import EMAIL, create_user, errors, events, on_disk, post, rejected, send

from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key


@pytest.fixture
def key(state: EventTrackState) -> str:
    return create_key(state.store, "acme").secret


# -- finding 3: non-ASCII digits in pagination ------------------------------------------
@pytest.mark.parametrize(
    "query", ["page=²", "per_page=²", "page=٣", "per_page=１０", "page=99999999999999999999"]
)
def test_non_ascii_or_huge_page_numbers_are_400(client: FlaskClient, key: str, query: str) -> None:
    create_user(client, key, {"_id": "u"})
    response = client.get(f"/v1/user/u?{query}", headers={"Authorization": key})
    assert response.status_code == 400
    assert errors(response)[0]["message"] == "Invalid pagination"


# -- finding 5: one tenant's login never stitches another tenant's users -------------------
def test_another_tenants_login_does_not_change_what_a_tenant_reads(
    client: FlaskClient, state: EventTrackState, key: str
) -> None:
    victim, stranger = "victim@a.com", "stranger@a.com"
    create_user(client, key, {"email": victim})
    create_user(client, key, {"email": stranger})
    send(client, key, {"email": victim}, {"page_view": {"url": "/victim-private"}})
    send(client, key, {"email": stranger}, {"page_view": {"url": "/stranger-private"}})
    other = create_key(state.store, "globex").secret
    create_user(client, other, {"email": stranger})
    response = send(client, other, {"email": stranger}, {"login": {"email": victim}})
    assert response.json["results"]["message"] == "Event created"
    shown = client.get(f"/v1/user/{victim}", headers={"Authorization": key}).json["results"]
    assert [e["props"].get("url") for e in shown["events"]] == ["/victim-private"]
    assert shown["pagination"]["total"] == 1


# -- finding 6: the rejected log never holds a raw id, whatever the body's shape -----------
@pytest.mark.parametrize(
    ("body", "secret"),
    [
        ({"user": "eve@example.com", "event": {"page_view": {"url": "/"}}}, "eve@example.com"),
        ({"user": {"email": ["gina@example.com"]}, "event": {"page_view": {"url": "/"}}}, "gina@example.com"),
        (
            {"user": [{"email": "frank@example.com"}], "event": {"page_view": {"url": "/"}}},
            "frank@example.com",
        ),
        ({"user": {"_id": {"nested": [987654321]}}, "event": {"page_view": {"url": "/"}}}, "987654321"),
        (
            {"user": {"email": "x@example.com"}, "event": {"login": {"email": ["hal@example.com"]}}},
            "hal@example.com",
        ),
        ({"user": {"ivy@example.com": True}, "event": {"page_view": {"url": "/"}}}, "ivy@example.com"),
        ({"user": 123456789012, "event": {"page_view": {"url": "/"}}}, "123456789012"),
    ],
)
def test_rejected_payloads_hold_no_raw_id_whatever_the_shape(
    client: FlaskClient, state: EventTrackState, key: str, body: Any, secret: str
) -> None:
    response = post(client, key, "/v1/event/", body)
    assert response.status_code == 400
    (rejection,) = rejected(state)
    assert rejection["payload"] and "hash:" in rejection["payload"]
    assert secret not in rejection["payload"]
    assert secret.encode() not in on_disk(state)


@pytest.mark.parametrize("depth", [100, 900, 5000])
def test_deeply_nested_refused_user_is_400_and_logged_without_raw_id(
    client: FlaskClient, state: EventTrackState, key: str, depth: int
) -> None:
    body = '{"user": ' + "[" * depth + '"deep@example.com"' + "]" * depth + ', "event": {"page_view": {}}}'
    response = post(client, key, "/v1/event/", body)
    assert response.status_code == 400
    (rejection,) = rejected(state)
    assert "deep@example.com" not in (rejection["payload"] or "")
    assert b"deep@example.com" not in on_disk(state)


# -- finding 9: an e-mail known through a login can be read --------------------------------
def test_get_by_an_email_known_only_from_a_login_shows_the_linked_profile(
    client: FlaskClient, state: EventTrackState, key: str
) -> None:
    create_user(client, key, {"_id": 42}, firstname="Z")
    send(client, key, {"_id": 42}, {"page_view": {"url": "/before-login"}})
    assert send(client, key, {"_id": 42}, {"login": {"email": "z@z.z"}}).status_code == 200
    response = client.get("/v1/user/z@z.z", headers={"Authorization": key})
    assert response.status_code == 200, response.json
    body = response.json["results"]
    assert body["user"]["user_key"] == state.pipeline.user_key("42")
    assert body["user"]["attributes"] == {"firstname": "Z"}
    assert {e["type"] for e in body["events"]} == {"page_view", "login"}
    # events still need a profile of their own: no implicit creation
    assert send(client, key, {"email": "z@z.z"}, {"page_view": {"url": "/"}}).status_code == 400
    # and another tenant's link does not make the e-mail readable
    other = create_key(state.store, "globex").secret
    assert client.get("/v1/user/z@z.z", headers={"Authorization": other}).status_code == 404


# -- finding 10: a generic event cannot take a standard kind's name ------------------------
@pytest.mark.parametrize("name", ["confirmation", "email_open", "update", "page_view"])
def test_generic_event_named_like_a_standard_kind_is_400(
    client: FlaskClient, state: EventTrackState, key: str, name: str
) -> None:
    create_user(client, key, {"_id": "u"})
    response = send(client, key, {"_id": "u"}, {"generic": {"generic": {"event_name": name, "orderId": 7}}})
    assert response.status_code == 400
    (error,) = errors(response)
    assert error["message"] == "Invalid event data"
    assert f'{{"{name}": ' in error["description"]  # says to send the kind itself
    assert events(state) == []
    assert rejected(state)[0]["reason"] == "schema_violation"


# -- finding 11: an e-mail ending in a newline is refused ----------------------------------
@pytest.mark.parametrize("email", ["a@b.com\n", "a@b.com\r\n", "\na@b.com"])
def test_email_with_a_newline_is_refused(
    client: FlaskClient, state: EventTrackState, key: str, email: str
) -> None:
    create_user(client, key, {"email": "a@b.com"})
    response = post(client, key, "/v1/user", {"user": {"email": email}})
    assert response.status_code == 400
    assert errors(response)[0]["message"] == "Invalid user information"
    assert state.store.get_profile("acme", state.pipeline.user_key(email)) is None


def test_login_email_must_be_an_email_address(client: FlaskClient, state: EventTrackState, key: str) -> None:
    from flask_eventtrack.stores import EventQuery

    create_user(client, key, {"email": EMAIL})
    for bad in ("z@z.z\n", "not-an-email", 42):
        response = send(client, key, {"email": EMAIL}, {"login": {"email": bad}})
        assert response.status_code == 400, bad
        assert "e-mail" in errors(response)[0]["description"]
    assert send(client, key, {"email": EMAIL}, {"login": {"email": "z@z.z"}}).status_code == 200
    assert state.store.count_events(EventQuery(type="login")) == 1
