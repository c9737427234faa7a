"""Ibexa dialect: every refusal has the vendor's status code, a plain-text reason,
and an entry in the rejected log."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from flask.testing import FlaskClient

from example_app import create_app
from flask_eventtrack import ConfigurationError, EventQuery
from flask_eventtrack.extension import EventTrackState


def refusals(state: EventTrackState) -> list[Any]:
    return list(state.store.iter_rejected(EventQuery(source="ibexa")))


def stored(state: EventTrackState) -> int:
    return state.store.count_events(EventQuery(source="ibexa"))


BAD_REQUESTS = [
    ("/api/00000/click/u/0/5", "itemtypeid"),
    ("/api/00000/click/u/2147483648/5", "itemtypeid"),
    ("/api/00000/click/u/1/0", "itemid"),
    ("/api/00000/click/u/1/2147483648", "itemid"),
    ("/api/00000/click/u/1/abc", "itemid"),
    ("/api/00000/click/u/1/-5", "itemid"),
    ("/api/00000/click/u/1/5.0", "itemid"),
    ("/api/00000/click/u/x/5", "itemtypeid"),
    ("/api/00000/rendered/u/1/5,abc", "itemid"),
    ("/api/00000/rendered/u/1/5,,6", "itemid"),
    ("/api/00000/consume/u/1/5?percentage=101", "percentage"),
    ("/api/00000/consume/u/1/5?percentage=-1", "percentage"),
    ("/api/00000/consume/u/1/5?percentage=half", "percentage"),
    ("/api/00000/rate/u/1/5?rating=101", "rating"),
    ("/api/00000/rate/u/1/5?rating=", "rating"),
    ("/api/00000/buy/u/1/5?fullprice=12,45EUR", "fullprice"),
    ("/api/00000/buy/u/1/5?fullprice=12.45%20EUR", "fullprice"),
    ("/api/00000/buy/u/1/5?fullprice=EUR12.45", "fullprice"),
    ("/api/00000/buy/u/1/5?fullprice=12.45", "fullprice"),
    ("/api/00000/buy/u/1/5?fullprice=-1EUR", "fullprice"),
    ("/api/00000/buy/u/1/5?fullprice=12.45XYZ", "ISO 4217"),
    ("/api/00000/buy/u/1/5?quantity=0", "quantity"),
    ("/api/00000/buy/u/1/5?quantity=-2", "quantity"),
    ("/api/00000/buy/u/1/5?quantity=two", "quantity"),
    ("/api/00000/clickrecommended/u/1/5", "scenario is required"),
    ("/api/00000/clickrecommended/u/1/5?scenario=", "scenario"),
    ("/api/00000/triggeropened/u", "triggername is required"),
    ("/api/00000/clicktriggered/u/1/5", "triggername is required"),
    ("/api/00000/click/u/1", "has the form /api/<customerid>/click/<userid>/<itemtypeid>/<itemid>"),
    ("/api/00000/click/u/1/5/6", "has the form"),
    ("/api/00000/click", "has the form"),
    ("/api/00000/login/onlyone", "has the form /api/<customerid>/login/<sourceuserid>/<targetuserid>"),
    ("/api/00000/click/u/1/5?categorypath=a&categorypath=b", "more than once"),
    ("/api/00000/click/u/1/5?userid=someone", "part of the URL path"),
]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("url, expected", BAD_REQUESTS)
def test_bad_parameters_are_400_with_a_plain_text_reason(
    client: FlaskClient, state: EventTrackState, method: str, url: str, expected: str
) -> None:
    response = client.open(url, method=method)
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert expected in response.get_data(as_text=True)
    (rejection,) = refusals(state)
    assert rejection.reason == "schema_violation"
    assert rejection.tenant == "00000"
    assert expected in rejection.message
    assert stored(state) == 0


@pytest.mark.parametrize(
    "url",
    [
        "/api/00000/click/u%5Cx/1/5",
        "/api/00000/click/u/1/5?categorypath=a%5Cb",
        "/api/00000/click/u/1/5?categorypath=a%5cb",
        "/api/00000/click/u/1/5?x%5C=1",
        "/api/00000/click/u\\x/1/5",
    ],
)
def test_a_backslash_anywhere_is_400(client: FlaskClient, state: EventTrackState, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 400
    assert "backslash" in response.get_data(as_text=True)
    assert refusals(state)[0].reason == "schema_violation"


def test_uri_over_the_limit_is_414(client: FlaskClient, state: EventTrackState) -> None:
    response = client.get("/api/00000/click/u/1/5?categorypath=" + "a" * 2100)
    assert response.status_code == 414
    assert response.mimetype == "text/plain"
    assert "limit is 2048" in response.get_data(as_text=True)
    (rejection,) = refusals(state)
    assert rejection.reason == "size_violation"
    assert "a" * 100 not in rejection.payload
    assert client.get("/api/00000/click/u/1/5?categorypath=" + "a" * 1000).status_code == 204


def test_unknown_event_code_is_404(client: FlaskClient, state: EventTrackState) -> None:
    response = client.get("/api/00000/purchase/u/1/5")
    assert response.status_code == 404
    assert response.mimetype == "text/plain"
    assert "event code 'purchase' was not found" in response.get_data(as_text=True)
    (rejection,) = refusals(state)
    assert (rejection.reason, rejection.type) == ("not_found", None)
    assert "/u/" not in rejection.payload  # where the user id is cannot be known: not logged


def test_unknown_customer_is_404_when_customers_are_configured(
    client: FlaskClient, state: EventTrackState
) -> None:
    response = client.get("/api/12345/click/u/1/5")
    assert response.status_code == 404
    assert "customer id '12345' was not found" in response.get_data(as_text=True)
    assert client.get("/api/ab-c/click/u/1/5").status_code == 404
    assert [r.reason for r in refusals(state)] == ["not_found", "not_found"]


def test_wrong_method_is_405(client: FlaskClient, state: EventTrackState) -> None:
    assert client.put("/api/00000/click/u/1/5").status_code == 405
    assert client.delete("/api/00000/click/u/1/5").status_code == 405
    assert stored(state) == 0


def test_oversized_form_body_is_413(client: FlaskClient, state: EventTrackState) -> None:
    body = "x=" + "a" * (1024 * 1024 + 10)
    response = client.post(
        "/api/00000/click/u/1/5", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413
    assert refusals(state)[0].reason == "size_violation"


class TestAnyCustomer:
    @pytest.fixture
    def config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {**config, "EVENTTRACK_IBEXA_CUSTOMERS": ""}

    def test_any_alphanumeric_customer_is_accepted(self, client: FlaskClient, state: EventTrackState) -> None:
        assert client.get("/api/acme42/click/u/1/5").status_code == 204
        assert client.get("/api/00000/click/u/1/5").status_code == 204
        assert [e.tenant for e in state.store.iter_events(EventQuery())] == ["acme42", "00000"]

    def test_non_alphanumeric_customer_is_400(self, client: FlaskClient, state: EventTrackState) -> None:
        response = client.get("/api/ac_me/click/u/1/5")
        assert response.status_code == 400
        assert "alphanumeric" in response.get_data(as_text=True)
        assert refusals(state)[0].tenant == "invalid"


class TestStringItemIds:
    @pytest.fixture
    def config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {**config, "EVENTTRACK_IBEXA_STRING_ITEM_IDS": True}

    def test_text_item_ids_are_accepted_as_sent(self, client: FlaskClient, state: EventTrackState) -> None:
        assert client.get("/api/00000/click/u/1/SKU-0042").status_code == 204
        assert client.get("/api/00000/rendered/u/1/A1,B2").status_code == 204
        assert [e.item_id for e in state.store.iter_events(EventQuery())] == ["SKU-0042", "A1", "B2"]

    def test_item_type_stays_numeric(self, client: FlaskClient) -> None:
        assert client.get("/api/00000/click/u/shoes/SKU-0042").status_code == 400


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class TestCredentials:
    @pytest.fixture
    def config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            **config,
            "EVENTTRACK_IBEXA_CUSTOMERS": ["00000", "11111"],
            "EVENTTRACK_IBEXA_CREDENTIALS": {"00000": ["old-secret", "new-secret"]},
        }

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            basic("00000", "wrong"),
            basic("11111", "new-secret"),
            basic("00000", ""),
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer "},
            {"Authorization": "Digest username=00000"},
        ],
    )
    def test_bad_credentials_are_401(
        self, client: FlaskClient, state: EventTrackState, headers: dict[str, str]
    ) -> None:
        response = client.get("/api/00000/click/u/1/5", headers=headers)
        assert response.status_code == 401
        assert response.mimetype == "text/plain"
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        (rejection,) = refusals(state)
        assert rejection.reason == "auth_failure"
        assert stored(state) == 0

    @pytest.mark.parametrize(
        "headers",
        [basic("00000", "old-secret"), basic("00000", "new-secret"), {"Authorization": "Bearer new-secret"}],
    )
    def test_good_credentials_are_accepted(
        self, client: FlaskClient, state: EventTrackState, headers: dict[str, str]
    ) -> None:
        assert client.post("/api/00000/click/u/1/5", headers=headers).status_code == 204
        assert stored(state) == 1

    def test_customers_without_credentials_stay_open(self, client: FlaskClient) -> None:
        assert client.get("/api/11111/click/u/1/5").status_code == 204


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"EVENTTRACK_IBEXA_CUSTOMERS": "00000,ab-c"}, "not an alphanumeric customer id"),
        ({"EVENTTRACK_IBEXA_CREDENTIALS": {"99999": "s"}}, "not in EVENTTRACK_IBEXA_CUSTOMERS"),
        ({"EVENTTRACK_IBEXA_CREDENTIALS": {"00000": ""}}, "non-empty secret"),
        ({"EVENTTRACK_IBEXA_CREDENTIALS": "00000:secret"}, "must be a mapping"),
        ({"EVENTTRACK_IBEXA_MAX_URI_LENGTH": 10}, "from 64 to"),
    ],
)
def test_bad_settings_fail_at_init_app(config: dict[str, Any], extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_app({**config, **extra})


def test_the_host_apps_max_content_length_is_a_plain_413_and_logged(config: dict[str, Any]) -> None:
    """Flask's own 413 would be an HTML page, and nothing would reach the rejected log."""
    from flask_eventtrack import get_state

    app = create_app({**config, "MAX_CONTENT_LENGTH": 100})
    try:
        response = app.test_client().post(
            "/api/00000/click/u/1/2", data="a=" + "x" * 300, content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code == 413 and response.mimetype == "text/plain"
        assert b"MAX_CONTENT_LENGTH of 100 bytes" in response.data
        (rejection,) = refusals(get_state(app))
        assert rejection.reason == "size_violation" and "MAX_CONTENT_LENGTH of 100" in rejection.message
    finally:
        get_state(app).store.close()


def test_parameters_another_event_code_defines_stay_unchecked_extras(
    client: FlaskClient, state: EventTrackState
) -> None:
    """``percentage`` is checked (0..100) on consume only: on a click it is an extra, kept
    as sent under ``extra``, never beside the checked parameters as if it were one."""
    assert client.get("/api/00000/click/u/1/5?percentage=999&rating=-3&quantity=abc").status_code == 204
    assert client.get("/api/00000/consume/u/1/5?percentage=50&triggername=x").status_code == 204
    click, consume = state.store.iter_events(EventQuery(source="ibexa"))
    assert click.props == {"extra": {"percentage": "999", "rating": "-3", "quantity": "abc"}}
    assert consume.props == {"percentage": 50, "extra": {"triggername": "x"}}
