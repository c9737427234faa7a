"""The WSGI middleware mounts the endpoints into a plain (non-Flask) WSGI app."""

from __future__ import annotations

from typing import Any

import pytest
from flask import request
from werkzeug.test import Client

from flask_eventtrack import EventTrackMiddleware, get_state
from flask_eventtrack.stores import EventQuery


def plain_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"host app: {environ['PATH_INFO']}".encode()]


@pytest.fixture
def wrapped(tmp_path: Any) -> EventTrackMiddleware:
    return EventTrackMiddleware(
        plain_app,
        prefix="/events",
        config={"SECRET_KEY": "s", "EVENTTRACK_STORE_URL": f"sqlite:///{tmp_path}/mw.db"},
    )


def test_tracking_paths_reach_the_pipeline(wrapped: EventTrackMiddleware) -> None:
    client = Client(wrapped)
    response = client.post("/events/cortex", json={"data": [{"user_id": "u", "type": "click"}]})
    assert response.status_code == 200
    assert response.get_json() == {"status": "received"}
    store = get_state(wrapped.flask_app).store
    (event,) = store.iter_events(EventQuery())
    assert event.type == "click" and event.user != "u"


def test_other_paths_reach_the_host_app(wrapped: EventTrackMiddleware) -> None:
    client = Client(wrapped)
    assert client.get("/shop/cart").get_data(as_text=True) == "host app: /shop/cart"
    assert client.get("/eventsfoo").get_data(as_text=True) == "host app: /eventsfoo"
    assert client.get("/events").get_data(as_text=True) == "host app: /events"  # only /events/... is ours


def test_a_non_ascii_prefix_is_mounted(tmp_path: Any) -> None:
    # PATH_INFO and SCRIPT_NAME carry the URL's UTF-8 bytes as latin-1 text (PEP 3333).
    wrapped = EventTrackMiddleware(
        plain_app,
        prefix="/événements",
        config={"SECRET_KEY": "s", "EVENTTRACK_STORE_URL": f"sqlite:///{tmp_path}/mw.db"},
    )
    roots: list[str] = []
    wrapped.flask_app.before_request(lambda: roots.append(request.root_path))
    payload = {"data": [{"user_id": "u", "type": "t"}]}
    response = Client(wrapped).post("/%C3%A9v%C3%A9nements/cortex", json=payload)
    assert response.get_json() == {"status": "received"}
    assert roots == ["/événements"]
    assert get_state(wrapped.flask_app).store.count_events(EventQuery()) == 1


def test_unknown_tracking_path_is_a_404_of_the_tracking_app(wrapped: EventTrackMiddleware) -> None:
    assert Client(wrapped).get("/events/nope").status_code == 404


def test_bad_prefix_fails_at_definition_time() -> None:
    with pytest.raises(ValueError, match="prefix must start with '/'"):
        EventTrackMiddleware(plain_app, prefix="events/")
