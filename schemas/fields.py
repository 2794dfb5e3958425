from __future__ import annotations

from marshmallow import ValidationError, fields

from integration.handles import InvalidHandle, normalize_handle


class Handle(fields.String):
    """A TikTok handle as users paste it; deserializes to the normalized username."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {}).setdefault(
            "description",
            "TikTok handle: `name`, `@name` or a profile URL `https://www.tiktok.com/@name`.",
        )
        kwargs["metadata"].setdefault("example", "charlidamelio")
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_handle(text)
        except InvalidHandle as exc:
            raise ValidationError(str(exc)) from exc
