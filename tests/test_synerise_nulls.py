"""Synerise: an optional field sent as JSON null counts as absent, on every write path
(clients built from typed models serialise an unset optional field as null); a
required field sent as null stays an error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from flask_eventtrack.events import Event, Rejection
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key
from flask_eventtrack.stores import EventQuery

UUID = "e0097757-d1e2-44ac-ba3c-d97979a354c1"
NULL_IDS = {"customId": None, "uuid": None, "email": None}
ONE_ID_REQUIRED = "At least one of id, customId, uuid, email is required."
NOT_NULL = "Field may not be null."


@pytest.fixture
def token(client: FlaskClient, state: EventTrackState) -> str:
    key = create_key(state.store, "acme", "api")
    return str(client.post("/v4/auth/token", json={"apiKey": key.secret}).get_json()["token"])


@pytest.fixture
def tracker(state: EventTrackState) -> str:
    return create_key(state.store, "acme", "tracker").secret


def post(client: FlaskClient, path: str, body: Any, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(path, data=json.dumps(body), headers=headers, content_type="application/json")


def stored(state: EventTrackState) -> list[Event]:
    return list(state.store.iter_events(EventQuery()))


def rejected(state: EventTrackState) -> list[Rejection]:
    return list(state.store.iter_rejected(EventQuery(source="synerise")))


def event(**extra: Any) -> dict[str, Any]:
    return {"action": "dog.bark", "client": {"id": 5092159999}, "label": "bark", **extra}


def assert_as_if_absent(e: Event, state: EventTrackState) -> None:
    """No time (time of receipt), no params, no salt, only the one identifier."""
    assert e.user == state.pipeline.user_key("5092159999") and e.user_kind == "id"
    assert e.props == {} and e.original_time is None and e.dedup_key is None
    assert e.occurred_at == e.received_at


# --- /v4/events/<endpoint> ----------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ["custom", "logged-in", "visited-page"])
def test_v4_optional_fields_sent_as_null_count_as_absent(client, state, token, endpoint) -> None:
    body = event(time=None, params=None, eventSalt=None, client={"id": 5092159999, **NULL_IDS})
    if endpoint != "custom":
        del body["action"]
    response = post(client, f"/v4/events/{endpoint}", body, token)
    assert response.status_code == 202, response.get_json()
    [e] = stored(state)
    assert_as_if_absent(e, state)


@pytest.mark.parametrize("field", ["time", "params", "eventSalt"])
def test_each_optional_field_alone_sent_as_null(client, state, token, field) -> None:
    assert post(client, "/v4/events/custom", event(**{field: None}), token).status_code == 202
    [e] = stored(state)
    assert_as_if_absent(e, state)


def test_a_null_identifier_is_ignored_and_the_next_one_is_the_user(client, state, token) -> None:
    body = event(client={"id": None, "customId": None, "uuid": UUID, "email": "jan@example.com"})
    assert post(client, "/v4/events/custom", body, token).status_code == 202
    [e] = stored(state)
    assert e.user == state.pipeline.user_key(UUID) and e.user_kind == "uuid"
    assert e.props == {"identifiers": {"email": state.pipeline.user_key("jan@example.com")}}


@pytest.mark.parametrize("ids", [{"id": None}, {"id": None, **NULL_IDS}, {}])
def test_a_client_whose_identifiers_are_all_null_has_none(client, state, token, ids) -> None:
    response = post(client, "/v4/events/custom", event(client=ids), token)
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"field": "client", "message": ONE_ID_REQUIRED}]
    assert stored(state) == []


def test_an_unknown_client_key_sent_as_null_is_still_refused(client, state, token) -> None:
    response = post(client, "/v4/events/custom", event(client={"id": 1, "phone": None}), token)
    assert response.status_code == 400
    assert [e["field"] for e in response.get_json()["errors"]] == ["client"]


@pytest.mark.parametrize("field", ["action", "label", "client"])
def test_a_required_field_sent_as_null_is_still_refused(client, state, token, field) -> None:
    response = post(client, "/v4/events/custom", event(**{field: None}), token)
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"field": field, "message": NOT_NULL}]
    assert stored(state) == [] and rejected(state)[0].reason == "schema_violation"


def test_a_product_endpoint_with_null_params_has_no_sku(client, state, token) -> None:
    body = {"client": {"id": 1}, "label": "x", "params": None}
    response = post(client, "/v4/events/added-to-cart", body, token)
    assert response.status_code == 400
    [error] = response.get_json()["errors"]
    assert error["field"] == "params" and "sku" in error["message"]


# --- /v4/events/batch ---------------------------------------------------------------------
def test_batch_items_with_null_optional_fields(client, state, token) -> None:
    nulls = {"time": None, "params": None, "eventSalt": None, "client": {"id": 5092159999, **NULL_IDS}}
    items = [
        {"type": "custom", **event(), **nulls},
        {"type": "hit-timer", "label": "t", **nulls},
        {"type": "shared", "action": None, "label": "t", "client": {"id": 5092159999}},
    ]
    response = post(client, "/v4/events/batch", items, token)
    assert response.status_code == 202, response.get_json()
    events = stored(state)
    assert sorted(e.type for e in events) == ["client.hitTimer", "client.shared", "dog.bark"]
    for e in events:
        assert_as_if_absent(e, state)


def test_batch_items_with_null_required_fields_are_named(client, state, token) -> None:
    items = [
        {"type": "custom", **event(action=None)},
        {"type": "hit-timer", "label": None, "client": {"id": 1}},
        {"type": "shared", "label": "t", "client": {"id": None, **NULL_IDS}},
        {"type": None, **event()},
    ]
    response = post(client, "/v4/events/batch", items, token)
    assert response.status_code == 400
    errors = response.get_json()["errors"]
    assert [(e["index"], e["field"], e["message"]) for e in errors[:3]] == [
        (0, "action", NOT_NULL),
        (1, "label", NOT_NULL),
        (2, "client", ONE_ID_REQUIRED),
    ]
    assert (errors[3]["index"], errors[3]["field"]) == (3, "type") and len(errors) == 4
    assert stored(state) == []


# --- /v4/transactions ---------------------------------------------------------------------
TRANSACTION: dict[str, Any] = {
    "client": {"id": 77, **NULL_IDS},
    "orderId": "ORD-1",
    "value": {"amount": 30, "currency": "PLN"},
    "products": [
        {
            "sku": "A-1",
            "finalUnitPrice": {"amount": 10, "currency": "PLN"},
            "name": None,
            "quantity": None,
            "regularPrice": None,
            "color": None,  # a vendor-specific field: kept as sent
        }
    ],
    **dict.fromkeys(["revenue", "discountAmount", "recordedAt", "paymentInfo", "source", "metadata"]),
}


def test_transaction_optional_fields_sent_as_null_count_as_absent(client, state, token) -> None:
    response = post(client, "/v4/transactions", TRANSACTION, token)
    assert response.status_code == 202, response.get_json()
    buy, charge = sorted(stored(state), key=lambda e: e.type)
    assert (buy.type, charge.type) == ("product.buy", "transaction.charge")
    assert charge.props == {"orderId": "ORD-1", "productCount": 1, "value": {"amount": 30, "currency": "PLN"}}
    assert buy.props == {
        "sku": "A-1",
        "finalUnitPrice": {"amount": 10, "currency": "PLN"},
        "quantity": 1,
        "color": None,
        "orderId": "ORD-1",
    }
    for e in (charge, buy):
        assert e.user == state.pipeline.user_key("77") and e.occurred_at == e.received_at
        assert e.original_time is None


@pytest.mark.parametrize("field", ["client", "orderId", "value", "products"])
def test_transaction_required_field_sent_as_null_is_still_refused(client, state, token, field) -> None:
    response = post(client, "/v4/transactions", {**TRANSACTION, field: None}, token)
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"field": field, "message": NOT_NULL}]
    assert stored(state) == []


@pytest.mark.parametrize("field", ["sku", "finalUnitPrice"])
def test_transaction_line_required_field_sent_as_null_is_still_refused(client, state, token, field) -> None:
    line = {**TRANSACTION["products"][0], field: None}
    response = post(client, "/v4/transactions", {**TRANSACTION, "products": [line]}, token)
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"field": f"products[0].{field}", "message": NOT_NULL}]


def test_transaction_money_amount_sent_as_null_is_still_refused(client, state, token) -> None:
    body = {**TRANSACTION, "revenue": {"amount": None, "currency": "PLN"}}
    response = post(client, "/v4/transactions", body, token)
    assert response.get_json()["errors"] == [{"field": "revenue.amount", "message": NOT_NULL}]


# --- /events/v1 ---------------------------------------------------------------------------
def ai(**extra: Any) -> dict[str, Any]:
    return {"correlationId": "c-1", "clientUUID": UUID, "items": ["89435879453"], **extra}


def test_ai_optional_fields_sent_as_null_count_as_absent(client, state, tracker) -> None:
    body = ai(eventTimestamp=None, campaignId=None)
    response = post(client, f"/events/v1/single/recommendation.view?token={tracker}", body)
    assert response.status_code == 202, response.get_json()
    batch = {"eventType": "recommendation.click", "items": [body, ai(campaignId=None)]}
    assert post(client, f"/events/v1/batch?token={tracker}", batch).status_code == 202
    events = stored(state)
    assert len(events) == 3
    for e in events:
        assert e.props == {"correlationId": "c-1", "items": ["89435879453"]}
        assert e.occurred_at == e.received_at and e.original_time is None


@pytest.mark.parametrize("field", ["correlationId", "clientUUID", "items"])
def test_ai_required_field_sent_as_null_is_still_refused(client, state, tracker, field) -> None:
    response = post(client, f"/events/v1/single/recommendation.view?token={tracker}", ai(**{field: None}))
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"field": field, "message": NOT_NULL}]
    assert stored(state) == []
