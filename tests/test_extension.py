"""The extension contract, the pipeline, host hooks, signals and emit()."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from marshmallow import ValidationError

from flask_eventtrack import (
    ConfigurationError,
    Event,
    EventTrack,
    Reject,
    event_received,
    event_rejected,
    event_stored,
    get_state,
)
from flask_eventtrack.events import new_event_id, new_event_ids
from flask_eventtrack.keys import create_key
from flask_eventtrack.stores import EventQuery


def make_app(tmp_path: Any, name: str = "a", **config: Any) -> Flask:
    app = Flask(name)
    app.config.update(SECRET_KEY="k", EVENTTRACK_STORE_URL=f"sqlite:///{tmp_path}/{name}.db", **config)
    return app


def test_factory_pattern_serves_several_apps(tmp_path: Any) -> None:
    track = EventTrack()
    first, second = make_app(tmp_path, "first"), make_app(tmp_path, "second")
    track.init_app(first)
    track.init_app(second)
    first.test_client().post("/cortex", json={"data": [{"user_id": "u", "type": "a"}]})
    with second.app_context():
        assert track.store.count_events(EventQuery()) == 0
    with first.app_context():
        assert track.store.count_events(EventQuery()) == 1
    assert get_state(first).store is not get_state(second).store
    assert not hasattr(track, "app")


def test_init_app_twice_is_an_error(tmp_path: Any) -> None:
    app = make_app(tmp_path)
    EventTrack(app)
    with pytest.raises(RuntimeError, match="already been registered"):
        EventTrack(app)


def test_get_state_without_init_app_says_what_to_do() -> None:
    with Flask("x").app_context(), pytest.raises(RuntimeError, match="init_app"):
        get_state()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("EVENTTRACK_MAX_CONTENT_LENGTH", "1MB"),  # FLASK_EVENTTRACK_MAX_CONTENT_LENGTH=1MB stays a string
        ("EVENTTRACK_MAX_CONTENT_LENGTH", 0),
        ("EVENTTRACK_SQLITE_BUSY_TIMEOUT", -5),
        ("EVENTTRACK_MAX_EVENTS_PER_REQUEST", 2.5),
        ("EVENTTRACK_CLOCK_SKEW", None),
        ("EVENTTRACK_RETRY_AFTER", True),
        ("EVENTTRACK_POSTGRES_CONNECT_TIMEOUT", "nan"),
        ("EVENTTRACK_POSTGRES_POOL_MIN_SIZE", 20),  # more than the maximum, 10
        ("EVENTTRACK_SQLITE_BUSY_TIMEOUT", 2**63),  # would overflow the lock's timeout on every write
        ("EVENTTRACK_CLOCK_SKEW", 10**14),  # would overflow a timedelta
        # each dialect's own numbers too
        ("EVENTTRACK_IBEXA_MAX_URI_LENGTH", "abc"),
        ("EVENTTRACK_SYNERISE_TOKEN_MAX_AGE", "1h"),
        ("EVENTTRACK_SYNERISE_READ_LIMIT", 0),  # every read would be a 400
        ("EVENTTRACK_CORTEX_SIGNATURE_MAX_AGE", "ten"),
        ("EVENTTRACK_PROFILE_EMAIL_OPEN_WINDOW", -5),
        ("EVENTTRACK_PROFILE_PAGE_SIZE", 5000),  # was silently cut to 200
    ],
)
def test_a_bad_number_setting_fails_in_init_app_not_on_every_request(
    tmp_path: Any, key: str, value: Any
) -> None:
    app = make_app(tmp_path, **{key: value})
    with pytest.raises(ConfigurationError, match=key):
        EventTrack(app)


@pytest.mark.parametrize("unset", [None, "", " ", 0, "0"])
def test_an_optional_number_left_empty_or_0_is_unset(tmp_path: Any, unset: Any) -> None:
    # FLASK_EVENTTRACK_CORTEX_SIGNATURE_MAX_AGE= (empty) reaches the config as ""
    app = make_app(tmp_path, EVENTTRACK_CORTEX_SIGNATURE_MAX_AGE=unset)
    EventTrack(app)
    assert app.config["EVENTTRACK_CORTEX_SIGNATURE_MAX_AGE"] is None


@pytest.mark.parametrize(
    ("text", "meant"),
    [("False", False), ("false", False), ("0", False), ("no", False), ("True", True), ("on", True)],
)
def test_true_false_settings_from_the_environment_mean_what_they_say(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, text: str, meant: bool
) -> None:
    """``FLASK_EVENTTRACK_PROFILE_KEEP_EMAIL=False`` is the string "False" (not JSON): taken
    for True, raw e-mails would be written to disk."""
    from example_app import create_app

    monkeypatch.setenv("FLASK_EVENTTRACK_PROFILE_KEEP_EMAIL", text)
    app = create_app({"SECRET_KEY": "s", "EVENTTRACK_STORE_URL": f"sqlite:///{tmp_path}/e.db"})
    try:
        assert app.config["EVENTTRACK_PROFILE_KEEP_EMAIL"] is meant
        key = create_key(get_state(app).store, "acme").secret
        response = app.test_client().post(
            "/v1/user", json={"user": {"email": "jan@example.com"}}, headers={"Authorization": key}
        )
        assert response.status_code == 200
        (row,) = get_state(app).store.conn.execute("SELECT email FROM profiles").fetchall()
        assert (row[0] == "jan@example.com") is meant
    finally:
        get_state(app).store.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("EVENTTRACK_PROFILE_KEEP_EMAIL", "maybe"),
        ("EVENTTRACK_HASH_USER_IDS", "nope"),
        ("EVENTTRACK_PROFILE_BOT_FILTER", 2),
        ("EVENTTRACK_IBEXA_STRING_ITEM_IDS", None),
    ],
)
def test_a_setting_that_is_not_clearly_true_or_false_fails_in_init_app(
    tmp_path: Any, key: str, value: Any
) -> None:
    app = make_app(tmp_path, **{key: value})
    with pytest.raises(ConfigurationError, match=f"{key} must be True or False"):
        EventTrack(app)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FLASK_EVENTTRACK_HASH_KEY", "12345"),
        ("FLASK_SECRET_KEY", "123456"),
        ("FLASK_EVENTTRACK_CORTEX_TENANT", "42"),
        ("FLASK_EVENTTRACK_IBEXA_CUSTOMERS", "12345"),
    ],
)
def test_text_settings_that_look_like_numbers_in_the_environment_are_text(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Flask reads ``FLASK_*`` variables as JSON, so ``12345`` arrives as a number: a
    secret, a tenant or a customer id made of digits is still that text, not a TypeError."""
    from example_app import create_app

    monkeypatch.setenv("FLASK_SECRET_KEY", "s")
    monkeypatch.setenv(variable, value)
    app = create_app({"EVENTTRACK_STORE_URL": f"sqlite:///{tmp_path}/e.db"})
    try:
        state = get_state(app)
        key = variable.removeprefix("FLASK_")
        if key == "EVENTTRACK_IBEXA_CUSTOMERS":
            assert app.extensions["eventtrack_ibexa"].customers == {value}
        elif key in ("EVENTTRACK_HASH_KEY", "SECRET_KEY"):
            from flask_eventtrack.signing import make_user_hasher

            assert state.pipeline.user_key("alice") == make_user_hasher(value)("alice")
            if key == "SECRET_KEY":  # it signs Synerise's bearer tokens (and Flask's sessions) too
                api_key = create_key(state.store, "acme", "api").secret
                response = app.test_client().post("/v4/auth/token", json={"apiKey": api_key})
                assert response.status_code == 200 and app.config["SECRET_KEY"] == value
        else:
            assert state.config[key] == value
    finally:
        get_state(app).store.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("EVENTTRACK_HASH_KEY", False),
        ("EVENTTRACK_SQLITE_SYNCHRONOUS", None),
        ("EVENTTRACK_POSTGRES_SCHEMA", None),
        ("EVENTTRACK_CORTEX_TENANT", ["a"]),
        ("EVENTTRACK_CORTEX_TENANT", b"acme"),  # only a secret may be bytes
        ("EVENTTRACK_STORE_URL", 5.5),
    ],
)
def test_a_text_setting_that_is_not_text_fails_in_init_app(tmp_path: Any, key: str, value: Any) -> None:
    """``FLASK_EVENTTRACK_POSTGRES_SCHEMA=null`` would have been a schema named "None"."""
    app = make_app(tmp_path)
    app.config[key] = value
    with pytest.raises(ConfigurationError, match=f"{key} must be text, not"):
        EventTrack(app)


def test_a_url_prefix_of_none_mounts_the_dialect_at_the_root(tmp_path: Any) -> None:
    app = make_app(tmp_path, EVENTTRACK_CORTEX_URL_PREFIX=None)
    EventTrack(app)
    try:
        assert (
            app.test_client().post("/", json={"data": [{"user_id": "u", "type": "click"}]}).status_code == 200
        )
        assert get_state(app).store.count_events(EventQuery()) == 1
    finally:
        get_state(app).store.close()


def test_number_settings_given_as_text_are_converted_once(tmp_path: Any) -> None:
    app = make_app(
        tmp_path, EVENTTRACK_MAX_CONTENT_LENGTH=" 2048 ", EVENTTRACK_POSTGRES_CONNECT_TIMEOUT="2.5"
    )
    EventTrack(app)
    limit = "EVENTTRACK_MAX_CONTENT_LENGTH"
    assert app.config[limit] == get_state(app).config[limit] == 2048
    assert app.config["EVENTTRACK_POSTGRES_CONNECT_TIMEOUT"] == 2.5
    assert app.config["EVENTTRACK_CORTEX_SIGNATURE_MAX_AGE"] is None  # optional, unset: stays None
    response = app.test_client().post("/cortex", data=b"x" * 2049, content_type="application/json")
    assert response.status_code == 200  # Cortex answers 200 and logs what it refused
    with app.app_context():
        (refused,) = get_state(app).store.iter_rejected(EventQuery())
    assert refused.reason == "size_violation" and "limit is 2048" in refused.message


def test_defaults_are_visible_in_app_config(tmp_path: Any) -> None:
    app = make_app(tmp_path)
    EventTrack(app)
    assert app.config["EVENTTRACK_MAX_EVENTS_PER_REQUEST"] == 1000
    assert app.config["EVENTTRACK_CORTEX_URL_PREFIX"] == "/cortex"


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY or EVENTTRACK_HASH_KEY"),
        ({"EVENTTRACK_DIALECTS": "cortex,snowplow"}, r"unknown dialects \['snowplow'\]"),
        ({"EVENTTRACK_STORE_URL": "redis://x"}, "Unknown store URL scheme"),
        ({"EVENTTRACK_CORTEX_SIGNATURE": "sometimes"}, "'off' or 'required'"),
        ({"EVENTTRACK_CORTEX_SIGNATURE": "required"}, "SIGNING_KEYS is empty"),
    ],
)
def test_configuration_errors_happen_in_init_app(tmp_path: Any, config: dict[str, Any], words: str) -> None:
    app = make_app(tmp_path)
    app.config.update(config)
    with pytest.raises(ConfigurationError, match=words):
        EventTrack(app)


def test_dialects_can_be_switched_off_and_prefixes_moved(tmp_path: Any) -> None:
    app = make_app(tmp_path, EVENTTRACK_DIALECTS="cortex", EVENTTRACK_CORTEX_URL_PREFIX="/t/cortex")
    EventTrack(app)
    client = app.test_client()
    assert client.post("/cortex", json={"data": []}).status_code == 404
    assert client.post("/t/cortex", json={"data": []}).status_code == 200
    assert [bp for bp in app.blueprints] == ["eventtrack_cortex"]


def test_default_store_is_sqlite_in_the_instance_folder(tmp_path: Any) -> None:
    app = Flask("inst", instance_path=str(tmp_path / "inst"))
    app.config["SECRET_KEY"] = "k"
    EventTrack(app)
    assert app.config["EVENTTRACK_STORE_URL"] == f"sqlite:///{tmp_path}/inst/eventtrack.db"
    assert (tmp_path / "inst" / "eventtrack.db").exists()


def test_raw_user_ids_can_be_kept_when_the_host_opts_out(tmp_path: Any) -> None:
    app = make_app(tmp_path, EVENTTRACK_HASH_USER_IDS=False)
    EventTrack(app)
    app.test_client().post("/cortex", json={"data": [{"user_id": "Alice", "type": "t"}]})
    (event,) = get_state(app).store.iter_events(EventQuery())
    assert event.user == "Alice"


def test_user_hash_is_keyed_stable_and_case_sensitive(tmp_path: Any) -> None:
    one, two = make_app(tmp_path, "one"), make_app(tmp_path, "two")
    two.config["SECRET_KEY"] = "another"
    EventTrack(one), EventTrack(two)
    key_one, key_two = get_state(one).pipeline, get_state(two).pipeline
    assert key_one.user_key("alice") == key_one.user_key("alice")
    assert key_one.user_key("alice") != key_one.user_key("Alice")
    assert key_one.user_key("alice") != key_two.user_key("alice")
    assert len(key_one.user_key("alice")) == 32


def test_user_hash_is_the_same_for_ids_remembered_or_not(tmp_path: Any) -> None:
    """Stored keys must not change between releases or with an id's length: the
    HMAC-SHA256 of the id under sha256("eventtrack.user-id:" + key), 32 hex chars."""
    app = make_app(tmp_path)
    EventTrack(app)
    pipeline = get_state(app).pipeline
    secret = hashlib.sha256(b"eventtrack.user-id:k").digest()
    for user_id in ("alice", "x" * 128, "x" * 129, "y" * 5000, "\u00e9\ud800"):
        expected = hmac.new(secret, user_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]
        assert pipeline.user_key(user_id) == expected
        assert pipeline.user_key(user_id) == expected  # a second time: from the cache where it is kept


# -- hooks and signals ----------------------------------------------------------------


def test_hooks_run_in_order_and_can_change_reject_or_drop(tmp_path: Any) -> None:
    track = EventTrack()
    calls: list[str] = []

    @track.enrich
    def add_country(event: Event) -> None:
        calls.append("enrich")
        event.props["country"] = "NL"

    @track.rule
    def no_tests(event: Event) -> None:
        calls.append("rule")
        if event.type == "test":
            raise Reject("test_traffic", "test events are not recorded")

    @track.before_store
    def drop_internal(event: Event) -> Event | None:
        calls.append("before")
        return None if event.props.get("internal") else event

    stored: list[str] = []

    @track.after_store
    def remember(event: Event) -> None:
        stored.append(event.type)

    app = make_app(tmp_path)
    track.init_app(app)
    data = [
        {"user_id": "u", "type": "click"},
        {"user_id": "u", "type": "test"},
        {"user_id": "u", "type": "view", "internal": True},
    ]
    app.test_client().post("/cortex", json={"data": data})
    store = get_state(app).store
    (event,) = store.iter_events(EventQuery())
    assert event.props == {"country": "NL"}
    assert stored == ["click"]
    reasons = {r.type: (r.reason, r.message) for r in store.iter_rejected(EventQuery())}
    assert reasons["test"] == ("test_traffic", "test events are not recorded")
    assert reasons["view"][0] == "dropped"
    assert calls[:3] == ["enrich", "rule", "before"]


def test_hooks_never_see_raw_user_ids(tmp_path: Any) -> None:
    track = EventTrack()
    seen: list[str | None] = []
    track.before_store(lambda e: seen.append(e.user) or e)
    app = make_app(tmp_path)
    track.init_app(app)
    app.test_client().post("/cortex", json={"data": [{"user_id": "raw-id", "type": "t"}]})
    assert seen == [get_state(app).pipeline.user_key("raw-id")]


def test_signals_are_sent_with_the_app_as_sender(tmp_path: Any) -> None:
    app = make_app(tmp_path)
    EventTrack(app)
    got: dict[str, Any] = {}

    def on_received(sender: Any, events: list[Event]) -> None:
        got["received"] = (sender, len(events))

    def on_stored(sender: Any, events: list[Event]) -> None:
        got["stored"] = (sender, [e.type for e in events])

    def on_rejected(sender: Any, rejections: list[Any]) -> None:
        got["rejected"] = (sender, [r.reason for r in rejections])

    with (
        event_received.connected_to(on_received),
        event_stored.connected_to(on_stored),
        event_rejected.connected_to(on_rejected),
    ):
        app.test_client().post("/cortex", json={"data": [{"user_id": "u", "type": "ok"}, {"type": 1}]})
    assert got["received"] == (app, 1)
    assert got["stored"] == (app, ["ok"])
    assert got["rejected"] == (app, ["schema_violation"])


# -- emit --------------------------------------------------------------------------------


def test_emit_goes_through_the_same_pipeline(tmp_path: Any) -> None:
    track = EventTrack()
    track.enrich(lambda e: e.props.setdefault("via", "hook"))
    app = make_app(tmp_path)
    track.init_app(app)
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    with app.app_context():
        result = track.emit("signup", user="42", props={"plan": "pro"}, occurred_at=when)
        (event,) = track.store.iter_events(EventQuery())
        assert event.user == track.user_key("42") != "42"
    assert result.stored[0].id == event.id
    assert event.source == "app" and event.tenant == "default"
    assert event.props == {"plan": "pro", "via": "hook"}
    assert event.occurred_at == when


def test_emit_validates(tmp_path: Any) -> None:
    track = EventTrack()
    app = make_app(tmp_path)
    track.init_app(app)
    with app.app_context():
        with pytest.raises(ValidationError) as info:
            track.emit("", user="u")
        assert "type" in info.value.messages
        with pytest.raises(ValidationError):
            track.emit("t", occurred_at=datetime(2024, 1, 1))  # naive: no offset


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("-inf"), Decimal("1.5"), datetime(2024, 1, 1), "\ud800", "a\x00b", {"set": {1}}],
)
def test_emit_refuses_props_no_store_can_keep(tmp_path: Any, value: Any) -> None:
    track = EventTrack()
    app = make_app(tmp_path)
    track.init_app(app)
    with app.app_context():
        with pytest.raises(ValidationError) as info:
            track.emit("score", user="u", props={"value": value})
        assert "props" in info.value.messages
        assert track.store.count_events(EventQuery()) == 0


def test_emit_stores_a_local_time_as_utc_even_in_a_dst_fold(tmp_path: Any) -> None:
    track = EventTrack()
    app = make_app(tmp_path)
    track.init_app(app)
    second = datetime(2024, 10, 27, 2, 30, tzinfo=ZoneInfo("Europe/Berlin"), fold=1)  # = 01:30Z
    with app.app_context():
        (sent,) = track.emit("a", user="u", occurred_at=second).stored
        (back,) = track.store.iter_events(EventQuery())
    assert sent.occurred_at == back.occurred_at == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)
    assert sent.occurred_at.tzinfo is UTC  # type: ignore[union-attr]


def test_a_hook_that_makes_an_event_unstorable_rejects_that_event_only(tmp_path: Any) -> None:
    track = EventTrack()

    @track.enrich
    def score(event: Event) -> None:
        if event.type == "bad":
            event.props["score"] = float("nan")

    app = make_app(tmp_path)
    track.init_app(app)
    body = {"data": [{"user_id": "u", "type": "good"}, {"user_id": "u", "type": "bad"}]}
    assert app.test_client().post("/cortex", json=body).status_code == 200
    with app.app_context():
        assert [e.type for e in track.store.iter_events(EventQuery())] == ["good"]
        (rejected,) = track.store.iter_rejected(EventQuery())
    assert rejected.reason == "schema_violation" and "not JSON compliant" in rejected.message


def _rename_type(event: Event) -> None:
    event.type = {"bad": None}.get(event.type, event.type)  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_rename_type, "type must be non-empty text, not NoneType"),
        (lambda e: setattr(e, "item_id", Decimal(7)), "item_id must be text or None, not Decimal"),
        (lambda e: setattr(e, "occurred_at", "yesterday"), "occurred_at must be a datetime"),
        (lambda e: e.props.update({1: "a"}), "props must be a dict with text keys"),
        (lambda e: setattr(e, "props", None), "props must be a dict with text keys"),
        (lambda e: setattr(e, "received_at", "now"), "received_at must be a datetime"),
        (lambda e: setattr(e, "once_per", 20), "once_per must be a timedelta or None"),
        # An identity link from no one: SQLite kept a row with a NULL user, PostgreSQL raised.
        (lambda e: (setattr(e, "links_to", "other"), setattr(e, "user", None)), "links_to needs a user"),
        (
            lambda e: setattr(e, "occurred_at", datetime(1, 1, 1, tzinfo=ZoneInfo("Europe/Paris"))),
            "occurred_at is out of range once converted to UTC",
        ),
    ],
)
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_hook_that_breaks_a_field_rejects_that_event_only(
    config: dict[str, Any], request: pytest.FixtureRequest, store: str, change: Any, words: str
) -> None:
    """Not a 503 the client would retry forever (SQLite's NOT NULL), not a 500."""
    from _pg import on_store

    track = EventTrack()

    @track.enrich
    def hook(event: Event) -> None:
        if event.type == "bad":
            change(event)

    app = Flask("hooked")
    app.config.update(on_store(store, config, request))
    track.init_app(app)
    body = {"data": [{"user_id": "u", "type": "good"}, {"user_id": "u", "type": "bad"}]}
    try:
        assert app.test_client().post("/cortex", json=body).status_code == 200
        with app.app_context():
            assert [e.type for e in track.store.iter_events(EventQuery())] == ["good"]
            (rejected,) = track.store.iter_rejected(EventQuery())
        assert rejected.reason == "schema_violation" and words in rejected.message
    finally:
        get_state(app).store.close()


def test_text_and_dict_subclasses_from_a_hook_are_stored(tmp_path: Any) -> None:
    """A ``StrEnum`` member is text and an ``OrderedDict`` a dict: the shape check takes them."""
    from collections import OrderedDict
    from enum import StrEnum

    class Kind(StrEnum):
        PRODUCT = "product"

    track = EventTrack()

    @track.enrich
    def hook(event: Event) -> None:
        event.item_type = Kind.PRODUCT
        event.props = OrderedDict([(Kind.PRODUCT, 1)])

    app = make_app(tmp_path)
    track.init_app(app)
    assert (
        app.test_client().post("/cortex", json={"data": [{"user_id": "u", "type": "t"}]}).status_code == 200
    )
    with app.app_context():
        (event,) = track.store.iter_events(EventQuery())
        assert list(track.store.iter_rejected(EventQuery())) == []
    assert event.item_type == "product" and event.props == {"product": 1}


@pytest.mark.parametrize("kind", ["enrich", "rule", "before_store"])
def test_a_hook_that_raises_rejects_that_event_only(
    tmp_path: Any, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    track = EventTrack()

    def hook(event: Event) -> Event:
        if event.type == "bad":
            event.props["cents"] = int(float(event.props["price"]) * 100)  # a host bug meets odd input
        return event

    getattr(track, kind)(hook)
    app = make_app(tmp_path)
    track.init_app(app)
    body = {
        "data": [{"user_id": "u", "type": "good"}, {"user_id": "secret-id", "type": "bad", "price": "n/a"}]
    }
    assert app.test_client().post("/cortex", json=body).status_code == 200
    with app.app_context():
        assert [e.type for e in track.store.iter_events(EventQuery())] == ["good"]
        (rejected,) = track.store.iter_rejected(EventQuery())
    assert rejected.reason == "hook_error" and rejected.message == "a host hook raised ValueError"
    assert "a host hook failed" in caplog.text  # logged with its traceback, for the host to fix


def test_an_event_received_receiver_that_raises_is_logged_not_a_500(tmp_path: Any) -> None:
    from flask_eventtrack.signals import event_received

    track = EventTrack()
    app = make_app(tmp_path)
    track.init_app(app)

    def receiver(sender: Any, events: Any) -> None:
        raise RuntimeError("receiver bug")

    with event_received.connected_to(receiver):
        response = app.test_client().post("/cortex", json={"data": [{"user_id": "u", "type": "t"}]})
    assert response.status_code == 200
    with app.app_context():
        assert len(list(track.store.iter_events(EventQuery()))) == 1


def test_future_time_within_clock_skew_is_kept(tmp_path: Any) -> None:
    track = EventTrack()
    app = make_app(tmp_path, EVENTTRACK_CLOCK_SKEW=600)
    track.init_app(app)
    soon = datetime.now(UTC) + timedelta(seconds=300)
    with app.app_context():
        (event,) = track.emit("t", occurred_at=soon).stored
    assert event.occurred_at is not None and event.occurred_at > event.received_at  # type: ignore[operator]
    assert event.original_time is None


def test_event_ids_are_uuid7_and_time_ordered() -> None:
    import uuid

    # single ids and batches (one past the 4096 ids a millisecond's counter holds) interleaved
    ids = [new_event_id() for _ in range(2000)] + new_event_ids(10_000) + [new_event_id() for _ in range(10)]
    ids += new_event_ids(3) + new_event_ids(0)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids) == 12_013
    parsed = [uuid.UUID(i) for i in ids]
    assert {u.version for u in parsed} == {7} and {u.variant for u in parsed} == {uuid.RFC_4122}
    assert len({u.int & (2**62 - 1) for u in parsed}) == len(ids)  # the random bits differ too


def test_event_ids_stay_unique_and_ordered_across_threads() -> None:
    import threading

    results: list[list[str]] = []

    def work() -> None:
        mine: list[str] = []
        for size in (1, 700, 3, 5000, 1) * 4:
            mine += new_event_ids(size)
        results.append(mine)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(ids == sorted(ids) for ids in results)
    everything = [i for ids in results for i in ids]
    assert len(set(everything)) == len(everything) == 6 * 4 * 5705
    # the counter ranges the threads reserved never overlap: ids without their random part are unique too
    assert len({i[:18] for i in everything}) == len(everything)


def test_a_failing_after_store_hook_or_receiver_does_not_undo_the_answer(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    track = EventTrack()

    @track.after_store
    def boom(event: Event) -> None:
        raise RuntimeError("host hook bug")

    app = make_app(tmp_path)
    track.init_app(app)

    def bad_receiver(sender: Any, **kwargs: Any) -> None:
        raise ValueError("receiver bug")

    body = {"data": [{"user_id": "u", "type": "purchase"}]}
    with event_stored.connected_to(bad_receiver):
        response = app.test_client().post("/cortex", json=body)
    assert response.status_code == 200  # committed, so acknowledged: a retry would duplicate it
    assert get_state(app).store.count_events(EventQuery()) == 1
    failures = [r for r in caplog.records if "failed after the commit" in r.getMessage()]
    assert len(failures) == 2 and {type(r.exc_info[1]) for r in failures} == {RuntimeError, ValueError}


def test_definition_parameter_names_are_capped(tmp_path: Any) -> None:
    from flask_eventtrack.stores import MAX_DEFINITION_PARAMS

    app = make_app(tmp_path)
    EventTrack(app)
    client = app.test_client()
    for batch in range(3):
        keys = {f"k{batch}_{i:04d}": 1 for i in range(200)}
        client.post("/cortex", json={"data": [{"user_id": "u", "type": "spam", **keys}]})
    (definition,) = get_state(app).store.definitions()
    assert len(definition["params"]) == MAX_DEFINITION_PARAMS
    assert definition["count"] == 3  # every event is still stored
