"""The filter fields shared by the action, the polling trigger and subscriptions."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema


MAX_KEYWORDS = 20
MAX_KEYWORD_LENGTH = 100


class StrictBoolean(fields.Boolean):
    """A JSON true or false; 0, 1 or "yes" are refused, not guessed (0 == False in Python)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not bool:
            raise self.make_error("invalid", input=value)
        return value


class FilterFields(Schema):
    """Mixed into a request schema: an account failing a filter is never an item nor a delivery."""

    # null is "not set" (a platform may send an emptied field as null)
    verifiedOnly = StrictBoolean(allow_none=True, metadata={"description": "Only verified accounts"})
    excludePrivate = StrictBoolean(allow_none=True, metadata={"description": "Leave out private accounts"})
    minFollowers = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=0),
        metadata={"description": "Only accounts with at least this many followers"})
    maxFollowers = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=0),
        metadata={"description": "Only accounts with at most this many followers"})
    keywords = fields.List(
        fields.String(validate=validate.Length(min=1, max=MAX_KEYWORD_LENGTH)),
        allow_none=True, validate=validate.Length(min=1, max=MAX_KEYWORDS),
        metadata={"description": "Only accounts whose username, display name or bio contains any of these "
                                 f"words (case-insensitive; 1 to {MAX_KEYWORDS}, each 1 to {MAX_KEYWORD_LENGTH} characters)"})

    @validates_schema
    def _min_not_above_max(self, data, **kwargs):
        low, high = data.get("minFollowers"), data.get("maxFollowers")
        if low is not None and high is not None and low > high:
            raise ValidationError(f"must not be larger than maxFollowers ({high}).", field_name="minFollowers")
