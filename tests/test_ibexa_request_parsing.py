"""Ibexa request parsing: requests that were once answered wrongly.

1. A form-encoded POST sent chunked (no Content-Length) lost its parameters.
2. An empty path segment was a 308 to a path whose segments had shifted, not a 400.
3. Percent-escapes that are not UTF-8 became U+FFFD (path) or the literal ``%FC``
   (query), so distinct user ids and values were merged.
4. A backslash in a form-encoded POST parameter was accepted.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient

from flask_eventtrack import EventQuery
from flask_eventtrack.events import Event, Rejection
from flask_eventtrack.extension import EventTrackState

FORM = "application/x-www-form-urlencoded"


def events(state: EventTrackState) -> list[Event]:
    return list(state.store.iter_events(EventQuery(source="ibexa")))


def rejected(state: EventTrackState) -> list[Rejection]:
    return list(state.store.iter_rejected(EventQuery(source="ibexa")))


# -- 1. chunked form-encoded POST ------------------------------------------------------------


def post_chunked(client: FlaskClient, url: str, body: bytes) -> Any:
    """A body without Content-Length, as a server passes on a chunked request."""
    return client.post(
        url,
        input_stream=io.BytesIO(body),
        headers={"Content-Type": FORM, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_chunked_form_post_keeps_its_parameters(client: FlaskClient, state: EventTrackState) -> None:
    response = post_chunked(client, "/api/00000/click/u/1/123", b"categorypath=%2FShoes%2FChildren")
    assert response.status_code == 204
    (event,) = events(state)
    assert event.props == {"categorypath": "Shoes/Children"}


def test_chunked_form_post_can_carry_a_required_parameter(
    client: FlaskClient, state: EventTrackState
) -> None:
    response = post_chunked(client, "/api/00000/clickrecommended/u/1/155", b"scenario=also_bought")
    assert response.status_code == 204, response.get_data(as_text=True)
    (event,) = events(state)
    assert event.props == {"scenario": "also_bought"}


# -- 2. empty path segments ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/00000/click//1/2",  # was a 308 to /click/1/2
        "/api/00000/login//b",  # was a 308 to /login/b
        "/api/00000/click/",  # was a 404 (the path converter cannot match an empty string)
        "/api/00000/triggeropened/?triggername=t",
    ],
)
def test_an_empty_path_segment_is_400_and_logged(
    client: FlaskClient, state: EventTrackState, url: str
) -> None:
    response = client.get(url)
    assert response.status_code == 400, (response.status_code, response.headers.get("Location"))
    assert "has the form" in response.get_data(as_text=True)
    (rejection,) = rejected(state)
    assert rejection.reason == "schema_violation"
    assert events(state) == []


def test_an_empty_user_id_does_not_shift_the_segments(client: FlaskClient, state: EventTrackState) -> None:
    """Following the old redirect stored a click of user "1" on item type 2, item 3."""
    response = client.get("/api/00000/click//1/2/3", follow_redirects=True)
    assert response.status_code == 400
    assert events(state) == []


# -- 3. bytes that are not UTF-8 -------------------------------------------------------------


def get_raw(client: FlaskClient, raw_path: str, raw_uri: bool = True) -> Any:
    """GET as a WSGI server passes it on: PATH_INFO holds the decoded bytes as latin-1 text."""
    path_info = bytes(_unescaped(raw_path)).decode("latin-1")
    environ = {"PATH_INFO": path_info, "RAW_URI": raw_path if raw_uri else "", "REQUEST_URI": ""}
    return client.get(raw_path, environ_overrides=environ)


def _unescaped(text: str) -> list[int]:
    out, i = [], 0
    while i < len(text):
        if text[i] == "%":
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(text[i]))
            i += 1
    return out


@pytest.mark.parametrize("raw_uri", [True, False], ids=["raw-uri", "path-info-only"])
def test_user_ids_that_are_not_utf8_are_400_not_merged(
    client: FlaskClient, state: EventTrackState, raw_uri: bool
) -> None:
    """m%FCller and m%F6ller (latin-1) both decoded to the U+FFFD user m%EF%BF%BDller."""
    for user in ("m%FCller", "m%F6ller"):
        response = get_raw(client, f"/api/00000/click/{user}/1/2", raw_uri)
        assert response.status_code == 400
        assert "URL path is not valid UTF-8" in response.get_data(as_text=True)
    assert events(state) == []
    refusals = rejected(state)
    assert [r.reason for r in refusals] == ["schema_violation"] * 2
    assert all("<user:" in r.payload and "ller" not in r.payload for r in refusals)
    # A real U+FFFD, sent as UTF-8, is a valid user id.
    assert get_raw(client, "/api/00000/click/m%EF%BF%BDller/1/2", raw_uri).status_code == 204
    assert len(events(state)) == 1


def test_query_values_that_are_not_utf8_are_400_not_kept_as_text(
    client: FlaskClient, state: EventTrackState
) -> None:
    """?categorypath=%FC was stored as the text "%FC", the same value as %25FC."""
    response = client.get("/api/00000/click/u/1/2?categorypath=m%FCller")
    assert response.status_code == 400
    assert "query string is not valid UTF-8" in response.get_data(as_text=True)
    assert [r.reason for r in rejected(state)] == ["schema_violation"]
    assert client.get("/api/00000/click/u/1/2?categorypath=m%25FCller").status_code == 204
    assert [e.props for e in events(state)] == [{"categorypath": "m%FCller"}]


def test_form_bodies_that_are_not_utf8_are_400(client: FlaskClient, state: EventTrackState) -> None:
    response = client.post("/api/00000/click/u/1/2", data=b"categorypath=m%FCller", content_type=FORM)
    assert response.status_code == 400
    assert "form body is not valid UTF-8" in response.get_data(as_text=True)
    assert events(state) == []


# -- 4. backslashes in a form-encoded POST ---------------------------------------------------


@pytest.mark.parametrize("body", [b"categorypath=Shoes%5CKids", b"categorypath=a\\b", b"a%5cb=1"])
def test_a_backslash_in_a_form_parameter_is_400(
    client: FlaskClient, state: EventTrackState, body: bytes
) -> None:
    response = client.post("/api/00000/click/u/1/2", data=body, content_type=FORM)
    assert response.status_code == 400
    assert "backslash" in response.get_data(as_text=True)
    assert [r.reason for r in rejected(state)] == ["schema_violation"]
    assert events(state) == []
