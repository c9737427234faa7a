"""The compact encoder the stores use must write exactly what ``json.dumps`` writes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from flask_eventtrack._json import ascii_dumps, dumps, escapes_nul

VALUES: list[Any] = [
    {},
    [],
    {"device": "mobile", "price": 9.99, "n": 3, "ok": True, "none": None},
    {"nested": {"list": [1, 2.5, "x", {"deep": [None, False]}]}},
    {"text": 'żółć — 日本語 \u2028 "quoted" \\ \n\t \x01'},
    {"big": 2**80, "neg": -(2**70), "float": 1e-300, "exp": 1.5e300},
    {"1": "key order is kept", "0": "not sorted"},
    "top-level string",
    12,
    None,
]


@pytest.mark.parametrize("value", VALUES)
def test_same_text_as_json_dumps(value: Any) -> None:
    assert dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert ascii_dumps(value) == json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_raise_value_error_like_json_dumps_with_allow_nan_false(number: float) -> None:
    # NaN is not JSON: a store must never write it (PostgreSQL's jsonb refuses it, exports break).
    for encode in (dumps, ascii_dumps):
        with pytest.raises(ValueError, match="not JSON compliant"):
            encode({"nested": [number]})


def test_unserializable_values_raise_type_error_like_json_dumps() -> None:
    with pytest.raises(TypeError, match="datetime is not JSON serializable"):
        dumps({"at": datetime(2024, 1, 1)})


@pytest.mark.parametrize(
    ("value", "has_nul"),
    [("a\x00b", True), ({"k\x00": 1}, True), ("\\u0000 is text", False), ("\\\x00", True), ("u0000", False)],
)
def test_escapes_nul_finds_a_nul_in_encoded_text_only(value: Any, has_nul: bool) -> None:
    for encode in (dumps, ascii_dumps):
        assert escapes_nul(encode(value)) is has_nul
