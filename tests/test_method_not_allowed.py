"""A wrong method on a dialect's URL answers 405 in that dialect's envelope.

Flask raises routing errors before it knows the blueprint, so these 405s used to
be werkzeug's HTML page. The host app's own 404/405 pages must stay its own, and
the automatic ``OPTIONS`` answer must stay Flask's.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key
from flask_eventtrack.stores import EventQuery


def allow(response: Any) -> set[str]:
    return {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v4/events/custom", {"POST", "OPTIONS"}),
        ("PUT", "/v4/events/batch", {"POST", "OPTIONS"}),
        ("DELETE", "/v4/events/hit-timer", {"POST", "OPTIONS"}),
        ("GET", "/v4/events/nope", {"POST", "OPTIONS"}),
        ("GET", "/v4/auth/token", {"POST", "OPTIONS"}),
        ("PATCH", "/v4/transactions", {"POST", "OPTIONS"}),
        ("GET", "/events/v1/single/recommendation.view", {"POST", "OPTIONS"}),
        ("GET", "/events/v1/batch", {"POST", "OPTIONS"}),
        ("POST", "/v4/event-definitions", {"GET", "HEAD", "OPTIONS"}),
        ("DELETE", "/v4/events/profile/id/1", {"GET", "HEAD", "OPTIONS"}),
        ("PROPFIND", "/v4/events/custom", {"POST", "OPTIONS"}),
    ],
)
def test_synerise_405_is_in_its_envelope(
    client: FlaskClient, state: EventTrackState, method: str, path: str, allowed: set[str]
) -> None:
    response = client.open(path, method=method, data=b"{}", content_type="application/json")
    assert response.status_code == 405
    assert response.is_json, response.get_data(as_text=True)[:80]
    body = response.get_json()
    assert body["status"] == 405 and body["error"] == "Method Not Allowed" and body["errors"] == []
    assert method in body["message"]
    assert allow(response) == allowed
    assert list(state.store.iter_rejected(EventQuery())) == []  # not a refused write
    options = client.options(path)  # still Flask's automatic answer, with the same Allow
    assert options.status_code == 200 and allow(options) == allowed


def test_synerise_head_405_has_no_body(client: FlaskClient) -> None:
    response = client.head("/v4/events/custom")
    assert response.status_code == 405 and response.mimetype == "application/json"
    assert response.get_data() == b""


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/event/", {"POST", "OPTIONS"}),
        ("PUT", "/v1/user", {"POST", "OPTIONS"}),
        ("POST", "/v1/user/a@example.com", {"GET", "HEAD", "OPTIONS"}),
        ("DELETE", "/v1/user/", {"GET", "HEAD", "POST", "OPTIONS"}),
        ("PROPFIND", "/v1/event", {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}),
    ],
)
def test_profile_405_is_in_its_envelope(
    client: FlaskClient, state: EventTrackState, method: str, path: str, allowed: set[str]
) -> None:
    key = create_key(state.store, "acme").secret
    response = client.open(path, method=method, headers={"Authorization": key})
    assert response.status_code == 405
    assert response.is_json, response.get_data(as_text=True)[:80]
    [error] = response.get_json()["errors"]
    assert error["message"] == "Method not allowed" and method in error["description"]
    assert allow(response) == allowed
    options = client.options(path)
    assert options.status_code == 200 and allow(options) == allowed


@pytest.mark.parametrize("path", ["/cortex", "/cortex/"])
def test_cortex_405_is_json(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 405
    assert response.get_json() == {
        "status": "rejected",
        "message": "The method GET is not allowed here; use POST.",
    }
    assert allow(response) == {"POST", "OPTIONS"}


class TestUnderAPrefix:
    @pytest.fixture
    def config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            **config,
            "EVENTTRACK_SYNERISE_URL_PREFIX": "/syn",
            "EVENTTRACK_PROFILE_URL_PREFIX": "/crm",
        }

    def test_prefixed_urls_answer_in_the_envelope(self, client: FlaskClient) -> None:
        assert client.get("/syn/v4/events/custom").get_json()["status"] == 405
        assert client.get("/crm/v1/event/").get_json()["errors"][0]["message"] == "Method not allowed"


def test_only_the_dialects_urls_change(app: Flask) -> None:
    """The host app's own 404/405 pages stay its own; so does Ibexa's 405, which
    docs/ibexa.md promises to be Flask's."""

    @app.post("/host/form")
    def form() -> str:
        return "ok"

    client = app.test_client()
    assert client.get("/v4/events/custom").mimetype == "application/json"
    for response in (
        client.get("/host/form"),
        client.post("/"),
        client.get("/no/such/page"),
        client.put("/api/00000/click/u/1/5"),
    ):
        assert response.status_code in (404, 405)
        assert response.mimetype == "text/html", response.get_data(as_text=True)[:80]


def test_the_host_apps_own_405_handler_keeps_its_urls_whenever_registered(app: Flask) -> None:
    @app.post("/host/form")
    def form() -> str:
        return "ok"

    @app.errorhandler(405)  # registered after init_app
    def host_405(error: Exception) -> tuple[str, int]:
        return "host 405", 405

    client = app.test_client()
    assert client.get("/host/form").get_data(as_text=True) == "host 405"
    assert client.get("/v4/events/custom").get_json()["status"] == 405


def test_host_before_request_hooks_still_run_on_a_dialects_405(app: Flask) -> None:
    seen: list[str] = []

    @app.before_request
    def host_hook() -> None:  # registered after init_app: a rate limiter, a request log
        seen.append("host")

    client = app.test_client()
    for path in ("/cortex/", "/v4/events/custom", "/v1/event/"):
        seen.clear()
        assert client.get(path).status_code == 405
        assert seen == ["host"], path


def test_the_host_apps_url_converters_do_not_run_for_its_405s(app: Flask) -> None:
    import datetime

    from werkzeug.routing import BaseConverter

    calls: list[str] = []

    class DayConverter(BaseConverter):
        def to_python(self, value: str) -> datetime.date:
            calls.append(value)
            return datetime.date.fromisoformat(value)  # ValueError on a bad day

    app.url_map.converters["day"] = DayConverter

    @app.post("/report/<day:day>")
    def report(day: datetime.date) -> str:
        return "ok"

    client = app.test_client()
    for url in ("/report/2024-13-01", "/report/2024-12-01"):  # a converter failing was a 500
        response = client.get(url)
        assert response.status_code == 405 and response.mimetype == "text/html"
    assert calls == []


@pytest.mark.parametrize("cortex_prefix", ["/cortex", ""])  # "": the Cortex URL is "/"
def test_host_urls_that_only_look_like_a_dialects_are_not_matched_again(
    config: dict[str, Any], cortex_prefix: str
) -> None:
    import datetime

    from werkzeug.routing import BaseConverter

    from example_app import create_app
    from flask_eventtrack import get_state

    app = create_app({**config, "EVENTTRACK_CORTEX_URL_PREFIX": cortex_prefix})
    calls: list[str] = []

    class DayConverter(BaseConverter):
        def to_python(self, value: str) -> datetime.date:
            calls.append(value)
            return datetime.date.fromisoformat(value)

    app.url_map.converters["day"] = DayConverter

    @app.post("/v1/users/<day:day>")  # starts with the profile API's "/v1/user" as text
    def users(day: datetime.date) -> str:
        return "ok"

    try:
        response = app.test_client().get("/v1/users/2024-12-01")
        assert response.status_code == 405 and response.mimetype == "text/html"
        assert calls == []
    finally:
        get_state(app).store.close()


# ("//v4/..." would be read by the test client as a host name.)
@pytest.mark.parametrize("path", ["/cortex//", "/v4//events/custom", "/v4/events//custom", "/v1//event/"])
def test_a_wrong_method_on_a_url_with_doubled_slashes_is_in_the_envelope(
    client: FlaskClient, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 405 and response.is_json, response.get_data()[:60]


@pytest.mark.parametrize(
    "path", ["/v4//events/custom", "/v4/events//batch", "/v1//event/", "/v1//user", "/cortex//"]
)
def test_paths_match_only_as_sent_never_redirected(
    client: FlaskClient, state: EventTrackState, path: str
) -> None:
    """werkzeug merged doubled slashes with a 308 to another path; the vendors' paths are
    exact, and a client following it would post to a URL it never named."""
    response = client.post(path, json={})
    assert response.status_code == 404 and "Location" not in response.headers
    assert state.store.count_events(EventQuery()) == 0


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_reading_v1_user_without_an_id_is_a_404_in_the_envelope_not_a_redirect(
    client: FlaskClient, state: EventTrackState, method: str
) -> None:
    secret = create_key(state.store, "acme").secret
    response = client.open("/v1/user", method=method, headers={"Authorization": secret})
    assert response.status_code == 404 and "Location" not in response.headers
    if method == "GET":
        assert "read one with GET /v1/user/<email or _id>" in response.get_json()["errors"][0]["description"]
