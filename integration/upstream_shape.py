"""The documented shape of the upstream's 200 body (what we read, not what we serve: it lives
with the client, so `schemas/` depends on `integration`, never the reverse). Anything else is a 502.

The entries are checked by one marshmallow field for the whole list, each entry checked while
it is flattened (integration/accounts.flatten: the field's types are spelled out there): a
nested Schema per entry cost ~35 µs each, a field per entry (fields.List) marshmallow's
per-field machinery 30 times a page, and a separate pass over a type table more than the
flattening itself (docs/SCALING.md).
"""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields

from integration.accounts import flatten


class UpstreamEntries(fields.Field):
    """`followingList`: a list of documented entries, loaded as flat accounts (the first bad
    entry refuses the page)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not list:
            raise ValidationError("followingList must be a list")
        return tuple(map(flatten, value))


class UpstreamPageSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # new upstream fields must not break us

    followingList = UpstreamEntries(required=True)
    # Cursors may be missing or null: detection then runs in its safe mode (detection.py)
    # rather than failing the whole refresh.
    maxCursor = fields.Integer(load_default=None, allow_none=True, strict=True)
    minCursor = fields.Integer(load_default=None, allow_none=True, strict=True)
    hasMore = fields.Boolean(required=True, truthy={True}, falsy={False})
    total = fields.Integer(allow_none=True)
