"""Synerise dialect: the vendor's own example bodies, the dedicated endpoints,
transactions, AI events, and every validation rule of spec section 3."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from flask_eventtrack.errors import StoreUnavailable
from flask_eventtrack.events import Event, Rejection, format_time
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key
from flask_eventtrack.schemas.synerise import DEDICATED, RESERVED_PARAMS
from flask_eventtrack.stores import EventQuery

# --- the vendor's example bodies, verbatim (seed 002) --------------------------------
DOG_BARK = """{
    "action": "dog.bark",
    "client": {
        "id": 5092159999
    },
    "time": "2022-11-28T12:18:27Z",
    "params": {
        "loudness": 3,
        "mood": "happy",
        "mailmanScared": true
    },
    "label": "bark"
}"""
BATCH = """[
    {
        "action": "dog.bark",
        "type": "custom",
        "client": {
            "id": 5092159999
        },
        "time": "2022-11-28T12:18:27Z",
        "params": {
            "loudness": 3,
            "mood": "happy",
            "mailmanScared": true
        },
        "label": "bark"
    },
    {
        "type": "hit-timer",
        "time": "2022-11-26T13:13:48Z",
        "client": {
            "id": 267498412
        },
        "label": "string"
    }
]"""
RECO_VIEW = """{
    "correlationId": "5b0a0fcd-e76b-425c-b9e8-7d6d7bd4a79b",
    "clientUUID": "e0097757-d1e2-44ac-ba3c-d97979a354c1",
    "items": [
        "89435879453"
    ],
    "eventTimestamp": "2022-12-08T13:23:22Z"
}"""
RECO_BATCH = """{
    "eventType": "recommendation.view",
    "items": [
        {
            "correlationId": "5b0a0fcd-e76b-425c-b9e8-7d6d7bd4a79b",
            "clientUUID": "e0097757-d1e2-44ac-ba3c-d97979a354c1",
            "items": [
                "89435879453"
            ],
            "eventTimestamp": "2022-12-08T13:49:00Z"
        },
        {
            "correlationId": "2232d7f8-611b-451b-a1f1-8134f73a04f0",
            "clientUUID": "e0097757-d1e2-44ac-ba3c-d97979a354c1",
            "items": [
                "475677345"
            ],
            "eventTimestamp": "2022-12-08T13:51:00Z"
        }
    ]
}"""
UUID = "e0097757-d1e2-44ac-ba3c-d97979a354c1"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def issue_token(client: FlaskClient, state: EventTrackState, tenant: str = "acme") -> str:
    """A bearer token of ``tenant``, obtained the way a client does: from an API key."""
    key = create_key(state.store, tenant, "api")
    response = client.post("/v4/auth/token", json={"apiKey": key.secret})
    assert response.status_code == 200
    return str(response.get_json()["token"])


@pytest.fixture
def token(client: FlaskClient, state: EventTrackState) -> str:
    return issue_token(client, state)


@pytest.fixture
def tracker(state: EventTrackState) -> str:
    return create_key(state.store, "acme", "tracker").secret


def post(client: FlaskClient, path: str, body: Any, token: str | None, **headers: str) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.post(path, data=data, headers=headers, content_type="application/json")


def stored(state: EventTrackState, **filters: Any) -> list[Event]:
    return list(state.store.iter_events(EventQuery(**filters)))


def rejected(state: EventTrackState) -> list[Rejection]:
    return list(state.store.iter_rejected(EventQuery(source="synerise")))


def event(**extra: Any) -> dict[str, Any]:
    return {"action": "dog.bark", "client": {"id": 1}, "label": "bark", **extra}


# --- the vendor's examples --------------------------------------------------------
def test_custom_dog_bark_example_is_stored_field_by_field(client, state, token) -> None:
    response = post(client, "/v4/events/custom", DOG_BARK, token, **{"Api-Version": "4.4"})
    assert response.status_code == 202
    assert response.get_json() == {"status": 202, "message": "Accepted", "events": 1}
    [e] = stored(state)
    assert (e.tenant, e.source, e.type) == ("acme", "synerise", "dog.bark")
    assert e.user == state.pipeline.user_key("5092159999") != "5092159999"
    assert e.user_kind == "id"
    assert (e.item_type, e.item_id) == (None, None)
    assert e.occurred_at == utc(2022, 11, 28, 12, 18, 27)
    assert e.original_time is None
    assert e.props == {"loudness": 3, "mood": "happy", "mailmanScared": True}  # label not stored
    assert e.dedup_key is None and e.status == "accepted"
    assert e.received_at is not None and e.received_at > e.occurred_at


def test_api_version_header_is_optional(client, state, token) -> None:
    assert post(client, "/v4/events/custom", DOG_BARK, token).status_code == 202
    assert post(client, "/v4/events/custom", DOG_BARK, token, **{"Api-Version": "4.4"}).status_code == 202
    assert len(stored(state)) == 2


def test_batch_example_mixes_custom_and_dedicated_types_and_profiles(client, state, token) -> None:
    response = post(client, "/v4/events/batch", BATCH, token, **{"Api-Version": "4.4"})
    assert response.status_code == 202
    assert response.get_json()["events"] == 2
    bark, timer = sorted(stored(state), key=lambda e: e.type != "dog.bark")
    assert bark.type == "dog.bark" and bark.user == state.pipeline.user_key("5092159999")
    assert bark.props == {"loudness": 3, "mood": "happy", "mailmanScared": True}
    assert bark.occurred_at == utc(2022, 11, 28, 12, 18, 27)
    assert timer.type == "client.hitTimer" and timer.user == state.pipeline.user_key("267498412")
    assert timer.user_kind == "id" and timer.props == {}
    assert timer.occurred_at == utc(2022, 11, 26, 13, 13, 48)
    assert {bark.tenant, timer.tenant} == {"acme"}


def test_recommendation_view_single_example(client, state, tracker) -> None:
    response = post(client, f"/events/v1/single/recommendation.view?token={tracker}", RECO_VIEW, None)
    assert response.status_code == 202
    [e] = stored(state)
    assert (e.tenant, e.source, e.type) == ("acme", "synerise", "recommendation.view")
    assert e.user == state.pipeline.user_key(UUID) and e.user_kind == "uuid"
    assert e.props == {"correlationId": "5b0a0fcd-e76b-425c-b9e8-7d6d7bd4a79b", "items": ["89435879453"]}
    assert e.occurred_at == utc(2022, 12, 8, 13, 23, 22)
    assert (e.item_type, e.item_id, e.original_time) == (None, None, None)


def test_recommendation_view_batch_example(client, state, tracker) -> None:
    response = post(client, f"/events/v1/batch?token={tracker}", RECO_BATCH, None)
    assert response.status_code == 202 and response.get_json()["events"] == 2
    first, second = stored(state)
    assert first.type == second.type == "recommendation.view"
    assert first.user == second.user == state.pipeline.user_key(UUID)
    assert first.props["correlationId"] == "5b0a0fcd-e76b-425c-b9e8-7d6d7bd4a79b"
    assert second.props == {"correlationId": "2232d7f8-611b-451b-a1f1-8134f73a04f0", "items": ["475677345"]}
    assert (first.occurred_at, second.occurred_at) == (utc(2022, 12, 8, 13, 49), utc(2022, 12, 8, 13, 51))


# --- dedicated endpoints and transactions ----------------------------------------------
@pytest.mark.parametrize("endpoint", sorted(DEDICATED))
def test_dedicated_endpoint_fixes_the_action(client, state, token, endpoint) -> None:
    body = {"client": {"customId": "c-1"}, "label": "x", "params": {"sku": "SKU-1", "url": "/p"}}
    assert post(client, f"/v4/events/{endpoint}", body, token).status_code == 202
    [e] = stored(state)
    assert e.type == DEDICATED[endpoint] and e.user_kind == "customId"
    assert e.props == {"sku": "SKU-1", "url": "/p"}
    is_product = endpoint in {"added-to-cart", "removed-from-cart", "added-to-favorites"}
    assert (e.item_type, e.item_id) == (("product", "SKU-1") if is_product else (None, None))


def test_dedicated_endpoints_map_to_the_vendor_actions() -> None:
    assert DEDICATED == {
        "added-to-cart": "product.addToCart",
        "removed-from-cart": "product.removeFromCart",
        "added-to-favorites": "product.addToFavorite",
        "logged-in": "client.login",
        "logged-out": "client.logout",
        "registered": "client.register",
        "hit-timer": "client.hitTimer",
        "searched": "client.search",
        "shared": "client.shared",
        "visited-page": "page.visit",
    }


def test_product_endpoint_needs_a_sku(client, state, token) -> None:
    response = post(client, "/v4/events/added-to-cart", {"client": {"id": 1}, "label": "x"}, token)
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["field"] == "params"
    assert "sku" in response.get_json()["errors"][0]["message"]
    assert stored(state) == []


@pytest.mark.parametrize("action", ["dog.bark", "client.shared", "", 5, None, ["x"], "x" * 2000])
def test_dedicated_endpoint_ignores_a_sent_action(client, state, token, action) -> None:
    """Seed 002: a dedicated endpoint does not use ``action``; whatever is sent, it is ignored."""
    body = {"client": {"id": 1}, "label": "x", "action": action, "params": {"url": "/p"}}
    assert post(client, "/v4/events/shared", body, token).status_code == 202
    [e] = stored(state)
    assert e.type == "client.shared" and e.props == {"url": "/p"}


def test_a_dedicated_batch_item_refuses_another_action(client, state, token) -> None:
    """Seed 002: a batch item of a dedicated type carries no ``action`` ("remove the action")."""
    item = {"type": "shared", "client": {"id": 1}, "label": "x", "action": "dog.bark"}
    response = post(client, "/v4/events/batch", [item], token)
    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        {"index": 0, "field": "action", "message": "'shared' events are 'client.shared'; remove 'action'."}
    ]
    assert stored(state) == []
    for action in ("client.shared", None):  # the endpoint's own action, or null: tolerated
        assert post(client, "/v4/events/batch", [{**item, "action": action}], token).status_code == 202
    assert [e.type for e in stored(state)] == ["client.shared", "client.shared"]


def test_unknown_dedicated_endpoint_is_404(client, state, token) -> None:
    response = post(client, "/v4/events/barked", {"client": {"id": 1}, "label": "x"}, token)
    assert response.status_code == 404
    assert "barked" in response.get_json()["message"]
    [rejection] = rejected(state)
    assert rejection.reason == "unknown_event_type" and rejection.payload is None  # body never read


TRANSACTION = {
    "client": {"email": "jane@example.com", "id": 77},
    "orderId": "ORD-1",
    "recordedAt": "2022-11-28T10:00:00+01:00",
    "value": {"amount": 30, "currency": "PLN"},
    "revenue": {"amount": 24.39, "currency": "PLN"},
    "paymentInfo": {"method": "CARD"},
    "source": "WEB_DESKTOP",
    "products": [
        {"sku": "A-1", "name": "Leash", "quantity": 2, "finalUnitPrice": {"amount": 10, "currency": "PLN"}},
        {
            "sku": 42,
            "name": "Bone",
            "finalUnitPrice": {"amount": 10, "currency": "PLN"},
            "categories": ["dog"],
        },
    ],
}


def test_transaction_makes_one_charge_and_one_buy_per_line(client, state, token) -> None:
    assert post(client, "/v4/transactions", TRANSACTION, token).status_code == 202
    events = stored(state)
    charge = [e for e in events if e.type == "transaction.charge"]
    buys = sorted((e for e in events if e.type == "product.buy"), key=lambda e: e.item_id or "")
    assert len(charge) == 1 and len(buys) == 2 and len(events) == 3
    hashed_email = state.pipeline.user_key("jane@example.com")
    assert charge[0].props == {
        "orderId": "ORD-1",
        "productCount": 2,
        "value": {"amount": 30, "currency": "PLN"},
        "revenue": {"amount": 24.39, "currency": "PLN"},
        "paymentInfo": {"method": "CARD"},
        "source": "WEB_DESKTOP",
        "identifiers": {"email": hashed_email},
    }
    assert [(b.item_type, b.item_id) for b in buys] == [("product", "42"), ("product", "A-1")]
    assert buys[1].props["quantity"] == 2 and buys[0].props["quantity"] == 1
    assert buys[0].props["categories"] == ["dog"] and buys[1].props["orderId"] == "ORD-1"
    for e in events:
        assert e.user == state.pipeline.user_key("77") and e.user_kind == "id"
        assert e.occurred_at == utc(2022, 11, 28, 9)


def test_transaction_errors_name_product_lines(client, state, token) -> None:
    body = {**TRANSACTION, "products": [{"sku": "A"}, {"finalUnitPrice": {"amount": "x", "currency": "PLN"}}]}
    del body["value"]
    response = post(client, "/v4/transactions", body, token)
    assert response.status_code == 400
    fields = {e["field"] for e in response.get_json()["errors"]}
    assert {
        "value",
        "products[0].finalUnitPrice",
        "products[1].sku",
        "products[1].finalUnitPrice.amount",
    } <= fields
    assert stored(state) == []


@pytest.mark.parametrize("where", ["value", "quantity"])
def test_transaction_number_beyond_the_float_range_is_a_400(client, state, token, where) -> None:
    """Review finding 2: math.isfinite(10**400) raised OverflowError (a 500)."""
    huge = "1" + "0" * 400
    amount, quantity = (huge, "1") if where == "value" else ("1", huge)
    body = (
        '{"client":{"customId":"c"},"orderId":"o","products":[{"sku":"s","quantity":QUANTITY,'
        '"finalUnitPrice":{"amount":1,"currency":"EUR"}}],"value":{"amount":AMOUNT,"currency":"EUR"}}'
    )
    body = body.replace("QUANTITY", quantity).replace("AMOUNT", amount)
    response = post(client, "/v4/transactions", body, token)
    assert response.status_code == 400
    field = "value.amount" if where == "value" else "products[0].quantity"
    [error] = response.get_json()["errors"]
    assert error["field"] == field and "too large" in error["message"]
    assert stored(state) == [] and rejected(state)[0].reason == "schema_violation"


def test_transaction_sent_as_custom_event_has_no_sub_events(client, state, token) -> None:
    body = event(action="transaction.charge", params={"orderId": "O", "products": [{"sku": "A"}]})
    assert post(client, "/v4/events/custom", body, token).status_code == 202
    assert [e.type for e in stored(state)] == ["transaction.charge"]


# --- fields and rules -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("client_ids", "kind", "raw"),
    [
        ({"id": 5, "customId": "c", "uuid": UUID, "email": "a@b.co"}, "id", "5"),
        ({"customId": "c", "uuid": UUID, "email": "a@b.co"}, "customId", "c"),
        ({"uuid": UUID.upper(), "email": "a@b.co"}, "uuid", UUID),
        ({"email": "a@b.co"}, "email", "a@b.co"),
    ],
)
def test_identifier_priority_and_other_ids_only_hashed(client, state, token, client_ids, kind, raw) -> None:
    assert post(client, "/v4/events/custom", event(client=client_ids), token).status_code == 202
    [e] = stored(state)
    assert e.user_kind == kind and e.user == state.pipeline.user_key(raw)
    others = {
        k: state.pipeline.user_key(str(v).lower() if k == "uuid" else str(v))
        for k, v in client_ids.items()
        if k != kind
    }
    assert e.props.get("identifiers", {}) == others


def test_raw_identifiers_never_reach_the_database_file(client, state, token, store_url) -> None:
    good = event(client={"email": "secret.person@example.com", "customId": "CUSTOM-SECRET"}, eventSalt="s")
    bad = event(client={"email": "other.secret@example.com", "id": 987654321}, label="")
    assert post(client, "/v4/events/custom", good, token).status_code == 202
    assert post(client, "/v4/events/batch", [{**bad, "type": "custom"}], token).status_code == 400
    assert len(rejected(state)) == 1
    state.store.close()
    path = Path(store_url.removeprefix("sqlite:///"))
    files = [path, path.with_name(path.name + "-wal")]
    data = b"".join(p.read_bytes() for p in files if p.exists())
    assert b"dog.bark" in data  # the check reads the right files
    for secret in (b"secret.person", b"CUSTOM-SECRET", b"other.secret", b"987654321"):
        assert secret not in data


def test_refused_identifiers_never_reach_the_database_file_whatever_their_shape(
    client, state, token, store_url
) -> None:
    """Review finding 6: redaction used to depend on ``client`` being an object of scalars."""
    bodies: list[tuple[str, Any]] = [
        ("/v4/events/custom", event(client="eve@example.com")),
        ("/v4/events/custom", event(client=[{"email": "frank@example.com"}])),
        ("/v4/events/custom", event(client={"email": ["gina@example.com"]})),
        ("/v4/events/custom", event(client={"customId": {"nested": "HANK-SECRET"}, "id": [987650001]})),
        ("/v4/events/custom", {**event(), "email": "ivy@example.com", "label": ""}),
        ("/v4/events/batch", ["judy@example.com", 987650002]),
        ("/v4/events/custom", "kate@example.com"),
        ("/v4/transactions", {"client": ["leo@example.com"], "orderId": "o"}),
        ("/events/v1/single/recommendation.view", {"clientUUID": ["mia@example.com"]}),
    ]
    for path, body in bodies:
        assert post(client, path, body, token).status_code == 400, body
    assert len(rejected(state)) == len(bodies)
    state.store.close()
    path = Path(store_url.removeprefix("sqlite:///"))
    files = [path, path.with_name(path.name + "-wal")]
    data = b"".join(p.read_bytes() for p in files if p.exists())
    assert b"dog.bark" in data  # the check reads the right files
    for secret in (
        b"eve@",
        b"frank@",
        b"gina@",
        b"HANK-SECRET",
        b"987650001",
        b"ivy@",
        b"judy@",
        b"987650002",
        b"kate@",
        b"leo@",
        b"mia@",
    ):
        assert secret not in data, secret


@pytest.mark.parametrize(
    "client_ids",
    [{}, {"id": None}, {"id": True}, {"email": "nope"}, {"uuid": "not-a-uuid"}, {"phone": "1"}, "x"],
)
def test_client_needs_a_valid_identifier(client, state, token, client_ids) -> None:
    response = post(client, "/v4/events/custom", event(client=client_ids), token)
    assert response.status_code == 400
    body = response.get_json()
    assert body["status"] == 400 and body["error"] == "Bad Request"
    assert all(e["field"].startswith("client") for e in body["errors"])
    assert stored(state) == []


def test_client_is_required(client, state, token) -> None:
    body = event()
    del body["client"]
    response = post(client, "/v4/events/custom", body, token)
    assert response.get_json()["errors"] == [
        {"field": "client", "message": "Missing data for required field."}
    ]


@pytest.mark.parametrize("label", [None, "", 3, ["bark"]])
def test_label_must_be_a_non_empty_string(client, state, token, label) -> None:
    body = event(label=label)
    if label is None:
        del body["label"]
    response = post(client, "/v4/events/custom", body, token)
    assert response.status_code == 400
    assert [e["field"] for e in response.get_json()["errors"]] == ["label"]


def test_reserved_params_are_named(client, state, token) -> None:
    assert {"user", "tenant", "client", "eventSalt"} <= RESERVED_PARAMS
    body = event(params={"user": "x", "tenant": "other", "mood": "ok"})
    response = post(client, "/v4/events/custom", body, token)
    assert response.status_code == 400
    [error] = response.get_json()["errors"]
    assert error["field"] == "params" and "tenant, user" in error["message"]
    assert stored(state) == []


def test_params_values_are_limited(client, state, token) -> None:
    deep: Any = "x"
    for _ in range(20):
        deep = {"a": deep}
    for params in ({"deep": deep}, {"long": "x" * 5000}, "not an object"):
        response = post(client, "/v4/events/custom", event(params=params), token)
        assert response.status_code == 400 and response.get_json()["errors"][0]["field"] == "params"


def test_unknown_top_level_field_is_named(client, state, token) -> None:
    response = post(client, "/v4/events/custom", event(parmas={"a": 1}, tenant="other"), token)
    assert response.status_code == 400
    assert {e["field"] for e in response.get_json()["errors"]} == {"parmas", "tenant"}


@pytest.mark.parametrize("action", ["", "dog bark", "x" * 200, 5, None])
def test_action_is_validated(client, state, token, action) -> None:
    response = post(client, "/v4/events/custom", event(action=action), token)
    assert response.status_code == 400 and response.get_json()["errors"][0]["field"] == "action"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("2022-05-23T13:00:00Z", utc(2022, 5, 23, 13)),
        ("2022-05-23T09:00:00-04:00", utc(2022, 5, 23, 13)),
        ("2022-05-23T07:00:00-06:00", utc(2022, 5, 23, 13)),
        ("2022-05-23T13:00:00.176Z", datetime(2022, 5, 23, 13, 0, 0, 176000, tzinfo=UTC)),
    ],
)
def test_time_with_any_offset_is_stored_in_utc(client, state, token, sent, expected) -> None:
    assert post(client, "/v4/events/custom", event(time=sent), token).status_code == 202
    [e] = stored(state)
    assert e.occurred_at == expected and e.original_time is None


@pytest.mark.parametrize("sent", ["2022-05-23T13:00:00", "yesterday", "2022-05-23", 1653310800, ""])
def test_time_must_be_iso_8601_with_offset(client, state, token, sent) -> None:
    response = post(client, "/v4/events/custom", event(time=sent), token)
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["field"] == "time"


def test_no_time_means_time_of_receipt(client, state, token) -> None:
    assert post(client, "/v4/events/custom", event(), token).status_code == 202
    [e] = stored(state)
    assert e.occurred_at == e.received_at and e.original_time is None


def test_future_time_becomes_time_of_receipt_and_is_kept(client, state, token) -> None:
    future = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    sent = future.astimezone(timezone(timedelta(hours=-4))).isoformat()
    assert post(client, "/v4/events/custom", event(time=sent), token).status_code == 202
    [e] = stored(state)
    assert e.occurred_at == e.received_at and e.original_time == sent


# --- AI events --------------------------------------------------------------------------
def ai(**extra: Any) -> dict[str, Any]:
    body = json.loads(RECO_VIEW)
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def test_ai_events_keep_future_times(client, state, tracker) -> None:
    future = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    body = ai(eventTimestamp=int(future.timestamp() * 1000) + 123)
    assert (
        post(client, f"/events/v1/single/recommendation.click?token={tracker}", body, None).status_code == 202
    )
    [e] = stored(state)
    assert e.occurred_at == future + timedelta(milliseconds=123) and e.original_time is None
    assert (e.item_type, e.item_id) == ("item", "89435879453")  # a click on one item


def test_ai_event_timestamp_in_milliseconds(client, state, tracker) -> None:
    body = ai(eventTimestamp=1670505802123, campaignId="camp-1")
    assert post(client, f"/events/v1/single/item.search.click?token={tracker}", body, None).status_code == 202
    [e] = stored(state)
    assert format_time(e.occurred_at) == "2022-12-08T13:23:22.123Z"
    assert e.props["campaignId"] == "camp-1" and e.type == "item.search.click"


def test_ai_event_without_timestamp_and_with_empty_items(client, state, tracker) -> None:
    body = ai(eventTimestamp=None, items=[])
    assert (
        post(client, f"/events/v1/single/recommendation.view?token={tracker}", body, None).status_code == 202
    )
    [e] = stored(state)
    assert e.props["items"] == [] and e.occurred_at == e.received_at


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"correlationId": None}, "correlationId"),
        ({"clientUUID": "abc"}, "clientUUID"),
        ({"clientUUID": None}, "clientUUID"),
        ({"items": None}, "items"),
        ({"items": "89435879453"}, "items"),
        ({"eventTimestamp": "2022-12-08 13:23"}, "eventTimestamp"),
        ({"eventTimestamp": True}, "eventTimestamp"),
        ({"eventTimestamp": -1}, "eventTimestamp"),
        ({"extra": 1}, "extra"),
    ],
)
def test_ai_event_rules(client, state, tracker, change, field) -> None:
    body = ai(**{k: v for k, v in change.items() if v is not None})
    for key in (k for k, v in change.items() if v is None):
        del body[key]
    response = post(client, f"/events/v1/single/recommendation.view?token={tracker}", body, None)
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["field"] == field
    assert stored(state) == []


def test_unknown_ai_event_type(client, state, tracker) -> None:
    response = post(client, f"/events/v1/single/page.visit?token={tracker}", RECO_VIEW, None)
    assert response.status_code == 404 and "page.visit" in response.get_json()["message"]
    batch = json.loads(RECO_BATCH)
    batch["eventType"] = "page.visit"
    response = post(client, f"/events/v1/batch?token={tracker}", batch, None)
    assert response.status_code == 400 and response.get_json()["errors"][0]["field"] == "eventType"
    assert stored(state) == [] and [r.reason for r in rejected(state)] == [
        "unknown_event_type",
        "schema_violation",
    ]


def test_ai_batch_is_atomic(client, state, tracker) -> None:
    batch = json.loads(RECO_BATCH)
    batch["items"][1]["clientUUID"] = "nope"
    response = post(client, f"/events/v1/batch?token={tracker}", batch, None)
    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        {
            "index": 1,
            "field": "clientUUID",
            "message": "Must be a UUID, e.g. e0097757-d1e2-44ac-ba3c-d97979a354c1.",
        }
    ]
    assert stored(state) == []


# --- batches ------------------------------------------------------------------------------
def test_batch_with_an_invalid_item_stores_nothing_and_names_every_problem(client, state, token) -> None:
    items = json.loads(BATCH)
    items.append({"type": "custom", "client": {}, "label": "", "action": "a.b"})
    items.append("not an event")
    items.append({"type": "teleported", "client": {"id": 1}, "label": "x"})
    response = post(client, "/v4/events/batch", items, token)
    assert response.status_code == 400
    body = response.get_json()
    assert "nothing was stored" in body["message"]
    assert sorted((e["index"], e["field"]) for e in body["errors"]) == [
        (2, "client"),
        (2, "label"),
        (3, None),
        (4, "type"),
    ]
    assert stored(state) == []
    [rejection] = rejected(state)
    assert rejection.reason == "schema_violation" and rejection.tenant == "acme"
    assert "index" in rejection.message
    # the client fixes the batch and retries: each event is stored exactly once
    assert post(client, "/v4/events/batch", BATCH, token).status_code == 202
    assert len(stored(state)) == 2


@pytest.mark.parametrize(("body", "message"), [({"a": 1}, "JSON array"), ([], "at least one")])
def test_batch_must_be_a_non_empty_array(client, state, token, body, message) -> None:
    response = post(client, "/v4/events/batch", body, token)
    assert response.status_code == 400 and message in response.get_json()["errors"][0]["message"]


def test_batch_size_is_limited(client, state, token, app) -> None:
    items = [{**event(), "type": "custom"}] * (int(app.config["EVENTTRACK_MAX_EVENTS_PER_REQUEST"]) + 1)
    response = post(client, "/v4/events/batch", items, token)
    assert response.status_code == 400 and "limit" in response.get_json()["message"]
    assert rejected(state)[0].reason == "size_violation"


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [("{not json", "application/json", "invalid_json"), ("{}", "text/plain", "content_type")],
)
def test_malformed_bodies_are_400(client, state, token, data, content_type, reason) -> None:
    response = client.post(
        "/v4/events/custom",
        data=data,
        content_type=content_type,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400 and response.get_json()["status"] == 400
    assert rejected(state)[0].reason == reason


def test_body_over_the_limit_is_413(client, state, token, app) -> None:
    big = json.dumps(event(params={"x": "y" * 1000})) + " " * int(app.config["EVENTTRACK_MAX_CONTENT_LENGTH"])
    response = post(client, "/v4/events/custom", big, token)
    assert response.status_code == 413 and response.get_json()["error"] == "Request Entity Too Large"
    assert rejected(state)[0].reason == "size_violation"


def test_rejected_payload_has_identifiers_hashed(client, state, token) -> None:
    body = event(client={"email": "jane@example.com", "customId": "J-1"}, label="")
    assert post(client, "/v4/events/custom", body, token).status_code == 400
    [rejection] = rejected(state)
    payload = json.loads(rejection.payload or "")
    assert payload["client"] == {
        "email": "hashed:" + state.pipeline.user_key("jane@example.com"),
        "customId": "hashed:" + state.pipeline.user_key("J-1"),
    }
    assert rejection.type == "dog.bark"


def test_store_unavailable_is_503_with_retry_after(client, state, token, monkeypatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("The event store is busy.", retry_after=7)

    monkeypatch.setattr(state.store, "write", fail)
    response = post(client, "/v4/events/custom", DOG_BARK, token)
    assert response.status_code == 503 and response.headers["Retry-After"] == "7"
    assert response.get_json()["status"] == 503


# --- no input causes a 500 ----------------------------------------------------------------
_ODD_VALUES: list[Any] = [
    None, True, 0, -1, 1.5, 10**30, "", "x", "2022-11-28T12:18:27Z", UUID, [], {}, [[]], {"a": None},
    "\u202e", "a" * 3000, [1, "a"], {"id": 1}, float("nan"), float("inf"),
]  # fmt: skip


def _mutations(document: Any, rng: Any) -> Any:
    """``document`` with one random node replaced by an odd value."""
    if isinstance(document, dict) and document and rng.random() < 0.8:
        key = rng.choice(sorted(document))
        return {**document, key: _mutations(document[key], rng)}
    if isinstance(document, list) and document and rng.random() < 0.8:
        index = rng.randrange(len(document))
        return [*document[:index], _mutations(document[index], rng), *document[index + 1 :]]
    return rng.choice(_ODD_VALUES)


@pytest.mark.parametrize(
    ("path", "example"),
    [
        ("/v4/events/custom", DOG_BARK),
        ("/v4/events/batch", BATCH),
        ("/v4/events/added-to-cart", json.dumps({"client": {"id": 1}, "label": "x", "params": {"sku": "A"}})),
        ("/v4/transactions", json.dumps(TRANSACTION)),
        ("/events/v1/single/recommendation.view", RECO_VIEW),
        ("/events/v1/batch", RECO_BATCH),
    ],
)
def test_mutated_bodies_never_cause_a_500(client, state, token, path, example) -> None:
    import random

    rng = random.Random(path)
    document = json.loads(example)
    statuses = set()
    for _ in range(150):
        body = json.dumps(_mutations(document, rng))  # NaN/Infinity are sent as Python's json writes them
        response = post(client, path, body, token)
        statuses.add(response.status_code)
        assert response.status_code in {202, 400}, (body, response.get_json())
        assert response.is_json
    assert 400 in statuses
    for e in stored(state):
        assert json.dumps(e.props, allow_nan=False)
