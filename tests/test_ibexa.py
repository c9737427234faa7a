"""Ibexa dialect: the vendor's "Tracking event examples" replayed, every event code
over GET and POST, normalisation, identity stitching and privacy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import Client

from flask_eventtrack import EventQuery, EventTrackMiddleware, get_state, links
from flask_eventtrack.cli import cli
from flask_eventtrack.events import Event
from flask_eventtrack.extension import EventTrackState

USER = "Js79009234YU7"

#: The seed's "Tracking event examples", URLs rebuilt from the spec's formats.
EXAMPLES = [
    f"/api/00000/click/{USER}/1/123?categorypath=%2FShoes%2FChildren",
    f"/api/00000/rendered/{USER}/1/128,129,155?scenario=also_bought",
    f"/api/00000/clickrecommended/{USER}/1/155?scenario=also_bought",
    f"/api/00000/consume/{USER}/3/452",
    f"/api/00000/consume/{USER}/3/466?percentage=60",
    f"/api/00000/basket/{USER}/1/128",
    f"/api/00000/basket/{USER}/1/129",
    f"/api/00000/login/{USER}/johndoe",
    "/api/00000/buy/johndoe/1/128?fullprice=19.99EUR&quantity=1",
    "/api/00000/buy/johndoe/1/129?fullprice=4.44EUR&quantity=2",
    "/api/00000/rate/johndoe/1/133?rating=100",
]

#: (type, user, item_type, item_id, props) of each stored event, in order.
EXPECTED = [
    ("click", USER, "1", "123", {"categorypath": "Shoes/Children"}),
    ("rendered", USER, "1", "128", {"scenario": "also_bought"}),
    ("rendered", USER, "1", "129", {"scenario": "also_bought"}),
    ("rendered", USER, "1", "155", {"scenario": "also_bought"}),
    ("clickrecommended", USER, "1", "155", {"scenario": "also_bought"}),
    ("consume", USER, "3", "452", {}),
    ("consume", USER, "3", "466", {"percentage": 60}),
    ("basket", USER, "1", "128", {}),
    ("basket", USER, "1", "129", {}),
    ("login", USER, None, None, {}),
    ("buy", "johndoe", "1", "128", {"quantity": 1, "price": "19.99", "currency": "EUR"}),
    ("buy", "johndoe", "1", "129", {"quantity": 2, "price": "4.44", "currency": "EUR"}),
    ("rate", "johndoe", "1", "133", {"rating": 100}),
]


def send(client: FlaskClient, url: str, method: str = "GET", **kwargs: Any) -> Any:
    return client.open(url, method=method, **kwargs)


def events(state: EventTrackState, **filters: Any) -> list[Event]:
    return list(state.store.iter_events(EventQuery(source="ibexa", **filters)))


def rejected(state: EventTrackState) -> list[Any]:
    return list(state.store.iter_rejected(EventQuery(source="ibexa")))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_vendor_examples_are_stored_field_by_field(
    client: FlaskClient, state: EventTrackState, method: str
) -> None:
    for url in EXAMPLES:
        response = send(client, url, method)
        assert response.status_code == 204, (url, response.get_data(as_text=True))
        assert response.data == b""
    stored = events(state)
    assert len(stored) == len(EXPECTED)
    for event, (type_, user, item_type, item_id, props) in zip(stored, EXPECTED, strict=True):
        assert event.tenant == "00000"
        assert event.source == "ibexa"
        assert event.type == type_
        assert event.user == state.pipeline.user_key(user)
        assert event.user != user
        assert event.user_kind == "userid"
        assert event.item_type == item_type
        assert event.item_id == item_id
        assert event.props == props
        assert event.status == "accepted"
        assert event.dedup_key is None
        assert event.original_time is None
        assert event.occurred_at == event.received_at
    assert rejected(state) == []


def test_login_links_anonymous_history_to_account(client: FlaskClient, state: EventTrackState) -> None:
    for url in EXAMPLES:
        assert send(client, url).status_code == 204
    anon, account = state.pipeline.user_key(USER), state.pipeline.user_key("johndoe")
    assert sorted(state.store.linked_users(account)) == sorted([anon, account])
    assert state.store.linked_users(anon) == [anon]


def export_users(app: Flask, raw_user: str) -> list[dict[str, Any]]:
    result = app.test_cli_runner().invoke(cli, ["export", "--user", raw_user])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_export_of_account_includes_events_sent_before_login(
    app: Flask, client: FlaskClient, state: EventTrackState
) -> None:
    for url in EXAMPLES:
        assert send(client, url).status_code == 204
    rows = export_users(app, "johndoe")
    assert [r["type"] for r in rows] == [e[0] for e in EXPECTED]
    assert {r["user"] for r in rows} == {state.pipeline.user_key(USER), state.pipeline.user_key("johndoe")}
    # before the login is linked, only the anonymous id's own events are its history
    anon_rows = export_users(app, USER)
    assert [r["type"] for r in anon_rows] == [e[0] for e in EXPECTED if e[1] == USER]


def test_chains_of_logins_resolve(app: Flask, client: FlaskClient) -> None:
    assert send(client, "/api/00000/click/cookie1/1/1").status_code == 204
    assert send(client, "/api/00000/login/cookie1/session2").status_code == 204
    assert send(client, "/api/00000/click/session2/1/2").status_code == 204
    assert send(client, "/api/00000/login/session2/account3").status_code == 204
    assert send(client, "/api/00000/click/account3/1/3").status_code == 204
    assert send(client, "/api/00000/click/someoneelse/1/4").status_code == 204
    rows = export_users(app, "account3")
    assert [(r["type"], r["item_id"]) for r in rows] == [
        ("click", "1"),
        ("login", None),
        ("click", "2"),
        ("login", None),
        ("click", "3"),
    ]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "url, type_, item, props",
    [
        ("/api/00000/click/u1/1/10", "click", ("1", "10"), {}),
        ("/api/00000/consume/u1/1/10?percentage=0", "consume", ("1", "10"), {"percentage": 0}),
        ("/api/00000/buy/u1/1/10", "buy", ("1", "10"), {"quantity": 1}),
        (
            "/api/00000/buy/u1/1/10?fullprice=456JPY",
            "buy",
            ("1", "10"),
            {"quantity": 1, "price": "456", "currency": "JPY"},
        ),
        ("/api/00000/basket/u1/2/10", "basket", ("2", "10"), {}),
        ("/api/00000/deletefrombasket/u1/2/10", "deletefrombasket", ("2", "10"), {}),
        ("/api/00000/rate/u1/1/10?rating=0", "rate", ("1", "10"), {"rating": 0}),
        ("/api/00000/rate/u1/1/10", "rate", ("1", "10"), {}),
        ("/api/00000/blacklist/u1/1/10", "blacklist", ("1", "10"), {}),
        ("/api/00000/rendered/u1/1/10", "rendered", ("1", "10"), {}),
        (
            "/api/00000/clickrecommended/u1/1/10?scenario=top",
            "clickrecommended",
            ("1", "10"),
            {"scenario": "top"},
        ),
        (
            "/api/00000/triggeropened/u1?triggername=welcome",
            "triggeropened",
            (None, None),
            {"triggername": "welcome"},
        ),
        (
            "/api/00000/clicktriggered/u1/1/10?triggername=welcome",
            "clicktriggered",
            ("1", "10"),
            {"triggername": "welcome"},
        ),
        ("/api/00000/CLICK/u1/1/10", "click", ("1", "10"), {}),
    ],
)
def test_every_event_code_over_get_and_post(
    client: FlaskClient,
    state: EventTrackState,
    method: str,
    url: str,
    type_: str,
    item: tuple[Any, Any],
    props: dict[str, Any],
) -> None:
    response = send(client, url, method)
    assert response.status_code == 204, response.get_data(as_text=True)
    (event,) = events(state)
    assert (event.type, event.item_type, event.item_id, event.props) == (type_, *item, props)
    assert event.user == state.pipeline.user_key("u1")


def test_post_form_fields_count_as_query_parameters(client: FlaskClient, state: EventTrackState) -> None:
    response = client.post("/api/00000/buy/u1/1/7", data={"quantity": "3", "fullprice": "2.50EUR"})
    assert response.status_code == 204
    (event,) = events(state)
    assert event.props == {"quantity": 3, "price": "2.50", "currency": "EUR"}


@pytest.mark.parametrize(
    "sent, stored",
    [
        ("%2FCameras%2F", "Cameras"),
        ("Cameras", "Cameras"),
        ("%2FCameras%26Foto%2FCompact%20Cameras%2FCanon", "Cameras&Foto/Compact Cameras/Canon"),
        ("Shoes/Children/", "Shoes/Children"),
    ],
)
def test_categorypath_outer_slashes_are_ignored(
    client: FlaskClient, state: EventTrackState, sent: str, stored: str
) -> None:
    assert send(client, f"/api/00000/click/u1/1/5?categorypath={sent}").status_code == 204
    assert events(state)[0].props == {"categorypath": stored}


def test_empty_categorypath_is_left_out(client: FlaskClient, state: EventTrackState) -> None:
    assert send(client, "/api/00000/click/u1/1/5?categorypath=%2F").status_code == 204
    assert events(state)[0].props == {}


def test_rendered_stores_one_impression_per_distinct_item(
    client: FlaskClient, state: EventTrackState
) -> None:
    assert send(client, "/api/00000/rendered/u1/1/5,6,5,007").status_code == 204
    assert [e.item_id for e in events(state)] == ["5", "6", "7"]


def test_numeric_ids_lose_leading_zeros(client: FlaskClient, state: EventTrackState) -> None:
    assert send(client, "/api/00000/click/u1/01/0123").status_code == 204
    (event,) = events(state)
    assert (event.item_type, event.item_id) == ("1", "123")


def test_largest_ids_are_accepted(client: FlaskClient, state: EventTrackState) -> None:
    assert send(client, "/api/00000/click/u1/2147483647/2147483647").status_code == 204
    assert events(state)[0].item_id == "2147483647"


def test_encoded_slash_stays_inside_user_id(client: FlaskClient, state: EventTrackState) -> None:
    assert send(client, "/api/00000/click/ab%2Fcd%3D%3D/1/5").status_code == 204
    assert events(state)[0].user == state.pipeline.user_key("ab/cd==")


def test_user_ids_are_case_sensitive(client: FlaskClient, state: EventTrackState) -> None:
    assert send(client, "/api/00000/click/Abc/1/5").status_code == 204
    assert send(client, "/api/00000/click/abc/1/5").status_code == 204
    assert len({e.user for e in events(state)}) == 2


def test_unknown_query_parameters_are_kept_apart(client: FlaskClient, state: EventTrackState) -> None:
    assert send(client, "/api/00000/click/u1/1/5?lang=de&_=12345").status_code == 204
    assert events(state)[0].props == {"extra": {"lang": "de", "_": "12345"}}


def test_raw_user_ids_never_reach_the_database_file(
    client: FlaskClient, state: EventTrackState, store_url: str
) -> None:
    raw_ids = ["RawAnon9f3k2Q", "RawAccount7Zp", "RawBadReq42xY", "RawAuthUser5Q"]
    assert send(client, f"/api/00000/click/{raw_ids[0]}/1/5?categorypath=a").status_code == 204
    assert send(client, f"/api/00000/login/{raw_ids[0]}/{raw_ids[1]}").status_code == 204
    assert send(client, f"/api/00000/rendered/{raw_ids[1]}/1/5,6?scenario=s").status_code == 204
    # refused requests are logged too, with the user id replaced by its key
    assert send(client, f"/api/00000/consume/{raw_ids[2]}/1/5?percentage=500").status_code == 400
    assert send(client, f"/api/00000/click/{raw_ids[3]}/1/5/extra").status_code == 400
    assert send(client, f"/api/00000/clickrecommended/{raw_ids[2]}/1/5").status_code == 400
    assert len(rejected(state)) == 3
    assert f"<user:{state.pipeline.user_key(raw_ids[2])}>" in rejected(state)[0].payload
    path = Path(store_url.removeprefix("sqlite:///"))
    files = [p for p in (path, Path(f"{path}-wal")) if p.exists()]
    data = b"".join(p.read_bytes() for p in files)
    assert len(data) > 0 and Path(f"{path}-wal") in files
    for raw in raw_ids:
        assert raw.encode() not in data
    assert state.pipeline.user_key(raw_ids[0]).encode() in data


def test_refused_requests_log_no_raw_user_id_whatever_their_shape(
    client: FlaskClient, state: EventTrackState, store_url: str
) -> None:
    """Review finding 6: with the wrong number of segments, all-digit segments were
    logged in clear; a user id sent as a query parameter was logged raw."""
    urls = [
        "/api/00000/click/987654321/1",  # the numeric user id, one segment short
        "/api/00000/click/987654322/1/5/6",  # one segment too many
        "/api/00000/click/u/1/5?userid=bob.secret@example.com",
        "/api/00000/click/u/1/5?lang=de&user%69d=carol.secret@example.com",
        "/api/00000/login/a/b?targetuserid=dave.secret@example.com&sourceuserid=x",
    ]
    for url in urls:
        assert send(client, url).status_code == 400, url
    payloads = [r.payload for r in rejected(state)]
    assert len(payloads) == len(urls)
    assert payloads[0] == "GET /api/00000/click/... (2 path segments)"
    key = state.pipeline.user_key("bob.secret@example.com")
    assert (
        payloads[2] == f"GET /api/00000/click/<user:{state.pipeline.user_key('u')}>/1/5?userid=<user:{key}>"
    )
    assert payloads[3].endswith(
        "?lang=de&user%69d=<user:" + state.pipeline.user_key("carol.secret@example.com") + ">"
    )
    path = Path(store_url.removeprefix("sqlite:///"))
    data = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    assert b"/api/00000/click" in data  # the check reads the right files
    for raw in (b"987654321", b"987654322", b"bob.secret", b"carol.secret", b"dave.secret"):
        assert raw not in data, raw


def test_store_down_is_503_with_retry_after(
    client: FlaskClient, state: EventTrackState, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_eventtrack.errors import StoreUnavailable

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("The event store is unavailable.", retry_after=7)

    monkeypatch.setattr(state.store, "write", down)
    response = send(client, "/api/00000/click/u1/1/5")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.mimetype == "text/plain"
    response = send(client, "/api/00000/click/u1/1/x")  # a refusal that cannot be logged either
    assert response.status_code == 503


def test_behind_the_wsgi_middleware(tmp_path: Path) -> None:
    """Mounted under a script root, encoded slashes and user ids still parse."""

    def host(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"host app"]

    middleware = EventTrackMiddleware(
        host,
        prefix="/events",
        config={"SECRET_KEY": "k", "EVENTTRACK_STORE_URL": f"sqlite:///{tmp_path}/mw.db"},
    )
    client = Client(middleware)
    try:
        response = client.get("/events/api/00000/click/ab%2Fcd/1/5?categorypath=%2FA%2FB%2F")
        assert response.status_code == 204, response.get_data(as_text=True)
        assert client.get("/events/api/00000/nope/u/1/5").status_code == 404
        assert client.get("/other").get_data() == b"host app"
        state = get_state(middleware.flask_app)
        (event,) = state.store.iter_events(EventQuery(source="ibexa"))
        assert event.user == state.pipeline.user_key("ab/cd")
        assert event.props == {"categorypath": "A/B"}
        with middleware.flask_app.test_request_context("/", base_url="http://shop.example/events"):
            url = links.clickrecommended_url("ab/cd", 1, 5, "top", customerid="00000")
        assert url == "/events/api/00000/clickrecommended/ab%2Fcd/1/5?scenario=top"
    finally:
        get_state(middleware.flask_app).store.close()


def test_head_is_answered_like_get_but_records_nothing(client: FlaskClient, state: EventTrackState) -> None:
    ok = client.head("/api/00000/click/Js79009234YU7/1/123")
    bad = client.head("/api/00000/click/Js79009234YU7/1/0")
    assert (ok.status_code, bad.status_code) == (204, 400)
    assert state.store.count_events(EventQuery()) == 0
    assert list(state.store.iter_rejected(EventQuery())) == []
    assert client.get("/api/00000/click/Js79009234YU7/1/123").status_code == 204
    assert state.store.count_events(EventQuery()) == 1


@pytest.mark.parametrize(
    ("ibexa_config", "answer"),
    [
        ({}, 404),  # open: any alphanumeric id, except a tenant that authenticates its clients
        ({"EVENTTRACK_IBEXA_CUSTOMERS": ["acme"]}, 204),  # listed: the tenant takes Ibexa events
        ({"EVENTTRACK_IBEXA_CREDENTIALS": {"acme": "ibexa-secret"}}, 401),  # and with credentials, only those
    ],
)
def test_anonymous_ibexa_requests_cannot_write_into_a_tenant_with_keys(
    tmp_path: Path, ibexa_config: dict[str, Any], answer: int
) -> None:
    """Else they would add events to its profiles (the profile API reads every source)
    and stitch its users' identities with forged logins."""
    from flask_eventtrack import EventTrack
    from flask_eventtrack.keys import create_key

    app = Flask("plain")
    app.config.update(SECRET_KEY="s", EVENTTRACK_STORE_URL=f"sqlite:///{tmp_path}/e.db", **ibexa_config)
    EventTrack(app)  # the library's defaults: no EVENTTRACK_IBEXA_CUSTOMERS
    state = get_state(app)
    client = app.test_client()
    try:
        create_key(state.store, "acme", "api")
        assert client.get("/api/acme/click/attacker/1/13").status_code == answer
        assert client.get("/api/acme/login/attacker/victim@example.com").status_code == answer
        assert len(events(state, tenant="acme")) == (2 if answer == 204 else 0)
        if "EVENTTRACK_IBEXA_CUSTOMERS" not in ibexa_config:  # open: a tenant without keys takes events
            assert client.get("/api/other/click/someone/1/13").status_code == 204
        if answer == 401:
            auth = {"Authorization": "Bearer ibexa-secret"}
            assert client.get("/api/acme/click/attacker/1/13", headers=auth).status_code == 204
    finally:
        state.store.close()


def test_open_mode_refuses_the_signed_cortex_tenant_and_says_it_is_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flask_eventtrack import EventTrack

    app = Flask("plain")
    app.config.update(
        SECRET_KEY="s",
        EVENTTRACK_STORE_URL=f"sqlite:///{tmp_path}/e.db",
        EVENTTRACK_CORTEX_SIGNATURE="required",
        EVENTTRACK_CORTEX_SIGNING_KEYS=["cortex-key"],
        EVENTTRACK_CORTEX_TENANT="shop",
    )
    EventTrack(app)
    assert "EVENTTRACK_IBEXA_CUSTOMERS is empty" in caplog.text
    client = app.test_client()
    try:
        assert client.get("/api/shop/login/attacker/victim@example.com").status_code == 404
        assert client.get("/api/other/click/someone/1/13").status_code == 204
    finally:
        get_state(app).store.close()
