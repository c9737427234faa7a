"""Profile events API: hostile or odd input that was once answered wrongly.

2. a NUL in ``GET /v1/user/<email or _id>`` reached PostgreSQL when raw ids are stored (500);
3. a refused key made the server read and parse the whole body, past the size limit.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from _pg import on_store
from flask.testing import FlaskClient
from test_profile import create_user, errors, rejected

from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key

BIG_BODY = json.dumps({"user": {"email": "a@example.com"}, "event": {"update": {"pad": "x" * 5000}}})


@pytest.fixture
def key(state: EventTrackState) -> str:
    return create_key(state.store, "acme").secret


# -- 3: an auth failure never reads the body ---------------------------------------------
@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "EVENTTRACK_MAX_CONTENT_LENGTH": 1000}


class CountingStream(io.BytesIO):
    """A request body that counts what the server reads of it."""

    read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data

    def read1(self, size: int | None = -1) -> bytes:
        data = super().read1(size)
        self.read_bytes += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data = super().readline(size)
        self.read_bytes += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        count = super().readinto(buffer)
        self.read_bytes += count
        return count


@pytest.mark.parametrize("authorization", [None, "wrong-key", "Bearer scheme-word"])
@pytest.mark.parametrize("path", ["/v1/event/", "/v1/user"])
def test_auth_failure_is_logged_without_reading_the_body(
    client: FlaskClient, state: EventTrackState, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = client.post(path, data=BIG_BODY, content_type="application/json", headers=headers)
    assert response.status_code == 401
    [rejection] = rejected(state)
    assert rejection["reason"] == "auth_failure" and rejection["payload"] is None


def test_auth_failure_with_a_chunked_body_reads_none_of_it(
    client: FlaskClient, state: EventTrackState
) -> None:
    stream = CountingStream(BIG_BODY.encode() * 10)
    response = client.post(
        "/v1/event/",
        input_stream=stream,
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked", "Authorization": "wrong-key"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 401
    assert stream.read_bytes == 0
    assert rejected(state)[0]["payload"] is None


def test_authorized_refusal_still_logs_its_redacted_body(
    client: FlaskClient, state: EventTrackState, key: str
) -> None:
    body = {"user": {"email": "a@example.com"}, "event": {"nope": {}}}
    response = client.post("/v1/event/", json=body, headers={"Authorization": key})
    assert response.status_code == 400
    payload = json.loads(rejected(state)[0]["payload"])
    assert payload["event"] == {"nope": {}} and "a@example.com" not in json.dumps(payload)


# -- 2: NUL in the user path -------------------------------------------------------------
class TestNulInUserPath:
    """On every store, with raw ids stored (so the path reaches the query as text) or not."""

    @pytest.fixture(
        params=[
            pytest.param(("sqlite", False), id="sqlite-raw"),
            pytest.param(("postgresql", True), id="postgresql-hashed", marks=pytest.mark.postgres),
            pytest.param(("postgresql", False), id="postgresql-raw", marks=pytest.mark.postgres),
        ]
    )
    def config(self, config: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
        store, hashing = request.param
        return {**on_store(store, config, request), "EVENTTRACK_HASH_USER_IDS": hashing}

    @pytest.mark.parametrize("identifier", ["a%00b", "%00", "a%00@example.com"])
    def test_nul_is_a_400_in_the_envelope(self, client: FlaskClient, key: str, identifier: str) -> None:
        response = client.get(f"/v1/user/{identifier}", headers={"Authorization": key})
        assert response.status_code == 400
        assert errors(response) == [
            {
                "message": "Invalid user information",
                "description": "The email or _id must not contain a NUL character or an unpaired surrogate.",
            }
        ]

    def test_nul_without_a_key_is_still_401(self, client: FlaskClient) -> None:
        assert client.get("/v1/user/a%00b").status_code == 401

    def test_clean_identifier_still_reads(self, client: FlaskClient, key: str) -> None:
        create_user(client, key, {"_id": "u-1"})
        assert client.get("/v1/user/u-1", headers={"Authorization": key}).status_code == 200


def test_an_email_used_as_a_key_inside_an_attribute_is_not_named_in_the_rejected_log(
    client: FlaskClient, state: EventTrackState, key: str
) -> None:
    create_user(client, key, {"email": "a@example.com"})
    too_deep = json.loads("[" * 20 + "]" * 20)  # past EVENTTRACK_MAX_JSON_DEPTH
    body = {
        "user": {"email": "a@example.com"},
        "event": {"update": {"email": {"jan.secret@example.com": too_deep}}},
    }
    response = client.post(
        "/v1/event/", data=json.dumps(body), content_type="application/json", headers={"Authorization": key}
    )
    assert response.status_code == 400
    (rejection,) = rejected(state)
    assert "attributes.email.*" in rejection["message"]
    assert "jan.secret" not in rejection["message"] and "jan.secret" not in (rejection["payload"] or "")
