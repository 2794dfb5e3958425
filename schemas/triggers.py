from __future__ import annotations

from marshmallow import fields, validate

from schemas.fields import MAX_INT32, CheckEvery, UtcDateTime
from schemas.filters import FilterFields
from schemas.watchlist import WatchlistFields

MAX_ITEMS = 300


class TriggerRequestSchema(WatchlistFields, FilterFields):
    checkEvery = CheckEvery()
    limit = fields.Integer(
        strict=True,
        load_default=100,
        validate=validate.Range(min=1, max=MAX_ITEMS),
        metadata={"description": "Most items to answer (newest first)"},
    )
    since = UtcDateTime(
        default_timezone=None,
        metadata={"description": "Make epoch: only events detected strictly after this time (ISO 8601)"},
    )
    afterSequence = fields.Integer(
        strict=True,
        validate=validate.Range(min=0, max=MAX_INT32),
        metadata={"description": "Only events whose `sequence` is greater than this"},
    )
