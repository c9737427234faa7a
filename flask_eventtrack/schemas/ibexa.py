"""Ibexa Personalization tracking API: one schema per event code.

Every value arrives as text (URL path segments and query parameters), so the
fields here parse text strictly: ``"+5"``, ``" 5"`` or ``"5.0"`` are not an
item id. Messages are written for people: the dialect sends them back as the
plain-text body of a 400, as the vendor does.

Each field keeps all of its checks in ``parse``, and :class:`FastLoader` runs
those same ``parse`` methods without marshmallow's per-load machinery: the
dialect tries it first and falls back to ``schema.load`` (for the messages)
whenever it returns None. ``tests/test_ibexa_fast.py`` checks both agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar, cast

from marshmallow import INCLUDE, Schema, ValidationError, fields, missing, validates_schema

__all__ = [
    "CURRENCIES",
    "FastLoader",
    "MAX_ID",
    "PATH_PARAMS",
    "make_ibexa_schemas",
]

#: Largest item type / item id the vendor accepts (a signed 32-bit integer).
MAX_ID = 2_147_483_647
#: Most extra (undocumented) query parameters kept per request, and their name length.
MAX_EXTRA_PARAMS = 20
MAX_PARAM_NAME = 128
#: Names that only exist in the path: a query parameter must not override them
#: (and a raw user id must not slip into ``props`` as ``?userid=``).
PATH_PARAMS = frozenset(
    {"customerid", "userid", "sourceuserid", "targetuserid", "itemtypeid", "itemid", "itemids"}
)

#: Active ISO 4217 alphabetic codes (without ``XXX`` "no currency" and ``XTS`` "testing").
CURRENCIES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP
    DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
    IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD
    MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB
    PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD
    SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS
    VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER
    ZAR ZMW ZWG ZWL
    """.split()
)

_DIGITS = re.compile(r"[0-9]{1,12}")
_FULLPRICE = re.compile(r"(?P<amount>[0-9]{1,15}(?:\.[0-9]{1,6})?)(?P<currency>[A-Za-z]{3})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(value: Any, what: str, max_length: int) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what} must not be empty.")
    if len(value) > max_length:
        raise ValidationError(f"{what} is longer than {max_length} characters.")
    if _CONTROL.search(value):
        raise ValidationError(f"{what} contains a control character.")
    return value


def _bounded(text: str, low: int, high: int, what: str) -> int:
    number = int(text) if _DIGITS.fullmatch(text) else -1
    if not low <= number <= high:
        raise ValidationError(f"{what} must be an integer from {low} to {high}, not {text[:40]!r}.")
    return number


_T = TypeVar("_T")


class ParsedField(fields.Field[_T]):
    """Base of this module's fields: every check lives in ``parse``, which both
    marshmallow (through ``_deserialize``) and :class:`FastLoader` call."""

    def parse(self, value: Any) -> _T:
        raise NotImplementedError

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> _T:
        return self.parse(value)


class BoundedInt(ParsedField[int]):
    """A non-negative decimal integer written with digits only, within ``[low, high]``."""

    def __init__(self, low: int, high: int, what: str, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", {"required": f"{what} is required."})
        super().__init__(**kwargs)
        self.low, self.high, self.what = low, high, what

    def parse(self, value: Any) -> int:
        return _bounded(str(value), self.low, self.high, self.what)


class NumericId(ParsedField[str]):
    """Item type or item id: 1..2147483647, kept as text without leading zeros."""

    def __init__(self, what: str, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", {"required": f"{what} is required."})
        super().__init__(**kwargs)
        self.what = what

    def parse(self, value: Any) -> str:
        return str(_bounded(str(value), 1, MAX_ID, self.what))


class TextId(ParsedField[str]):
    """A user id, a string item id, a scenario or trigger name: text without control characters."""

    def __init__(self, what: str, max_length: int, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", {"required": f"{what} is required."})
        super().__init__(**kwargs)
        self.what, self.max_length = what, max_length

    def parse(self, value: Any) -> str:
        return _text(value, self.what, self.max_length)


class ItemIdList(ParsedField[list[str]]):
    """``128,129,155`` for ``rendered``: distinct ids, in the order sent."""

    def __init__(self, item: ParsedField[str], max_items: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item, self.max_items = item, max_items

    def parse(self, value: Any) -> list[str]:
        parts = str(value).split(",")
        if len(parts) > self.max_items:
            raise ValidationError(f"{len(parts)} item ids in one request; the limit is {self.max_items}.")
        ids: list[str] = []
        for part in parts:
            item_id = self.item.parse(part)
            if item_id not in ids:
                ids.append(item_id)
        return ids


class CategoryPath(ParsedField[str]):
    """``/Shoes/Children/`` -> ``Shoes/Children`` (the vendor ignores the outer slashes)."""

    def __init__(self, max_length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length

    def parse(self, value: Any) -> str:
        text = str(value)
        if len(text) > self.max_length:
            raise ValidationError(f"categorypath is longer than {self.max_length} characters.")
        if _CONTROL.search(text):
            raise ValidationError("categorypath contains a control character.")
        return text.strip("/")


class FullPrice(ParsedField[dict[str, str]]):
    """``12.45EUR`` -> ``{"price": "12.45", "currency": "EUR"}`` (the amount stays exact text)."""

    def parse(self, value: Any) -> dict[str, str]:
        text = str(value)
        match = _FULLPRICE.fullmatch(text)
        if match is None:
            raise ValidationError(
                f"fullprice must be a decimal with a point followed by an ISO 4217 currency code,"
                f" with no space (e.g. 12.45EUR or 456JPY), not {text[:40]!r}."
            )
        currency = match["currency"].upper()
        if currency not in CURRENCIES:
            raise ValidationError(f"fullprice: {currency!r} is not an ISO 4217 currency code.")
        return {"price": str(Decimal(match["amount"])), "currency": currency}


class _IbexaSchema(Schema):
    """Base: undocumented query parameters are kept (as text) in ``props``."""

    class Meta:
        unknown = INCLUDE

    max_length = 1024

    @validates_schema(pass_original=True)
    def check_extra(self, data: dict[str, Any], original: dict[str, Any], **kwargs: Any) -> None:
        _check_extras([key for key in original if key not in self.fields], original, self.max_length)


def _check_extras(extras: list[str], original: Mapping[str, Any], max_length: int) -> None:
    """Undocumented query parameters: how many, their names, their values."""
    if len(extras) > MAX_EXTRA_PARAMS:
        raise ValidationError(f"{len(extras)} unknown query parameters; the limit is {MAX_EXTRA_PARAMS}.")
    for key in extras:
        if len(key) > MAX_PARAM_NAME or _CONTROL.search(key):
            raise ValidationError(
                f"A query parameter name is too long or has a control character: {key[:40]!r}."
            )
        value = original[key]
        if value:  # an empty extra parameter is kept as ""
            _text(value, f"Query parameter {key[:40]!r}", max_length)


class FastLoader:
    """``schema.load(data)`` for text data, without marshmallow's per-load machinery.

    It runs the schema's own fields' ``parse`` and the same extra-parameter check,
    so it accepts exactly what the schema accepts and returns the same dict; it
    returns None for anything it refuses (or any value that is not text), and the
    caller then runs ``schema.load`` to get the error messages.
    """

    def __init__(self, schema: Schema) -> None:
        if not isinstance(schema, _IbexaSchema):
            raise TypeError(f"FastLoader needs an Ibexa schema, not {type(schema).__name__}.")
        self.fields: tuple[tuple[str, ParsedField[Any], bool, Any], ...] = tuple(
            (name, _plain(name, field), field.required, field.load_default)
            for name, field in schema.load_fields.items()
        )
        self.names = frozenset(schema.fields)
        self.max_length = schema.max_length

    def load(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        loaded: dict[str, Any] = {}
        try:
            for name, field, required, default in self.fields:
                value = data.get(name, missing)
                if value is missing:
                    if required:
                        return None
                    if default is not missing:
                        loaded[name] = default
                elif type(value) is str:
                    loaded[name] = field.parse(value)
                else:
                    return None
            extras = [key for key in data if key not in self.names]
            if extras:
                _check_extras(extras, data, self.max_length)
                for key in extras:
                    loaded[key] = data[key]  # kept as sent, as unknown=INCLUDE does
        except ValidationError:
            return None
        return loaded


def _plain(name: str, field: fields.Field[Any]) -> ParsedField[Any]:
    """Refuse (at app setup) a field using a marshmallow feature FastLoader does not mirror."""
    if (
        not isinstance(field, ParsedField)
        or field.data_key is not None
        or field.attribute is not None
        or field.validators
        or field.pre_load
        or field.post_load
        or field.allow_none
        or callable(field.load_default)
    ):
        raise TypeError(f"FastLoader cannot mirror the field {name!r} ({type(field).__name__}).")
    return field


def make_ibexa_schemas(*, string_item_ids: bool, max_length: int, max_items: int) -> dict[str, Schema]:
    """One schema instance per event code, for one app's settings.

    Each schema loads a dict of the path parameters plus the query parameters.
    """

    def user(name: str = "userid") -> TextId:
        return TextId(f"The user id ({name})", max_length, required=True)

    def item_type() -> NumericId:
        return NumericId("The item type (itemtypeid)", required=True)

    def item_id(**kwargs: Any) -> ParsedField[str]:
        if string_item_ids:
            return TextId("The item id (itemid)", max_length, **kwargs)
        return NumericId("The item id (itemid)", **kwargs)

    def name(what: str, required: bool) -> TextId:
        return TextId(what, max_length, required=required)

    def item_event(extra: dict[str, fields.Field[Any]] | None = None) -> dict[str, fields.Field[Any]]:
        return {
            "userid": user(),
            "itemtypeid": item_type(),
            "itemid": item_id(required=True),
            **(extra or {}),
        }

    shapes: dict[str, dict[str, fields.Field[Any]]] = {
        "click": item_event({"categorypath": CategoryPath(max_length)}),
        "consume": item_event({"percentage": BoundedInt(0, 100, "percentage")}),
        "buy": item_event(
            {
                "quantity": BoundedInt(1, MAX_ID, "quantity", load_default=1),
                "fullprice": FullPrice(),
            }
        ),
        "login": {"sourceuserid": user("sourceuserid"), "targetuserid": user("targetuserid")},
        "basket": item_event(),
        "deletefrombasket": item_event(),
        "rate": item_event({"rating": BoundedInt(0, 100, "rating")}),
        "blacklist": item_event(),
        "rendered": {
            "userid": user(),
            "itemtypeid": item_type(),
            "itemids": ItemIdList(
                item_id(),
                max_items,
                required=True,
                error_messages={"required": "The item ids (itemid) are required."},
            ),
            "scenario": name("scenario", required=False),
        },
        "clickrecommended": item_event({"scenario": name("scenario", required=True)}),
        "triggeropened": {"userid": user(), "triggername": name("triggername", required=True)},
        "clicktriggered": item_event({"triggername": name("triggername", required=True)}),
    }
    schemas: dict[str, Schema] = {}
    for code, shape in shapes.items():
        cls = cast(type[_IbexaSchema], _IbexaSchema.from_dict(shape, name=f"Ibexa{code.capitalize()}Schema"))
        cls.max_length = max_length
        schemas[code] = cls()
    return schemas


#: The event codes, in the vendor's documentation order.
EVENT_CODES = (
    "click",
    "consume",
    "buy",
    "login",
    "basket",
    "deletefrombasket",
    "rate",
    "blacklist",
    "rendered",
    "clickrecommended",
    "triggeropened",
    "clicktriggered",
)
