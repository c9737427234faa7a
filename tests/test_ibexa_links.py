"""Ibexa link builder: the URLs it builds are the ones the endpoint accepts."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient

from example_app import create_app
from flask_eventtrack import EventQuery, get_state, links
from flask_eventtrack.extension import EventTrackState


def follow(client: FlaskClient, url: str) -> None:
    parts = urlsplit(url)
    response = client.get(parts.path + (f"?{parts.query}" if parts.query else ""))
    assert response.status_code == 204, (url, response.get_data(as_text=True))


def test_recommendation_links_match_the_vendor_shape_and_are_accepted(
    app: Flask, client: FlaskClient, state: EventTrackState
) -> None:
    with app.test_request_context():
        items = links.recommendation_links(
            "Js79009234YU7", "also_bought", [(1, 128), {"itemType": 1, "itemId": 129}]
        )
    assert items[0] == {
        "itemType": 1,
        "itemId": 128,
        "links": {
            "clickRecommended": "/api/00000/clickrecommended/Js79009234YU7/1/128?scenario=also_bought",
            "rendered": "/api/00000/rendered/Js79009234YU7/1/128?scenario=also_bought",
        },
    }
    for item in items:
        follow(client, item["links"]["rendered"])
    follow(client, items[1]["links"]["clickRecommended"])
    stored = [(e.type, e.item_id, e.props) for e in state.store.iter_events(EventQuery(source="ibexa"))]
    assert stored == [
        ("rendered", "128", {"scenario": "also_bought"}),
        ("rendered", "129", {"scenario": "also_bought"}),
        ("clickrecommended", "129", {"scenario": "also_bought"}),
    ]


def test_trigger_links_are_external_and_accepted(
    app: Flask, client: FlaskClient, state: EventTrackState
) -> None:
    with app.test_request_context(base_url="https://shop.example"):
        message = links.trigger_links("john@example.com", "cart_reminder", [(1, 5)])
    assert message["triggerOpenedLink"] == (
        "https://shop.example/api/00000/triggeropened/john%40example.com?triggername=cart_reminder"
    )
    follow(client, message["triggerOpenedLink"])
    follow(client, message["recommendations"][0]["links"]["clickRecommended"])
    stored = list(state.store.iter_events(EventQuery(source="ibexa")))
    assert [e.type for e in stored] == ["triggeropened", "clicktriggered"]
    assert {e.user for e in stored} == {state.pipeline.user_key("john@example.com")}


def test_rendered_url_bundles_items_and_quotes_ids(
    app: Flask, client: FlaskClient, state: EventTrackState
) -> None:
    with app.test_request_context():
        url = links.rendered_url("a/b c", 1, [128, 129, 155], scenario="also bought")
    assert url == "/api/00000/rendered/a%2Fb%20c/1/128,129,155?scenario=also+bought"
    follow(client, url)
    stored = list(state.store.iter_events(EventQuery(source="ibexa")))
    assert [e.item_id for e in stored] == ["128", "129", "155"]
    assert {e.user for e in stored} == {state.pipeline.user_key("a/b c")}
    assert {e.props["scenario"] for e in stored} == {"also bought"}


def test_jinja_globals(app: Flask, client: FlaskClient) -> None:
    template = (
        "<img src=\"{{ ibexa_rendered_url(user, 1, ids, scenario='top') }}\">"
        "<a href=\"{{ ibexa_clickrecommended_url(user, 1, 7, 'top') }}\">"
        "<img src=\"{{ ibexa_triggeropened_url(user, 'weekly', external=False) }}\">"
        "<a href=\"{{ ibexa_clicktriggered_url(user, 1, 7, 'weekly') }}\">"
    )
    with app.test_request_context():
        html = render_template_string(template, user="u1", ids=[7, 8])
    assert html == (
        '<img src="/api/00000/rendered/u1/1/7,8?scenario=top">'
        '<a href="/api/00000/clickrecommended/u1/1/7?scenario=top">'
        '<img src="/api/00000/triggeropened/u1?triggername=weekly">'
        '<a href="/api/00000/clicktriggered/u1/1/7?triggername=weekly">'
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: links.rendered_url("u", 1, []), "at least one item"),
        (lambda: links.rendered_url("", 1, [5]), "userid must not be empty"),
        (lambda: links.clickrecommended_url("u", 1, 5, ""), "scenario is required"),
        (lambda: links.triggeropened_url("u", ""), "triggername is required"),
        # Ids a link cannot carry back as they are: the click or impression would be lost or split.
        (lambda: links.clickrecommended_url("..", 1, 155, "s"), "userid cannot be '..'"),
        (lambda: links.triggeropened_url(".", "weekly"), "userid cannot be '.'"),
        (lambda: links.clicktriggered_url("u", 1, "..", "weekly"), "itemid cannot be '..'"),
        (lambda: links.clickrecommended_url("a\\b", 1, 155, "s"), "userid cannot contain a backslash"),
        (lambda: links.rendered_url("u", 1, ["a,b", "c"]), "An item id cannot contain a comma"),
    ],
)
def test_bad_arguments_raise_value_error(app: Flask, call: Any, message: str) -> None:
    with app.test_request_context(), pytest.raises(ValueError, match=message):
        call()


class TestSeveralCustomersAndAPrefix:
    @pytest.fixture
    def config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            **config,
            "EVENTTRACK_IBEXA_CUSTOMERS": "00000,11111",
            "EVENTTRACK_IBEXA_URL_PREFIX": "/track",
        }

    def test_customer_must_be_named(self, app: Flask, client: FlaskClient) -> None:
        with app.test_request_context():
            with pytest.raises(ValueError, match="customerid"):
                links.rendered_url("u", 1, [5])
            url = links.rendered_url("u", 1, [5], customerid="11111")
        assert url == "/track/api/11111/rendered/u/1/5"
        follow(client, url)
        assert client.get("/api/11111/rendered/u/1/5").status_code == 404


def test_links_need_the_dialect(config: dict[str, Any]) -> None:
    app = create_app({**config, "EVENTTRACK_DIALECTS": "cortex"})
    try:
        with app.test_request_context(), pytest.raises(RuntimeError, match="ibexa dialect is not enabled"):
            links.rendered_url("u", 1, [5])
    finally:
        get_state(app).store.close()
