from __future__ import annotations

import datetime as dt

from marshmallow import ValidationError, fields

from integration.handles import HANDLE_PATTERN, MAX_HANDLE_LENGTH, InvalidHandle, normalize_handle


class Handle(fields.String):
    """A TikTok handle as users paste it; deserializes to the normalized username.

    The OpenAPI document carries the same pattern and length the server checks, so generated
    clients (and schemathesis) know exactly which strings are handles.
    """

    def __init__(self, **kwargs):
        metadata = kwargs.setdefault("metadata", {})
        metadata.setdefault(
            "description",
            "TikTok handle: `name`, `@name` or a profile URL `https://www.tiktok.com/@name`.",
        )
        metadata.setdefault("example", "charlidamelio")
        metadata.update(pattern=HANDLE_PATTERN, minLength=2, maxLength=MAX_HANDLE_LENGTH)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_handle(text)
        except InvalidHandle as exc:
            raise ValidationError(str(exc)) from exc


MAX_INT64 = 2**63 - 1  # the upstream's cursors (Unix times) travel as 64-bit integers
MAX_INT32 = 2**31 - 1  # an INTEGER column (events.sequence) on PostgreSQL


class UtcDateTime(fields.AwareDateTime):
    """An ISO 8601 time with an offset, deserialized to UTC; a time that has no UTC form
    (0001-01-01T00:00:00+01:00 is in year 0) is a validation error, not an OverflowError."""

    def _deserialize(self, value, attr, data, **kwargs):
        parsed = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parsed.astimezone(dt.timezone.utc)
        except (OverflowError, ValueError):
            raise ValidationError("The time must fall between years 1 and 9999 once converted to UTC.") from None


CHECK_EVERY_MAX = 1440  # minutes: once a day


class CheckEvery(fields.Field):
    """`checkEvery`: minutes between checks (1 to 1440), or "auto" (integration/adaptive.py).
    A numeric string ("15", as a Zapier choice sends it) is read as its number."""

    def __init__(self, **kwargs):
        metadata = kwargs.setdefault("metadata", {})
        metadata.setdefault("description",
                            "How often the handle may be checked, in minutes (1 to 1440), or \"auto\": more often "
                            "for handles that follow often, within your budget. Polls in between answer from the "
                            "journal for free. Several of your Zaps/scenarios on one handle: the smallest wins.")
        metadata["oneOf"] = [{"type": "integer", "minimum": 1, "maximum": CHECK_EVERY_MAX},
                             {"type": "string", "enum": ["auto"]}]
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "auto":
            return value
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= CHECK_EVERY_MAX:
            raise ValidationError(f'Must be a whole number of minutes from 1 to {CHECK_EVERY_MAX}, or "auto".')
        return value

    def _serialize(self, value, attr, obj, **kwargs):
        return value
