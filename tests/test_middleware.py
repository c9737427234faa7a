"""The WSGI middleware mounts the endpoints into a plain (non-Flask) WSGI app."""

from __future__ import annotations

from typing import Any

import pytest
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


def test_unknown_tracking_path_is_a_404_of_the_tracking_app(wrapped: EventTrackMiddleware) -> None:
    assert Client(wrapped).get("/events/nope").status_code == 404


def test_bad_prefix_fails_at_definition_time() -> None:
    with pytest.raises(ValueError, match="prefix must start with '/'"):
        EventTrackMiddleware(plain_app, prefix="events/")
