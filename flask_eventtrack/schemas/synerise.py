"""Synerise: one schema per event type of ``/v4/events``, ``/v4/transactions`` and ``/events/v1``.

String limits depend on app settings, so :func:`build_schemas` builds the
schema classes once per app. Unknown top-level fields are refused by name
(a typo such as ``parmas`` must not silently drop data).
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from ..events import parse_time
from .core import ScalarOrString, check_value

__all__ = [
    "AI_EVENT_TYPES",
    "DEDICATED",
    "IDENTIFIERS",
    "PRODUCT_ENDPOINTS",
    "RESERVED_PARAMS",
    "SyneriseSchemas",
    "build_schemas",
]

#: Dedicated ``/v4/events/<endpoint>`` -> the action it records.
DEDICATED: dict[str, str] = {
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
#: Dedicated endpoints about a product: ``params.sku`` is required and becomes ``item_id``.
PRODUCT_ENDPOINTS = frozenset({"added-to-cart", "removed-from-cart", "added-to-favorites"})
#: The AI events of ``/events/v1``.
AI_EVENT_TYPES = ("recommendation.view", "recommendation.click", "item.search.click")
#: Profile identifiers, in priority order: the first one present is the event's user.
IDENTIFIERS = ("id", "customId", "uuid", "email")
#: ``params`` names kept for the system (CHOICE): the canonical event fields, the
#: request's own fields, and what the dialect itself adds to ``props``.
RESERVED_PARAMS = frozenset(
    {
        "id", "tenant", "source", "type", "user", "user_kind", "item_type", "item_id",
        "occurred_at", "received_at", "original_time", "props", "dedup_key", "status",
        "action", "client", "label", "time", "eventSalt", "eventUUID", "identifiers",
        "clientId", "businessProfileId",
    }
)  # fmt: skip
ACTION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*\Z")  # \Z: "$" would let a final newline in
MAX_ACTION_LENGTH = 128
#: Largest ``eventTimestamp`` in milliseconds: 9999-12-31T23:59:59.999Z.
MAX_TIMESTAMP_MS = 253_402_300_799_999


class IsoTime(fields.Field[datetime]):
    """ISO 8601 text *with* a UTC offset, loaded as aware UTC (millisecond precision)."""

    default_error_messages = {
        "invalid": "Must be an ISO 8601 time with a UTC offset, e.g. 2022-05-23T09:00:00-04:00.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or len(value) > 64:
            raise self.make_error("invalid")
        try:
            return parse_time(value)
        except (ValueError, OverflowError):
            raise self.make_error("invalid") from None


class EventTimestamp(fields.Field[datetime]):
    """Unix milliseconds (an integer) or ISO 8601 text with an offset, as the vendor's example sends."""

    default_error_messages = {
        "invalid": "Must be Unix time in milliseconds (an integer) or an ISO 8601 time with a UTC offset.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= MAX_TIMESTAMP_MS:
                raise self.make_error("invalid")
            return datetime.fromtimestamp(value // 1000, UTC).replace(microsecond=value % 1000 * 1000)
        return IsoTime(error_messages=self.error_messages)._deserialize(value, attr, data)


class PlainNumber(fields.Field[int | float]):
    """A finite JSON number, kept as sent (``2`` stays an integer, ``2.5`` a float).

    An integer beyond the float range is refused: no consumer of an amount or a
    quantity can use it as a number (and ``math.isfinite`` cannot even take it).
    """

    default_error_messages = {
        "invalid": "Must be a number.",
        "too_large": "The number is too large; amounts and quantities must be within about ±1.8e308.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int that does not fit a float
            raise self.make_error("too_large") from None
        if not finite:
            raise self.make_error("invalid")
        return value


class UUIDString(fields.Field[str]):
    """A UUID in any of its text forms, kept in canonical lower-case form."""

    default_error_messages = {"invalid": "Must be a UUID, e.g. e0097757-d1e2-44ac-ba3c-d97979a354c1."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str) or len(value) > 64:
            raise self.make_error("invalid")
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise self.make_error("invalid") from None


class NullIsAbsent(Schema):
    """A schema where null counts as absent for every field that is not required:
    clients built from typed models serialise an unset optional field as null.
    A required field sent as null stays an error ("Field may not be null.")."""

    @pre_load
    def drop_null_optionals(self, data: Any, **kwargs: Any) -> Any:
        if type(data) is not dict or None not in data.values():
            return data
        fields_ = self.load_fields  # by name: no field here sets a data_key
        return {k: v for k, v in data.items() if v is not None or k not in fields_ or fields_[k].required}


@dataclass(frozen=True)
class SyneriseSchemas:
    """Schema instances of one app, by event type."""

    custom: Schema
    dedicated: Schema
    product: Schema
    transaction: Schema
    ai_event: Schema

    def for_endpoint(self, endpoint: str) -> Schema:
        """The schema of a dedicated endpoint (or of a batch item of that ``type``)."""
        return self.product if endpoint in PRODUCT_ENDPOINTS else self.dedicated


def build_schemas(max_length: int, max_depth: int) -> SyneriseSchemas:
    """Schemas whose strings and nesting are limited by the app's settings."""
    text = validate.Length(min=1, max=max_length)

    def check_free_form(value: Any, field: str) -> None:
        check_value(value, max_length=max_length, max_depth=max_depth, path=field)

    class ClientSchema(NullIsAbsent):
        """``client``: at least one profile identifier."""

        class Meta:
            unknown = RAISE

        id = ScalarOrString(validate=text)
        customId = fields.String(validate=text)
        uuid = UUIDString()
        email = fields.Email(validate=validate.Length(max=min(max_length, 254)))

        @validates_schema
        def one_identifier(self, data: dict[str, Any], **kwargs: Any) -> None:
            if not any(data.get(name) is not None for name in IDENTIFIERS):
                raise ValidationError(f"At least one of {', '.join(IDENTIFIERS)} is required.")

    class EventSchema(NullIsAbsent):
        """What every ``/v4/events`` body has, whatever its action."""

        class Meta:
            unknown = RAISE

        client = fields.Nested(ClientSchema, required=True)
        label = fields.String(required=True, validate=text)
        params = fields.Dict(keys=fields.String(), load_default=dict)
        time = IsoTime()
        eventSalt = fields.String(validate=text)

        @validates_schema(skip_on_field_errors=False)
        def check_params(self, data: dict[str, Any], **kwargs: Any) -> None:
            params = data.get("params") or {}
            problems: list[Any] = []  # every one of them, as the 400 must name them all
            reserved = sorted(RESERVED_PARAMS.intersection(params))
            if reserved:
                problems.append(f"Reserved parameter names cannot be used: {', '.join(reserved)}.")
            try:
                check_free_form(params, "params")
            except ValidationError as exc:
                problems.extend(exc.messages if isinstance(exc.messages, list) else [exc.messages])
            if problems:
                raise ValidationError(problems, "params")

    class CustomEventSchema(EventSchema):
        """``/v4/events/custom``: the action names the event type."""

        action = fields.String(
            required=True,
            validate=[
                validate.Length(min=1, max=MAX_ACTION_LENGTH),
                validate.Regexp(ACTION_PATTERN, error="Letters, digits and _ . : - only, e.g. dog.bark."),
            ],
        )

    class DedicatedEventSchema(EventSchema):
        """A dedicated endpoint: the endpoint fixes the action; a sent ``action`` is not used."""

        action = fields.String()

    class ProductEventSchema(DedicatedEventSchema):
        """added-to-cart, removed-from-cart, added-to-favorites: about one product."""

        @validates_schema(skip_on_field_errors=False)
        def require_sku(self, data: dict[str, Any], **kwargs: Any) -> None:
            sku = (data.get("params") or {}).get("sku")
            if isinstance(sku, bool) or not isinstance(sku, (str, int)) or str(sku) == "":
                raise ValidationError("params.sku (the product's SKU, a string) is required.", "params")
            if len(str(sku)) > max_length:  # a number too: it becomes the text item_id
                raise ValidationError(f"params.sku is longer than {max_length} characters.", "params")

    class MoneySchema(NullIsAbsent):
        class Meta:
            unknown = RAISE

        amount = PlainNumber(required=True)
        currency = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z]{3}\Z"))

    class ProductLineSchema(NullIsAbsent):
        """One line of a transaction; vendor-specific extra fields are kept."""

        class Meta:
            unknown = INCLUDE

        sku = ScalarOrString(required=True, validate=text)
        name = fields.String(validate=text)
        quantity = PlainNumber(load_default=1, validate=validate.Range(min=0, min_inclusive=False))
        finalUnitPrice = fields.Nested(MoneySchema, required=True)
        regularPrice = fields.Nested(MoneySchema)

        @validates_schema
        def check_extras(self, data: dict[str, Any], **kwargs: Any) -> None:
            # A line's fields become the props of its product.buy event, as params do.
            reserved = sorted(RESERVED_PARAMS.intersection(data))
            if reserved:
                names = ", ".join(reserved)
                raise ValidationError(f"Reserved names cannot be used in a product line: {names}.")
            check_free_form(data, "product")

    class TransactionSchema(NullIsAbsent):
        """``/v4/transactions``: one charge, and one ``product.buy`` per product line."""

        class Meta:
            unknown = RAISE

        client = fields.Nested(ClientSchema, required=True)
        orderId = fields.String(required=True, validate=text)
        products = fields.List(
            fields.Nested(ProductLineSchema), required=True, validate=validate.Length(min=1, max=1000)
        )
        value = fields.Nested(MoneySchema, required=True)
        revenue = fields.Nested(MoneySchema)
        discountAmount = fields.Nested(MoneySchema)
        recordedAt = IsoTime()
        paymentInfo = fields.Dict(keys=fields.String())
        source = fields.String(validate=text)
        metadata = fields.Dict(keys=fields.String())

        @validates_schema
        def check_objects(self, data: dict[str, Any], **kwargs: Any) -> None:
            for name in ("paymentInfo", "metadata"):
                if name in data:
                    try:
                        check_free_form(data[name], name)
                    except ValidationError as exc:
                        raise ValidationError(exc.messages, name) from None

    class AIEventSchema(NullIsAbsent):
        """One ``/events/v1`` event (single body, or an item of a batch)."""

        class Meta:
            unknown = RAISE

        correlationId = fields.String(required=True, validate=text)
        clientUUID = UUIDString(required=True)
        items = fields.List(ScalarOrString(validate=text), required=True, validate=validate.Length(max=1000))
        eventTimestamp = EventTimestamp()
        campaignId = fields.String(validate=text)

    return SyneriseSchemas(
        custom=CustomEventSchema(),
        dedicated=DedicatedEventSchema(),
        product=ProductEventSchema(),
        transaction=TransactionSchema(),
        ai_event=AIEventSchema(),
    )
