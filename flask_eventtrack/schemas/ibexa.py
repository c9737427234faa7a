"""Ibexa Personalization tracking API: one schema per event code.

Every value arrives as text (URL path segments and query parameters), so the
fields here parse text strictly: ``"+5"``, ``" 5"`` or ``"5.0"`` are not an
item id. Messages are written for people: the dialect sends them back as the
plain-text body of a 400, as the vendor does.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, cast

from marshmallow import INCLUDE, Schema, ValidationError, fields, validates_schema

__all__ = [
    "CURRENCIES",
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
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise ValidationError(f"{what} must be an integer from {low} to {high}, not {text[:40]!r}.")
    return int(text)


class BoundedInt(fields.Field[int]):
    """A non-negative decimal integer written with digits only, within ``[low, high]``."""

    def __init__(self, low: int, high: int, what: str, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", {"required": f"{what} is required."})
        super().__init__(**kwargs)
        self.low, self.high, self.what = low, high, what

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        return _bounded(str(value), self.low, self.high, self.what)


class NumericId(fields.Field[str]):
    """Item type or item id: 1..2147483647, kept as text without leading zeros."""

    def __init__(self, what: str, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", {"required": f"{what} is required."})
        super().__init__(**kwargs)
        self.what = what

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return str(_bounded(str(value), 1, MAX_ID, self.what))


class TextId(fields.Field[str]):
    """A user id, a string item id, a scenario or trigger name: text without control characters."""

    def __init__(self, what: str, max_length: int, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", {"required": f"{what} is required."})
        super().__init__(**kwargs)
        self.what, self.max_length = what, max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return _text(value, self.what, self.max_length)


class ItemIdList(fields.Field[list[str]]):
    """``128,129,155`` for ``rendered``: distinct ids, in the order sent."""

    def __init__(self, item: fields.Field[str], max_items: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item, self.max_items = item, max_items

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        parts = str(value).split(",")
        if len(parts) > self.max_items:
            raise ValidationError(f"{len(parts)} item ids in one request; the limit is {self.max_items}.")
        ids: list[str] = []
        for part in parts:
            item_id = self.item.deserialize(part)
            if item_id not in ids:
                ids.append(item_id)
        return ids


class CategoryPath(fields.Field[str]):
    """``/Shoes/Children/`` -> ``Shoes/Children`` (the vendor ignores the outer slashes)."""

    def __init__(self, max_length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = str(value)
        if len(text) > self.max_length:
            raise ValidationError(f"categorypath is longer than {self.max_length} characters.")
        if _CONTROL.search(text):
            raise ValidationError("categorypath contains a control character.")
        return text.strip("/")


class FullPrice(fields.Field[dict[str, str]]):
    """``12.45EUR`` -> ``{"price": "12.45", "currency": "EUR"}`` (the amount stays exact text)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, str]:
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
        extras = [key for key in original if key not in self.fields]
        if len(extras) > MAX_EXTRA_PARAMS:
            raise ValidationError(f"{len(extras)} unknown query parameters; the limit is {MAX_EXTRA_PARAMS}.")
        for key in extras:
            if len(key) > MAX_PARAM_NAME or _CONTROL.search(key):
                raise ValidationError(
                    f"A query parameter name is too long or has a control character: {key[:40]!r}."
                )
            value = original[key]
            if value:  # an empty extra parameter is kept as ""
                _text(value, f"Query parameter {key[:40]!r}", self.max_length)


def make_ibexa_schemas(*, string_item_ids: bool, max_length: int, max_items: int) -> dict[str, Schema]:
    """One schema instance per event code, for one app's settings.

    Each schema loads a dict of the path parameters plus the query parameters.
    """

    def user(name: str = "userid") -> TextId:
        return TextId(f"The user id ({name})", max_length, required=True)

    def item_type() -> NumericId:
        return NumericId("The item type (itemtypeid)", required=True)

    def item_id(**kwargs: Any) -> fields.Field[str]:
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
