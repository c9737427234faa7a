"""The body a rejected-log entry carries: its own request's, read within the limit.

A refused body sent without Content-Length (chunked) is logged like any other.

``read_body`` reads such a body from the stream itself, so ``request.get_data()``
finds it empty afterwards; the rejected log must use the bytes ``read_body`` read,
and a body over the limit must still never be read past the limit + 1 byte.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key
from flask_eventtrack.stores import EventQuery
from flask_eventtrack.tokens import Tokens, app_secret_keys

LIMIT = 1000
EMAIL = "jane@example.com"
SYNERISE = json.dumps({"action": "a b", "client": {"email": EMAIL}, "label": "x"}).encode()
PROFILE = json.dumps({"user": {"email": EMAIL}, "event": {"nope": {}}}).encode()


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "EVENTTRACK_MAX_CONTENT_LENGTH": LIMIT}


def chunked(client: FlaskClient, path: str, stream: io.BytesIO, headers: dict[str, str]) -> TestResponse:
    """As gunicorn passes a chunked body: no Content-Length, ``wsgi.input_terminated``."""
    return client.post(
        path,
        input_stream=stream,
        headers={**headers, "Transfer-Encoding": "chunked"},
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )


def payloads(state: EventTrackState, source: str) -> list[str | None]:
    return [r.payload for r in state.store.iter_rejected(EventQuery(source=source))]


def check_sent_both_ways(
    client: FlaskClient, state: EventTrackState, path: str, raw: bytes, headers: dict[str, str], source: str
) -> dict[str, Any]:
    """Refuse ``raw`` with Content-Length, then chunked; both logged alike, redacted.
    Then a chunked body over the limit: 413, read no further than the limit + 1."""
    response = client.post(path, data=raw, headers=headers, content_type="application/json")
    assert response.status_code == 400
    assert chunked(client, path, io.BytesIO(raw), headers).status_code == 400
    with_length, without_length = payloads(state, source)
    assert with_length is not None and EMAIL not in with_length
    assert without_length == with_length

    stream = io.BytesIO(b'{"pad": "' + b"x" * 10 * LIMIT + b'"}')
    assert chunked(client, path, stream, headers).status_code == 413
    assert stream.tell() <= LIMIT + 1
    assert payloads(state, source)[-1] is None
    return dict(json.loads(with_length))


def test_synerise_chunked_refused_body_is_logged(
    app: Flask, client: FlaskClient, state: EventTrackState
) -> None:
    token = Tokens(app_secret_keys(app), 3600, state.store).issue("acme")
    headers = {"Authorization": f"Bearer {token}"}
    payload = check_sent_both_ways(client, state, "/v4/events/custom", SYNERISE, headers, "synerise")
    assert payload["action"] == "a b" and payload["client"]["email"].startswith("hashed:")


def test_profile_chunked_refused_body_is_logged(client: FlaskClient, state: EventTrackState) -> None:
    headers = {"Authorization": create_key(state.store, "acme", "api").secret}
    payload = check_sent_both_ways(client, state, "/v1/event/", PROFILE, headers, "profile")
    assert payload["event"] == {"nope": {}} and payload["user"]["email"].startswith("hash:")


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/v4/events/nope", b"{}"),  # unknown endpoint: 404 before the body is read
        ("/v4/events/custom", b'{"pad": "' + b"x" * 2 * LIMIT + b'"}'),  # 413 on Content-Length
    ],
)
def test_a_request_that_read_no_body_does_not_log_the_previous_requests_body(
    app: Flask, client: FlaskClient, state: EventTrackState, path: str, data: bytes
) -> None:
    """Requests made inside one app context (a test, a CLI command) share ``flask.g``."""
    token = Tokens(app_secret_keys(app), 3600, state.store).issue("acme")
    headers = {"Authorization": f"Bearer {token}"}
    with app.app_context():
        first = client.post("/v4/events/custom", data=SYNERISE.replace(b"a b", b"a.b"), headers=headers,
                            content_type="application/json")  # fmt: skip
        assert first.status_code == 202
        second = client.post(path, data=data, headers=headers, content_type="application/json")
        assert second.status_code in (404, 413)
    (rejected,) = state.store.iter_rejected(EventQuery(source="synerise"))
    assert rejected.payload is None and rejected.tenant == "acme"
