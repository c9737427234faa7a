"""Cortex Behavioral API: the schema of one item of ``{"data": [...]}``.

The object-id field name is a setting, so the schema class is built per app.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from .core import ScalarOrString

#: Largest accepted ``timestamp``: 9999-12-31T23:59:59Z.
MAX_TIMESTAMP = 253_402_300_799
MAX_KEY_LENGTH = 128


def make_cortex_event_schema(id_field: str, max_length: int) -> type[Schema]:
    """Schema class for one Cortex event whose object id is ``id_field``."""
    text = validate.Length(min=1, max=max_length)
    known = {id_field, "type", "timestamp", "item_id"}

    class CortexEventSchema(Schema):
        class Meta:
            unknown = INCLUDE  # every other key is a custom parameter

        type = fields.String(required=True, validate=text)
        # null counts as absent (clients serialise an unset optional field as null).
        timestamp = fields.Integer(strict=True, allow_none=True, validate=validate.Range(0, MAX_TIMESTAMP))
        item_id = ScalarOrString(allow_none=True, validate=text)

        @validates_schema
        def check_custom_params(self, data: dict[str, Any], **kwargs: Any) -> None:
            errors: dict[str, list[str]] = {}
            for key, value in data.items():
                if key in known:
                    continue
                if len(key) > MAX_KEY_LENGTH:
                    errors[key[:40] + "..."] = [
                        f"Parameter names are limited to {MAX_KEY_LENGTH} characters."
                    ]
                elif value is not None and not isinstance(value, (str, int, float, bool)):
                    errors[key] = ["Custom parameters must be a string, number or boolean."]
                elif isinstance(value, str) and len(value) > max_length:
                    errors[key] = [f"Longer than maximum length {max_length}."]
            if errors:
                raise ValidationError(errors)

    id_schema: fields.Field[str] = fields.String(required=True, validate=text)
    if id_field == "item_id":
        id_schema = ScalarOrString(required=True, validate=text)
    return CortexEventSchema.from_dict({id_field: id_schema}, name="CortexEvent")
