from __future__ import annotations

from marshmallow import Schema, fields


class UsageDaySchema(Schema):
    day = fields.String(required=True, metadata={"description": "UTC day, YYYY-MM-DD"})
    credits = fields.Integer(required=True, metadata={"description": "DumplingAI credits the service spent for this key that day"})
    refreshes = fields.Integer(required=True, metadata={"description": "Watch refreshes that day"})


class UsageWatchSchema(Schema):
    handle = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "active, backoff or paused"})
    checkEvery = fields.Raw(allow_none=True, metadata={"description": "Minutes, \"auto\", or null (the service's default)"})
    lastCheckAt = fields.String(allow_none=True, metadata={"description": "ISO 8601, UTC"})
    nextCheckAt = fields.String(allow_none=True, metadata={"description": "ISO 8601, UTC; null when no check is scheduled"})
    creditsLast30Days = fields.Integer(required=True)


class UsageSchema(Schema):
    day = fields.String(required=True, metadata={"description": "Today (UTC)"})
    creditsToday = fields.Integer(required=True)
    dailyBudget = fields.Integer(allow_none=True, metadata={"description": "The X-Daily-Credit-Budget header of this request, if any"})
    budgetLeft = fields.Integer(allow_none=True, metadata={"description": "dailyBudget minus creditsToday (never below 0)"})
    resetsAt = fields.String(required=True, metadata={"description": "When today's count and budget reset: next 00:00 UTC"})
    creditsLast30Days = fields.Integer(required=True)
    days = fields.List(fields.Nested(UsageDaySchema), required=True, metadata={"description": "The last 30 UTC days, newest first"})
    watches = fields.List(fields.Nested(UsageWatchSchema), required=True)
