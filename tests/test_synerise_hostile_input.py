"""Synerise: hostile or odd input that was once answered wrongly.

1. a deeply nested refused body crashed the rejected-log redaction (500);
2. a NUL in a path or query value of the read endpoint reached PostgreSQL (500);
4. a product line's ``orderId`` replaced the transaction's on its ``product.buy``;
5. an AI batch whose ``items`` was not an array named only that problem;
6. raw identifiers reached the rejected log's message (and keys under ``client`` its payload);
7. a product line took reserved names (a raw e-mail in ``props.identifiers``), a numeric SKU
   skipped the string limit, a transaction skipped the event limit, and ``"EUR\\n"`` was a currency;
8. a 400 named only the first of an item's problems in two cases.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _pg import on_store
from flask.testing import FlaskClient
from test_synerise import TRANSACTION, UUID, ai, event, issue_token, post, rejected, stored

from flask_eventtrack.dialects._synerise_reader import SyneriseReader, redacted_payload
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key

EMAIL = "jan.kowalski@example.com"


@pytest.fixture
def token(client: FlaskClient, state: EventTrackState) -> str:
    return issue_token(client, state)


@pytest.fixture
def tracker(state: EventTrackState) -> str:
    return create_key(state.store, "acme", "tracker").secret


def logged_text(state: EventTrackState) -> str:
    return " ".join(f"{r.message} {r.payload}" for r in rejected(state))


# -- 1: deep refused bodies -------------------------------------------------------------
def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v4/events/custom", '{"action": "a", "client": {"id": 1}, "label": "x", "params": {"p": %s}}'),
        ("/v4/events/batch", '[{"type": "custom", "client": {"id": 1}, "junk": %s}]'),
        ("/v4/transactions", '{"client": {"id": 1}, "orderId": "o", "junk": %s}'),
        ("/events/v1/single/recommendation.view", '{"correlationId": "c", "junk": %s}'),
        ("/events/v1/batch", '{"eventType": "recommendation.view", "items": [%s]}'),
    ],
)
def test_deeply_nested_refused_body_is_a_logged_400(
    client: FlaskClient, state: EventTrackState, token: str, path: str, body: str
) -> None:
    """Nested far less than json.loads refuses, far more than redaction used to survive
    (two frames per level). A depth limit in parse_json would refuse it earlier: a 400 too."""
    response = post(client, path, body % nested(500), token)
    assert response.status_code == 400
    [rejection] = rejected(state)
    assert rejection.reason in ("schema_violation", "size_violation")


def test_redaction_survives_any_depth_and_bounds_what_it_logs(state: EventTrackState) -> None:
    reader = SyneriseReader(state)
    document: Any = {"email": EMAIL}
    for _ in range(50_000):
        document = [{"client": document}]
    redacted = reader.redact(document)
    text = json.dumps(redacted)  # bounded: json.dumps cannot hit the recursion limit either
    assert EMAIL not in text and "nested too deeply" in text
    assert redacted_payload(reader, json.dumps([[[{"client": {"id": 7}}]]]).encode()) == json.dumps(
        [[[{"client": {"id": "hashed:" + state.pipeline.user_key("7")}}]]]
    )


def test_redaction_keeps_key_order_and_plain_values(state: EventTrackState) -> None:
    reader = SyneriseReader(state)
    body = {"b": [1, {"x": None}], "client": {"id": 1, "email": [EMAIL, True]}, "a": "kept"}
    hashed = "hashed:" + state.pipeline.user_key(EMAIL)
    assert reader.redact(body) == {
        "b": [1, {"x": None}],
        "client": {"id": "hashed:" + state.pipeline.user_key("1"), "email": [hashed, True]},
        "a": "kept",
    }
    assert list(reader.redact(body)) == ["b", "client", "a"]
    assert reader.redact(["x", 2]) == ["hashed:" + state.pipeline.user_key(v) for v in ("x", "2")]


# -- 2: NUL in the read endpoint's path and query ----------------------------------------
class TestNulInReadRequests:
    """On every store, and with raw ids stored (so the value itself reaches the query)."""

    @pytest.fixture(
        params=[
            pytest.param(("sqlite", True), id="sqlite-hashed"),
            pytest.param(("postgresql", True), id="postgresql-hashed", marks=pytest.mark.postgres),
            pytest.param(("postgresql", False), id="postgresql-raw", marks=pytest.mark.postgres),
        ]
    )
    def config(self, config: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
        store, hashing = request.param
        return {**on_store(store, config, request), "EVENTTRACK_HASH_USER_IDS": hashing}

    @pytest.mark.parametrize(
        "url, field",
        [
            ("/v4/events/profile/id/1?action=%00", "action"),
            ("/v4/events/profile/id/1?action=dog.bark%00", "action"),
            ("/v4/events/profile/customId/a%00b", "customId"),
            ("/v4/events/profile/email/a%00@example.com", "email"),
            ("/v4/events/profile/uuid/%00", "uuid"),
        ],
    )
    def test_nul_is_a_400_naming_the_value(
        self, client: FlaskClient, token: str, url: str, field: str
    ) -> None:
        response = client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 400
        body = response.get_json()
        assert body["status"] == 400 and body["error"] == "Bad Request"
        assert body["errors"] == [
            {"field": field, "message": "Must not contain a NUL character or an unpaired surrogate."}
        ]

    def test_clean_values_still_read(self, client: FlaskClient, state: EventTrackState, token: str) -> None:
        assert post(client, "/v4/events/custom", event(client={"customId": "a-b"}), token).status_code == 202
        response = client.get(
            "/v4/events/profile/customId/a-b?action=dog.bark", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200 and len(response.get_json()) == 1


# -- 4: the transaction's orderId wins ---------------------------------------------------
def test_product_line_cannot_rewrite_the_transactions_order_id(
    client: FlaskClient, state: EventTrackState, token: str
) -> None:
    line = {"sku": "A", "finalUnitPrice": {"amount": 10, "currency": "PLN"}, "orderId": "OTHER"}
    body = {**TRANSACTION, "products": [line]}
    assert post(client, "/v4/transactions", body, token).status_code == 202
    [buy] = stored(state, type="product.buy")
    assert buy.props["orderId"] == "ORD-1"


# -- 5: every problem of an AI batch -----------------------------------------------------
@pytest.mark.parametrize("items", [5, None, {}, []])
def test_ai_batch_names_every_problem_when_items_is_not_a_non_empty_array(
    client: FlaskClient, tracker: str, items: Any
) -> None:
    body = {"eventType": "nope", "items": items, "extra": 1}
    if items is None:
        del body["items"]
    response = post(client, f"/events/v1/batch?token={tracker}", body, None)
    assert response.status_code == 400
    assert {e["field"] for e in response.get_json()["errors"]} == {"eventType", "items", "extra"}


def test_v4_batch_that_is_not_an_array_is_still_one_problem(client: FlaskClient, token: str) -> None:
    response = post(client, "/v4/events/batch", {"type": "custom"}, token)
    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        {"field": None, "message": "The body must be a JSON array of events."}
    ]


# -- 6: raw ids in the rejected log's message and keys ------------------------------------
def test_batch_type_that_is_not_a_string_is_named_by_its_type(
    client: FlaskClient, state: EventTrackState, token: str
) -> None:
    response = post(client, "/v4/events/batch", [{"type": {"email": EMAIL}}, {"type": 7}], token)
    assert response.status_code == 400
    messages = [e["message"] for e in response.get_json()["errors"]]
    assert messages[0].endswith("not a JSON object.") and messages[1].endswith("not a JSON number.")
    assert EMAIL not in logged_text(state)


def test_ai_batch_event_type_that_is_not_a_string_is_named_by_its_type(
    client: FlaskClient, state: EventTrackState, tracker: str
) -> None:
    body = {"eventType": {"clientUUID": UUID}, "items": [ai()]}
    response = post(client, f"/events/v1/batch?token={tracker}", body, None)
    assert response.status_code == 400
    [error] = response.get_json()["errors"]
    assert error["field"] == "eventType" and error["message"].endswith("not a JSON object.")
    assert UUID not in logged_text(state)


@pytest.mark.parametrize("path", ["/v4/events/custom", "/v4/events/batch", "/v4/transactions"])
def test_unknown_keys_under_client_are_not_named_and_are_hashed(
    client: FlaskClient, state: EventTrackState, token: str, path: str
) -> None:
    client_ids = {EMAIL: "email", "bob@example.com": 1, "id": 1}
    body: Any = event(client=client_ids)
    if path == "/v4/events/batch":
        body = [{"type": "custom", **body}]
    elif path == "/v4/transactions":
        body = {**TRANSACTION, "client": client_ids}
    response = post(client, path, body, token)
    assert response.status_code == 400
    assert {
        "field": "client",
        "message": "2 unknown fields; the identifiers are id, customId, uuid, email.",
    } in [{k: v for k, v in e.items() if k != "index"} for e in response.get_json()["errors"]]
    text = logged_text(state)
    assert EMAIL not in text and "bob@example.com" not in text
    assert "hashed:" + state.pipeline.user_key(EMAIL) in text


def test_an_email_used_as_a_key_inside_params_is_not_named_in_the_rejected_log(
    client: FlaskClient, state: EventTrackState, token: str
) -> None:
    body = event(params={"email": {EMAIL: "x" * 2000}})  # over EVENTTRACK_MAX_STRING_LENGTH
    response = post(client, "/v4/events/custom", body, token)
    assert response.status_code == 400
    (rejection,) = rejected(state)
    assert "params.email.*: longer than" in rejection.message  # the parameter is named
    assert EMAIL not in logged_text(state)


# -- 7: product lines, SKUs and currencies held to the rules of params ---------------------
def test_a_product_line_cannot_take_reserved_names(
    client: FlaskClient, state: EventTrackState, token: str
) -> None:
    """Its fields become the props of its product.buy, where ``identifiers`` holds only hashes."""
    line = {
        "sku": "A",
        "finalUnitPrice": {"amount": 10, "currency": "PLN"},
        "identifiers": {"email": EMAIL},
        "tenant": "globex",
    }
    response = post(client, "/v4/transactions", {**TRANSACTION, "products": [line]}, token)
    assert response.status_code == 400
    assert "Reserved names cannot be used in a product line: identifiers, tenant" in json.dumps(
        response.get_json()
    )
    assert stored(state) == [] and EMAIL not in logged_text(state)


def test_a_numeric_sku_is_held_to_the_string_limit(
    client: FlaskClient, state: EventTrackState, token: str
) -> None:
    """It becomes the text ``item_id``: 1025 digits are as long as 1025 letters."""
    body = '{"client": {"id": 1}, "label": "l", "params": {"sku": ' + "9" * 1025 + "}}"
    response = post(client, "/v4/events/added-to-cart", body, token)
    assert response.status_code == 400 and "params.sku is longer than 1024" in json.dumps(response.get_json())
    assert post(client, "/v4/events/added-to-cart", event(params={"sku": 12}), token).status_code == 202
    (cart,) = stored(state)
    assert cart.item_id == "12"


@pytest.mark.parametrize("where", ["value", "line"])
def test_a_currency_with_a_final_newline_is_refused(
    client: FlaskClient, state: EventTrackState, token: str, where: str
) -> None:
    money = {"amount": 10, "currency": "PLN\n"}
    line = {"sku": "A", "finalUnitPrice": money if where == "line" else {"amount": 10, "currency": "PLN"}}
    body = {**TRANSACTION, "products": [line], **({"value": money} if where == "value" else {})}
    assert post(client, "/v4/transactions", body, token).status_code == 400
    assert stored(state) == []


class TestTheEventLimit:
    @pytest.fixture
    def config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {**config, "EVENTTRACK_MAX_EVENTS_PER_REQUEST": 5}

    def test_a_transaction_has_at_most_that_many_product_lines(
        self, client: FlaskClient, state: EventTrackState, token: str
    ) -> None:
        line = {"finalUnitPrice": {"amount": 1, "currency": "PLN"}}
        lines = [{"sku": str(i), **line} for i in range(6)]
        response = post(client, "/v4/transactions", {**TRANSACTION, "products": lines}, token)
        assert response.status_code == 400
        assert response.get_json()["message"] == "6 product lines in one transaction; the limit is 5."
        assert stored(state) == [] and [r.reason for r in rejected(state)] == ["size_violation"]
        response = post(client, "/v4/transactions", {**TRANSACTION, "products": lines[:5]}, token)
        assert response.status_code == 202 and len(stored(state)) == 6  # one charge, five buys


# -- 8: a 400 names every problem ----------------------------------------------------------
def test_a_batch_items_action_conflict_is_named_with_its_other_problems(
    client: FlaskClient, token: str
) -> None:
    item = {"type": "shared", "action": "client.login", "client": {"id": 1}, "label": ""}
    response = post(client, "/v4/events/batch", [item], token)
    assert response.status_code == 400
    assert {(e["index"], e["field"]) for e in response.get_json()["errors"]} == {(0, "label"), (0, "action")}


def test_reserved_params_and_too_deep_params_are_both_named(client: FlaskClient, token: str) -> None:
    deep: Any = "x"
    for _ in range(12):
        deep = {"k": deep}
    response = post(client, "/v4/events/custom", event(params={"user": "x", "deep": deep}), token)
    assert response.status_code == 400
    messages = [e["message"] for e in response.get_json()["errors"] if e["field"] == "params"]
    assert len(messages) == 2
    assert "Reserved parameter names cannot be used: user." in messages[0] and "nested deeper" in messages[1]
