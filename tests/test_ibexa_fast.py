"""Ibexa fast path: ``FastLoader`` and the request shortcuts accept exactly what the
marshmallow schemas and the full URI parsing accept, and give the same results."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from marshmallow import ValidationError

from flask_eventtrack import EventQuery
from flask_eventtrack.dialects.ibexa import IbexaReader
from flask_eventtrack.extension import EventTrackState
from flask_eventtrack.schemas.ibexa import (
    EVENT_CODES,
    MAX_EXTRA_PARAMS,
    MAX_PARAM_NAME,
    FastLoader,
    make_ibexa_schemas,
)

MAX_LENGTH = 16  # small, so that the length limits are easy to cross
MAX_ITEMS = 3

#: Values tried in every field: ids at and across the bounds, leading zeros,
#: signs, spaces, other digits, control characters, lengths around the limit.
VALUES = [
    "0",
    "1",
    "2",
    "5",
    "007",
    "0000000000001",
    "000000000001",
    "100",
    "101",
    "2147483647",
    "2147483648",
    "02147483647",
    "999999999999",
    "9999999999999",
    "-1",
    "+5",
    " 5",
    "5 ",
    "5.0",
    "1e3",
    "0x10",
    "٣",
    "²",
    "５",
    "",
    " ",
    "abc",
    "ABC",
    "é",
    "u@example.com",
    "a/b",
    "a,b",
    "a\\b",
    "a\x00b",
    "a\x1fb",
    "a\x7fb",
    "a\x80b",
    "tab\there",
    "x" * MAX_LENGTH,
    "x" * (MAX_LENGTH + 1),
    "1,2",
    "1,2,3",
    "1,2,3,4",
    "1,1,2",
    "2,1,2",
    "1,,2",
    "1,",
    ",1",
    "1,abc",
    "007,7",
]
FULLPRICES = [
    "12.45EUR",
    "456JPY",
    "12.45eur",
    "12.45Eur",
    "0.0USD",
    "007.50EUR",
    "12.EUR",
    ".5EUR",
    "12.123456EUR",
    "12.1234567EUR",
    "123456789012345EUR",
    "1234567890123456EUR",
    "12.45 EUR",
    "12,45EUR",
    "EUR12.45",
    "12.45",
    "-1EUR",
    "12.45XXX",
    "12.45XTS",
    "12.45EURO",
    "12.45EU",
    "",
    "1e3EUR",
    "٣EUR",
]
CATEGORY_PATHS = [
    "/Shoes/Children/",
    "Shoes",
    "/",
    "//",
    "",
    "a\x01",
    "x" * MAX_LENGTH,
    "/" + "x" * MAX_LENGTH,
]
EXTRAS: list[dict[str, str]] = [
    {"foo": "bar"},
    {"foo": ""},
    {"foo": "a\x01"},
    {"foo": "x" * (MAX_LENGTH + 1)},
    {"x" * MAX_PARAM_NAME: "1"},
    {"x" * (MAX_PARAM_NAME + 1): "1"},
    {"a\x02": "1"},
    {"": "1"},
    {"itemids": "1"},
    {f"p{i}": "v" for i in range(MAX_EXTRA_PARAMS)},
    {f"p{i}": "v" for i in range(MAX_EXTRA_PARAMS + 1)},
]
#: The documented query parameters of each event code.
PARAMS: dict[str, list[str]] = {
    "click": ["categorypath"],
    "consume": ["percentage"],
    "buy": ["quantity", "fullprice"],
    "rate": ["rating"],
    "rendered": ["scenario"],
    "clickrecommended": ["scenario"],
    "triggeropened": ["triggername"],
    "clicktriggered": ["triggername"],
}
VALID = {
    "userid": "u1",
    "sourceuserid": "u1",
    "targetuserid": "u2",
    "itemtypeid": "1",
    "itemid": "5",
    "itemids": "5,6",
    "scenario": "also_bought",
    "triggername": "t",
    "categorypath": "/a/b/",
    "percentage": "60",
    "rating": "100",
    "quantity": "2",
    "fullprice": "12.45EUR",
}


def samples(code: str, fields: list[str]) -> list[dict[str, Any]]:
    """The valid request, each field missing, each field set to every tricky value, extras."""
    base: dict[str, Any] = {name: VALID[name] for name in fields}
    found = [base]
    for name in fields:
        found.append({key: value for key, value in base.items() if key != name})
        values = {"fullprice": FULLPRICES, "categorypath": CATEGORY_PATHS}.get(name, []) + VALUES
        found += [{**base, name: value} for value in values]
    found += [{**base, **extra} for extra in EXTRAS]
    found.append({**base, "foo": 5})  # not text: never sent by the dialect, but must not pass
    return found


@pytest.mark.parametrize("string_item_ids", [False, True])
def test_fast_loader_accepts_exactly_what_the_schema_accepts(string_item_ids: bool) -> None:
    schemas = make_ibexa_schemas(string_item_ids=string_item_ids, max_length=MAX_LENGTH, max_items=MAX_ITEMS)
    assert set(schemas) == set(EVENT_CODES)
    checked = accepted = 0
    mismatches = []
    for code, schema in schemas.items():
        fast = FastLoader(schema)

        def declared(loaded: dict[str, Any], schema: Any = schema) -> list[str]:
            """The schema's own keys, in order (unknown keys follow in no set order)."""
            return [key for key in loaded if key in schema.fields]

        fields = [name for name in schema.fields if name not in PARAMS.get(code, [])] + PARAMS.get(code, [])
        assert set(fields) == set(schema.fields), code  # every field of the schema is exercised
        for data in samples(code, fields):
            try:
                slow = schema.load(data)
            except ValidationError:
                slow = None
            quick = fast.load(data)
            checked += 1
            accepted += slow is not None
            if quick != slow or (quick is not None and declared(quick) != declared(slow)):
                mismatches.append((code, data, quick, slow))
    assert mismatches == []
    assert checked > 2000 and 300 < accepted < checked - 300  # both sides of the line were tried


def test_fast_loader_converts_like_the_schema() -> None:
    """Spot checks of the shared output, so that agreeing on a wrong value would show."""
    schemas = make_ibexa_schemas(string_item_ids=False, max_length=MAX_LENGTH, max_items=MAX_ITEMS)
    buy = FastLoader(schemas["buy"]).load(
        {"userid": "u", "itemtypeid": "01", "itemid": "2147483647", "fullprice": "007.50eur", "foo": ""}
    )
    assert buy == {
        "userid": "u",
        "itemtypeid": "1",
        "itemid": "2147483647",
        "quantity": 1,
        "fullprice": {"price": "7.50", "currency": "EUR"},
        "foo": "",
    }
    rendered = FastLoader(schemas["rendered"]).load({"userid": "u", "itemtypeid": "1", "itemids": "7,007,3"})
    assert rendered == {"userid": "u", "itemtypeid": "1", "itemids": ["7", "3"]}


def test_fast_loader_refuses_schema_features_it_does_not_mirror() -> None:
    from marshmallow import Schema, fields

    with pytest.raises(TypeError):
        FastLoader(Schema.from_dict({"userid": fields.String()})())


# -- request level: the shortcuts against the full parsing they skip ---------------------------


def old_segments(rest: str) -> list[str]:
    """The segments as computed before the shortcut: always re-parse the raw URI."""
    decoded = rest.split("/")
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    full = request.script_root + request.path
    if not raw or not full.endswith(rest):
        return decoded
    head = full[: len(full) - len(rest)]
    parts = [unquote(p, errors="replace") for p in urlsplit(str(raw)).path.split("/")[head.count("/") :]]
    return parts if "/".join(parts) == rest else decoded


def old_has_backslash(uri: str) -> bool:
    """The backslash check as written before: through the parsed query parameters."""
    if "\\" in uri or "%5c" in uri.lower():
        return True
    values = request.args.items(multi=True)
    return "\\" in request.script_root + request.path or any("\\" in k or "\\" in v for k, v in values)


RAW_PATHS = [
    "/api/00000/click/u/1/5",
    "/api/00000/click/u%2Fx/1/5",
    "/api/00000/click/u%252F/1/5",
    "/api/00000/click/%75/1/5",
    "/api/00000/click/u;x=1/1/5",
    "/api/00000/click/u@x.com/1/5",
    "/api/00000/click/u+x/1/5",
    "/api/00000/click/u#f%2F/1/5",
    "/api/00000/click/u/1/5/",
    "/api/00000/click//1/5",
    "//api/00000/click/u/1/5",
    "http://example.com/api/00000/click/u/1/5",
    "/api/00000/click/u%ZZ/1/5",
    "/api/00000/click/%C3%A9/1/5",
    "/api/00000/rendered/u/1/5,6",
]
QUERIES = ["", "a=1", "a=%2F", "a=%5C", "a=%5c", "a=\\", "%5C=1", "a=1&b", "a=+%2B", "a=%255C", "a=%zz"]


@pytest.mark.parametrize("raw_path", RAW_PATHS)
@pytest.mark.parametrize("raw_key", ["RAW_URI", "REQUEST_URI", None])
def test_segment_and_backslash_shortcuts_match_full_parsing(
    app: Flask, state: EventTrackState, raw_path: str, raw_key: str | None
) -> None:
    reader = IbexaReader(state)
    path_info = unquote(urlsplit(raw_path).path, encoding="latin-1")
    rest = path_info.split("/click/", 1)[-1].split("/rendered/", 1)[-1]
    for query in QUERIES:
        raw = raw_path + (f"?{query}" if query else "")
        environ = {"PATH_INFO": path_info, "QUERY_STRING": query, "RAW_URI": "", "REQUEST_URI": ""}
        if raw_key:
            environ[raw_key] = raw
        with app.test_request_context("/", environ_overrides=environ):
            assert reader.segments(rest, request) == old_segments(rest), raw
            uri = reader.raw_uri(request)
            assert reader.has_backslash(request, uri) == old_has_backslash(uri), raw


def test_backslash_check_covers_the_decoded_query(app: Flask, state: EventTrackState) -> None:
    """A server whose raw URI and query string disagree: the decoded query is still checked."""
    reader = IbexaReader(state)
    environ = {"RAW_URI": "/api/00000/click/u/1/5", "QUERY_STRING": "a=%5C"}
    with app.test_request_context("/api/00000/click/u/1/5", environ_overrides=environ):
        assert reader.has_backslash(request, reader.raw_uri(request))


def test_valid_requests_do_not_need_the_schema(
    client: FlaskClient, state: EventTrackState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The common case takes the fast path; the schema only runs for refusals."""
    settings = client.application.extensions["eventtrack_ibexa"]
    calls: list[str] = []

    def counting(code: str, load: Any) -> Any:
        def counted(data: Any) -> Any:
            calls.append(code)
            return load(data)

        return counted

    for code, schema in settings.schemas.items():
        monkeypatch.setattr(schema, "load", counting(code, schema.load))
    urls = [
        "/api/00000/click/u%40x.com/1/5?categorypath=%2FShoes%2F",
        "/api/00000/buy/u/1/5?fullprice=12.45EUR&quantity=2&foo=bar",
        "/api/00000/rendered/u/1/5,6,5?scenario=s",
        "/api/00000/login/a/b",
        "/api/00000/triggeropened/u?triggername=t",
    ]
    for url in urls:
        assert client.get(url).status_code == 204, url
    assert calls == []
    assert client.get("/api/00000/click/u/1/0").status_code == 400
    assert calls == ["click"]
    assert state.store.count_events(EventQuery(source="ibexa")) == 6  # rendered 5,6,5: two


def test_raw_non_utf8_query_bytes_are_a_400(client: FlaskClient, state: EventTrackState) -> None:
    """A server may pass raw bytes on (latin-1 in the environ): a clear 400, not a 500."""
    uri = "/api/00000/click/u/1/5?a=\xff"
    response = client.get(
        "/api/00000/click/u/1/5", environ_overrides={"QUERY_STRING": "a=\xff", "RAW_URI": uri}
    )
    assert response.status_code == 400
    assert "UTF-8" in response.get_data(as_text=True)
    assert state.store.count_events(EventQuery(source="ibexa")) == 0
    (rejection,) = state.store.iter_rejected(EventQuery(source="ibexa"))
    assert "UTF-8" in rejection.message
