"""Profile events API: the user object, attributes, and one schema per event kind.

Conventions of the API family: field names are case sensitive and unexpected
fields are ignored (``EXCLUDE``). Attribute-carrying kinds (``update``,
``login``, ``generic``) keep every field, validated by :class:`Attributes`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from .core import ScalarOrString, check_value

__all__ = [
    "IDENTIFIER_KEYS",
    "KINDS",
    "MAX_ATTRIBUTES",
    "MAX_KEY_LENGTH",
    "Attributes",
    "UserSchema",
    "make_kind_schemas",
    "validate_attributes",
]

#: Keys that identify a user: never kept as attributes or props (raw ids stay off disk).
IDENTIFIER_KEYS = ("email", "_id")
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\Z"
MAX_ATTRIBUTES = 200
MAX_KEY_LENGTH = 128
_SCALARS = (str, int, float, bool)


def validate_attributes(value: Any, *, max_length: int, max_depth: int, where: str) -> dict[str, Any]:
    """A dict of attributes, or :class:`ValidationError` with one ``"path: problem"`` each.

    Values may be scalars, null, lists or objects (bounded by ``max_length``
    and ``max_depth``); NaN and infinities are refused (not JSON).
    """
    if not isinstance(value, dict):
        raise ValidationError([f"{where}: must be an object of attributes."])
    if len(value) > MAX_ATTRIBUTES:
        raise ValidationError([f"{where}: at most {MAX_ATTRIBUTES} attributes per request."])
    errors: list[str] = []
    for key, item in value.items():
        path = f"{where}.{key[:40]}"
        if not key or len(key) > MAX_KEY_LENGTH:
            errors.append(f"{path}: attribute names are 1 to {MAX_KEY_LENGTH} characters.")
            continue
        try:
            check_value(item, max_length=max_length, max_depth=max_depth, path=path, named_levels=0)
        except ValidationError as exc:
            errors.extend(exc.messages if isinstance(exc.messages, list) else [str(exc.messages)])
    if errors:
        raise ValidationError(errors)
    return value


def _identifier(max_length: int) -> Any:
    return validate.Length(min=1, max=max_length)


class UserSchema(Schema):
    """``{"email": ...}`` or ``{"_id": ...}``; ``email`` wins when both are sent."""

    class Meta:
        unknown = EXCLUDE

    # \Z, not $: "$" also matches before a final newline ("a@b.com\n" would be a second user)
    email = fields.String(validate=[validate.Length(min=3, max=320), validate.Regexp(EMAIL_PATTERN)])
    _id = ScalarOrString(data_key="_id", attribute="_id", validate=validate.Length(min=1, max=256))

    @validates_schema
    def one_identifier(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "email" not in data and "_id" not in data:
            raise ValidationError('The user needs an "email" or an "_id".', "_schema")


class Attributes(fields.Field[dict[str, Any]]):
    """A field holding an attributes object (see :func:`validate_attributes`)."""

    def __init__(self, *, max_length: int, max_depth: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length
        self.max_depth = max_depth

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        return validate_attributes(
            value, max_length=self.max_length, max_depth=self.max_depth, where=attr or ""
        )


def _standard_kinds(max_length: int) -> dict[str, type[Schema]]:
    """The standard kinds: fixed fields, everything else ignored."""
    text = validate.Length(min=1, max=max_length)
    money = validate.Range(min=0)

    class _Base(Schema):
        class Meta:
            unknown = EXCLUDE

    class PageView(_Base):
        url = fields.String(required=True, validate=text)
        title = fields.String(validate=validate.Length(max=max_length))
        referrer = fields.String(validate=validate.Length(max=max_length))

    class ProductView(_Base):
        product_id = ScalarOrString(required=True, validate=text)
        name = fields.String(validate=text)
        category = fields.String(validate=text)
        price = fields.Float(validate=money)
        currency = fields.String(validate=validate.Length(min=3, max=3))

    class CartChange(_Base):
        product_id = ScalarOrString(required=True, validate=text)
        quantity = fields.Integer(strict=True, load_default=1, validate=validate.Range(min=1, max=1_000_000))
        price = fields.Float(validate=money)
        currency = fields.String(validate=validate.Length(min=3, max=3))
        variation = fields.String(validate=text)

    class OrderLine(_Base):
        product_id = ScalarOrString(required=True, validate=text)
        quantity = fields.Integer(strict=True, load_default=1, validate=validate.Range(min=1, max=1_000_000))
        price = fields.Float(validate=money)

    class Confirmation(_Base):
        orderId = ScalarOrString(required=True, validate=text)  # noqa: N815 (the wire name)
        total = fields.Float(validate=money)
        currency = fields.String(validate=validate.Length(min=3, max=3))
        products = fields.List(fields.Nested(OrderLine), validate=validate.Length(max=1000))

    class EmailOpen(_Base):
        campaign_id = ScalarOrString(validate=text)
        message_id = ScalarOrString(validate=text)

    class EmailClick(EmailOpen):
        url = fields.String(validate=text)

    return {
        "page_view": PageView,
        "product_view": ProductView,
        "add_to_cart": CartChange,
        "remove_from_cart": CartChange,
        "confirmation": Confirmation,
        "email_open": EmailOpen,
        "email_click": EmailClick,
    }


def _attribute_kinds(max_length: int, max_depth: int) -> dict[str, type[Schema]]:
    """``update``/``login`` (attributes) and ``generic`` (a named custom event)."""

    class AttributeEvent(Schema):
        """The whole value is the attributes object; an ``email`` in it (the
        account a ``login`` links to) must be an e-mail address like a user's."""

        def load(self, data: Any, **kwargs: Any) -> Any:
            attributes = validate_attributes(
                data, max_length=max_length, max_depth=max_depth, where="attributes"
            )
            email = attributes.get("email") if isinstance(attributes, dict) else None
            if email is not None and not (isinstance(email, str) and re.match(EMAIL_PATTERN, email)):
                raise ValidationError("Not a valid e-mail address.", "attributes.email")
            return attributes

    class GenericBody(Schema):
        class Meta:
            unknown = EXCLUDE

        generic = Attributes(required=True, max_length=max_length, max_depth=max_depth)

        @validates_schema
        def named(self, data: dict[str, Any], **kwargs: Any) -> None:
            name = data.get("generic", {}).get("event_name")
            if not isinstance(name, str) or not 0 < len(name) <= 200:
                raise ValidationError(
                    'Must be a string of 1 to 200 characters, as in {"generic": {"event_name": "my_event"}}.',
                    "generic.event_name",
                )
            if name in KINDS:  # the standard kinds' rules (orderId, open window) key on the type
                raise ValidationError(
                    f"{name!r} is a standard kind: send it as {{{json.dumps(name)}: {{...}}}}, not as a"
                    " generic event.",
                    "generic.event_name",
                )

    return {"update": AttributeEvent, "login": AttributeEvent, "generic": GenericBody}


#: Every event kind the API accepts (the key inside ``"event"``).
KINDS = (
    "update",
    "login",
    "generic",
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "confirmation",
    "email_open",
    "email_click",
)


def make_kind_schemas(max_length: int, max_depth: int) -> dict[str, Schema]:
    """One schema instance per kind, for one app's limits (built once per app)."""
    schemas = {kind: cls() for kind, cls in _standard_kinds(max_length).items()}
    schemas.update({kind: cls() for kind, cls in _attribute_kinds(max_length, max_depth).items()})
    return schemas
