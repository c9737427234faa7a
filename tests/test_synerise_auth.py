"""Synerise credentials (API keys, tracker keys, bearer tokens), the read endpoint,
event definitions, and the ``token`` / ``definitions`` commands."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode
from test_synerise import DOG_BARK, RECO_VIEW, UUID, event, issue_token, post, rejected, stored

from example_app import create_app
from flask_eventtrack import get_state
from flask_eventtrack.cli import cli
from flask_eventtrack.errors import ConfigurationError
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.keys import create_key

V4_WRITES = ["/v4/events/custom", "/v4/events/batch", "/v4/transactions", "/v4/events/hit-timer"]
V4_READS = ["/v4/events/profile/id/1", "/v4/event-definitions"]


@pytest.fixture
def token(client: FlaskClient, state: EventTrackState) -> str:
    return issue_token(client, state)


@pytest.fixture
def tracker(state: EventTrackState) -> str:
    return create_key(state.store, "acme", "tracker").secret


def exchange(client: FlaskClient, secret: str) -> Any:
    return client.post("/v4/auth/token", json={"apiKey": secret})


def get(client: FlaskClient, path: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, headers=headers)


# --- tokens ---------------------------------------------------------------------------
def test_exchange_an_api_key_for_a_token(client, state, app) -> None:
    key = create_key(state.store, "acme", "api")
    response = exchange(client, key.secret)
    assert response.status_code == 200
    body = response.get_json()
    assert body["tokenType"] == "Bearer" and body["tenant"] == "acme"
    assert body["expiresIn"] == app.config["EVENTTRACK_SYNERISE_TOKEN_MAX_AGE"] == 3600
    assert key.secret not in body["token"]
    assert post(client, "/v4/events/custom", DOG_BARK, body["token"]).status_code == 202


@pytest.mark.parametrize("body", [{}, {"apiKey": ""}, {"apiKey": 5}, [1]])
def test_token_request_needs_an_api_key(client, state, body) -> None:
    response = client.post("/v4/auth/token", json=body)
    assert response.status_code == 400 and response.get_json()["errors"][0]["field"] == "apiKey"
    assert rejected(state)[0].payload is None  # the body may hold a secret: never logged


@pytest.mark.parametrize("path", V4_WRITES)
def test_v4_writes_need_a_bearer_token(client, state, path) -> None:
    response = post(client, path, DOG_BARK, None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["error"] == "Unauthorized"
    [rejection] = rejected(state)
    assert rejection.reason == "auth_failure" and rejection.payload is None
    assert stored(state) == []


@pytest.mark.parametrize("path", V4_READS)
def test_v4_reads_need_a_bearer_token(client, state, path) -> None:
    assert get(client, path, None).status_code == 401
    assert get(client, path, "nonsense").status_code == 401


@pytest.mark.parametrize("header", ["Basic YWNtZTpzZWNyZXQ=", "Bearer", "Bearer ", "token"])
def test_authorization_must_be_bearer(client, state, token, header) -> None:
    response = client.post(
        "/v4/events/custom", data=DOG_BARK, content_type="application/json", headers={"Authorization": header}
    )
    assert response.status_code == 401 and stored(state) == []


def test_garbage_token_is_401(client, state) -> None:
    response = post(client, "/v4/events/custom", DOG_BARK, "not.a.token")
    assert response.status_code == 401 and "not valid" in response.get_json()["message"]


def test_tampered_token_cannot_switch_tenant(client, state, token) -> None:
    payload, stamp, signature = token.split(".")
    claims = json.loads(base64_decode(payload))
    assert claims["tenant"] == "acme"
    forged = base64_encode(json.dumps({**claims, "tenant": "globex"}).encode()).decode()
    response = post(client, "/v4/events/custom", DOG_BARK, f"{forged}.{stamp}.{signature}")
    assert response.status_code == 401 and stored(state) == []


def test_expired_token_is_401_and_says_so(client, state, monkeypatch) -> None:
    key = create_key(state.store, "acme", "api")
    with monkeypatch.context() as m:
        m.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 3601)
        old = exchange(client, key.secret).get_json()["token"]
    response = post(client, "/v4/events/custom", DOG_BARK, old)
    assert response.status_code == 401 and "expired" in response.get_json()["message"]
    fresh = exchange(client, key.secret).get_json()["token"]
    assert post(client, "/v4/events/custom", DOG_BARK, fresh).status_code == 202


def test_revoking_the_key_stops_its_tokens(client, state) -> None:
    key = create_key(state.store, "acme", "api")
    token = exchange(client, key.secret).get_json()["token"]
    assert post(client, "/v4/events/custom", DOG_BARK, token).status_code == 202
    assert state.store.revoke_key(key.id)
    response = post(client, "/v4/events/custom", DOG_BARK, token)
    assert response.status_code == 401 and "revoked" in response.get_json()["message"]
    assert exchange(client, key.secret).status_code == 401
    assert len(stored(state)) == 1


def test_only_api_keys_are_exchanged(client, state, tracker) -> None:
    response = exchange(client, tracker)
    assert response.status_code == 401 and "tracker" in response.get_json()["message"]
    assert exchange(client, "et_api_0_nope").status_code == 401


def test_a_token_writes_and_reads_only_its_own_tenant(client, state) -> None:
    acme, globex = issue_token(client, state, "acme"), issue_token(client, state, "globex")
    assert post(client, "/v4/events/custom", event(client={"id": 7}), acme).status_code == 202
    assert (
        post(client, "/v4/events/custom", event(client={"id": 7}, action="cat.purr"), globex).status_code
        == 202
    )
    assert sorted((e.tenant, e.type) for e in stored(state)) == [("acme", "dog.bark"), ("globex", "cat.purr")]
    assert [e["action"] for e in get(client, "/v4/events/profile/id/7", acme).get_json()] == ["dog.bark"]
    assert [d["name"] for d in get(client, "/v4/event-definitions", globex).get_json()] == ["cat.purr"]


def test_secret_key_rotation_keeps_tokens_valid(config, state) -> None:
    key = create_key(state.store, "acme", "api")
    old_token = exchange(create_app(config).test_client(), key.secret).get_json()["token"]
    rotated = create_app(
        {**config, "SECRET_KEY": "new-secret", "SECRET_KEY_FALLBACKS": [config["SECRET_KEY"]]}
    )
    assert post(rotated.test_client(), "/v4/events/custom", DOG_BARK, old_token).status_code == 202
    dropped = create_app({**config, "SECRET_KEY": "new-secret"})
    assert post(dropped.test_client(), "/v4/events/custom", DOG_BARK, old_token).status_code == 401
    for app in (rotated, dropped):
        get_state(app).store.close()


def test_token_max_age_must_be_positive(config) -> None:
    with pytest.raises(ConfigurationError, match="TOKEN_MAX_AGE must be an integer from 1"):
        create_app({**config, "EVENTTRACK_SYNERISE_TOKEN_MAX_AGE": 0})


def test_cli_token_command(app: Flask, client, state) -> None:
    result = app.test_cli_runner().invoke(cli, ["token", "--tenant", "initech"])
    assert result.exit_code == 0, result.output
    minted = result.stdout.strip().splitlines()[-1]
    assert post(client, "/v4/events/custom", DOG_BARK, minted).status_code == 202
    assert [e.tenant for e in stored(state)] == ["initech"]
    missing = app.test_cli_runner().invoke(cli, ["token"])
    assert missing.exit_code != 0


# --- AI events credentials --------------------------------------------------------------
def test_ai_events_take_a_tracker_key_or_a_bearer_token(client, state, tracker, token) -> None:
    path = "/events/v1/single/recommendation.view"
    assert post(client, f"{path}?token={tracker}", RECO_VIEW, None).status_code == 202
    assert post(client, path, RECO_VIEW, token).status_code == 202
    assert [e.tenant for e in stored(state)] == ["acme", "acme"]


def test_ai_events_refuse_bad_credentials(client, state, tracker) -> None:
    path = "/events/v1/single/recommendation.view"
    api_key = create_key(state.store, "acme", "api").secret
    assert post(client, path, RECO_VIEW, None).status_code == 401
    assert (
        post(client, f"{path}?token=56ba9d02-aaaa-aaaa-aaaa-018564059ea3", RECO_VIEW, None).status_code == 401
    )
    assert post(client, f"{path}?token={api_key}", RECO_VIEW, None).status_code == 401
    [row] = [r for r in state.store.list_keys("acme") if r["kind"] == "tracker"]
    assert state.store.revoke_key(row["id"])
    response = post(client, f"{path}?token={tracker}", RECO_VIEW, None)
    assert response.status_code == 401 and "revoked" in response.get_json()["message"]
    assert stored(state) == [] and {r.reason for r in rejected(state)} == {"auth_failure"}


def test_tracker_key_does_not_open_v4(client, state, tracker) -> None:
    assert post(client, f"/v4/events/custom?token={tracker}", DOG_BARK, None).status_code == 401
    assert post(client, "/v4/events/custom", DOG_BARK, tracker).status_code == 401


# --- reading back -------------------------------------------------------------------------
def test_profile_events_are_returned_newest_first_in_utc(client, state, token) -> None:
    assert post(client, "/v4/events/custom", DOG_BARK, token).status_code == 202
    later = event(
        client={"id": 5092159999, "email": "jane@example.com"},
        action="dog.sleep",
        time="2022-11-28T10:00:00-04:00",
        params={"hours": 2},
    )
    assert post(client, "/v4/events/custom", later, token).status_code == 202
    assert post(client, "/v4/events/custom", event(client={"id": 1}), token).status_code == 202
    assert (
        post(client, "/v4/events/custom", event(client={"customId": "5092159999"}), token).status_code == 202
    )
    response = get(client, "/v4/events/profile/id/5092159999", token)
    assert response.status_code == 200
    body = response.get_json()
    assert [(e["action"], e["time"]) for e in body] == [
        ("dog.sleep", "2022-11-28T14:00:00.000Z"),
        ("dog.bark", "2022-11-28T12:18:27.000Z"),
    ]
    assert body[1]["client"] == {"id": "5092159999"} and body[1]["params"] == json.loads(DOG_BARK)["params"]
    assert body[0]["params"]["hours"] == 2 and body[0]["saveTime"].endswith("Z")
    assert "jane" not in json.dumps(body)


def test_profile_paging_and_action_filter(client, state, token) -> None:
    for n in range(5):
        body = event(
            client={"email": "jane@example.com"},
            time=f"2022-01-0{n + 1}T00:00:00Z",
            action="a.even" if n % 2 == 0 else "a.odd",
        )
        assert post(client, "/v4/events/custom", body, token).status_code == 202
    path = "/v4/events/profile/email/jane@example.com"
    days = [e["time"][8:10] for e in get(client, f"{path}?limit=2&offset=1", token).get_json()]
    assert days == ["04", "03"]
    evens = get(client, f"{path}?action=a.even", token).get_json()
    assert [e["time"][8:10] for e in evens] == ["05", "03", "01"]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=abc", "limit=100000", "offset=-1", "limit=%C2%B2", "offset=" + "9" * 5000]
)
def test_profile_query_parameters_are_checked(client, state, token, query) -> None:
    response = get(client, f"/v4/events/profile/id/1?{query}", token)
    assert response.status_code == 400 and response.get_json()["errors"][0]["field"] in {"limit", "offset"}


def test_profile_by_uuid_includes_ai_events(client, state, token, tracker) -> None:
    assert (
        post(client, f"/events/v1/single/recommendation.view?token={tracker}", RECO_VIEW, None).status_code
        == 202
    )
    [e] = get(client, f"/v4/events/profile/uuid/{UUID.upper()}", token).get_json()
    assert e["action"] == "recommendation.view" and e["time"] == "2022-12-08T13:23:22.000Z"
    assert get(client, "/v4/events/profile/uuid/nope", token).status_code == 400


def test_profile_unknown_identifier_kind_is_404(client, state, token) -> None:
    response = get(client, "/v4/events/profile/phone/123", token)
    assert response.status_code == 404 and "phone" in response.get_json()["message"]
    assert rejected(state) == []  # a read is not rejected input


def test_profile_shows_the_original_future_time(client, state, token) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).isoformat()
    assert post(client, "/v4/events/custom", event(time=future), token).status_code == 202
    [e] = get(client, "/v4/events/profile/id/1", token).get_json()
    assert e["originalTime"] == future and e["time"] == e["saveTime"]


# --- definitions ----------------------------------------------------------------------------
def test_first_event_of_an_unknown_action_creates_a_definition(client, state, token) -> None:
    assert post(client, "/v4/events/custom", event(action="dog.howl"), token).status_code == 202
    [definition] = state.store.definitions("acme")
    assert (definition["name"], definition["source"], definition["count"]) == ("dog.howl", "synerise", 1)
    assert definition["params"] == [] and definition["first_seen"]


def test_definitions_grow_with_events_and_parameters(client, state, token) -> None:
    assert post(client, "/v4/events/custom", DOG_BARK, token).status_code == 202
    [first] = state.store.definitions("acme")
    body = json.loads(DOG_BARK)
    body["params"] = {"loudness": 9, "tail": "wagging"}
    assert post(client, "/v4/events/custom", body, token).status_code == 202
    [second] = state.store.definitions("acme")
    assert second["count"] == 2 and second["first_seen"] == first["first_seen"]
    assert second["params"] == ["loudness", "mailmanScared", "mood", "tail"]
    assert second["last_seen"] >= first["last_seen"]


def test_definitions_endpoint_is_read_only(client, state, token) -> None:
    assert post(client, "/v4/events/batch", json.loads(json.dumps([{**event(), "type": "custom"}])), token)
    response = get(client, "/v4/event-definitions", token)
    assert response.status_code == 200
    [row] = response.get_json()
    assert set(row) == {"name", "source", "firstSeen", "lastSeen", "count", "params"}
    assert row["name"] == "dog.bark" and row["count"] == 1
    assert post(client, "/v4/event-definitions", {}, token).status_code == 405


def test_definitions_command(app: Flask, client, state, token) -> None:
    assert post(client, "/v4/events/custom", DOG_BARK, token).status_code == 202
    other = issue_token(client, state, "globex")
    assert post(client, "/v4/events/custom", event(action="cat.purr"), other).status_code == 202
    runner = app.test_cli_runner()
    result = runner.invoke(cli, ["definitions"])
    assert result.exit_code == 0
    assert "acme  synerise  dog.bark  count=1" in result.stdout and "cat.purr" in result.stdout
    assert "params=loudness,mailmanScared,mood" in result.stdout
    result = runner.invoke(cli, ["definitions", "--tenant", "globex", "--json"])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["tenant"], r["name"]) for r in rows] == [("globex", "cat.purr")]


def test_keys_made_and_revoked_with_the_cli_work_here(app: Flask, client, state) -> None:
    runner = app.test_cli_runner()
    created = runner.invoke(cli, ["keys", "create", "--tenant", "acme", "--kind", "tracker"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    path = f"/events/v1/single/recommendation.view?token={secret}"
    assert post(client, path, RECO_VIEW, None).status_code == 202
    listed = runner.invoke(cli, ["keys", "list", "--tenant", "acme"]).stdout
    assert secret not in listed and "tracker  active" in listed
    [key_id] = [line.split()[0] for line in listed.splitlines() if "tracker" in line]
    assert runner.invoke(cli, ["keys", "revoke", key_id]).exit_code == 0
    assert post(client, path, RECO_VIEW, None).status_code == 401
    assert [e.tenant for e in stored(state)] == ["acme"]


def test_profile_read_by_a_custom_id_with_a_slash(client, state, token) -> None:
    assert post(client, "/v4/events/custom", event(client={"customId": "shop/42"}), token).status_code == 202
    [e] = get(client, "/v4/events/profile/customId/shop/42", token).get_json()
    assert e["client"] == {"customId": "shop/42"}


@pytest.mark.parametrize("tenant", ["", " "])
def test_no_token_is_issued_for_an_empty_tenant(state: EventTrackState, tenant: str) -> None:
    from flask_eventtrack.tokens import Tokens

    with pytest.raises(ValueError, match="needs a tenant"):
        Tokens(["k"], 60, state.store).issue(tenant)


def test_the_token_command_refuses_an_empty_tenant(app: Flask) -> None:
    result = app.test_cli_runner().invoke(cli, ["token", "--tenant", " "])
    assert result.exit_code == 2 and "needs a tenant" in result.output


def test_a_fallback_secret_from_the_environment_is_one_key(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``FLASK_SECRET_KEY_FALLBACKS=<old key>`` arrives as a string: were each character a
    key, anyone could mint a token of any tenant with a one-letter key."""
    from itsdangerous import URLSafeTimedSerializer

    from flask_eventtrack.tokens import TOKEN_SALT

    old = "the-previous-secret-key"
    monkeypatch.setenv("FLASK_SECRET_KEY_FALLBACKS", old)
    app = create_app(config)
    client = app.test_client()
    try:
        assert app.config["SECRET_KEY_FALLBACKS"] == old
        for letter in sorted(set(old)):
            forged = URLSafeTimedSerializer(letter.encode(), salt=TOKEN_SALT).dumps(
                {"tenant": "x", "key": None}
            )
            answer = client.get("/v4/event-definitions", headers={"Authorization": f"Bearer {forged}"})
            assert answer.status_code == 401, letter
        signed_before = URLSafeTimedSerializer(old.encode(), salt=TOKEN_SALT).dumps(
            {"tenant": "x", "key": None}
        )
        answer = client.get("/v4/event-definitions", headers={"Authorization": f"Bearer {signed_before}"})
        assert answer.status_code == 200  # a token signed with the old secret still works
    finally:
        get_state(app).store.close()


@pytest.mark.parametrize("fallbacks", [[""], ["old-secret", b""], [None]])
def test_an_empty_fallback_secret_is_a_configuration_error(config: dict[str, Any], fallbacks: Any) -> None:
    config["SECRET_KEY_FALLBACKS"] = fallbacks
    with pytest.raises(ConfigurationError, match="SECRET_KEY_FALLBACKS"):
        create_app(config)
