"""Generate manifests/zapier/fields.json from the marshmallow schemas.

The Zapier app (index.js) builds every inputField and outputField from
fields.json, so the field lists the user sees in Zapier come from the same
schemas that validate requests and document the API (schemas/*.py).

    .venv/bin/python manifests/zapier/generate_fields.py          # rewrite fields.json
    .venv/bin/python manifests/zapier/generate_fields.py --check  # exit 1 if stale

tests/test_manifest_drift_zapier.py fails when fields.json is not up to date,
and when a schema gains a field that has no Zapier label below (add one here,
then regenerate).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from marshmallow import Schema, fields as mfields  # noqa: E402

from schemas.account import AccountSchema, FollowEventSchema  # noqa: E402
from schemas.filters import FilterFields  # noqa: E402
from schemas.following import (CheckRequestSchema, CheckResponseSchema, FollowingRequestSchema,  # noqa: E402
                               FollowingResponseSchema)
from schemas.hooks import SubscriptionCreateSchema  # noqa: E402
from schemas.triggers import TriggerRequestSchema  # noqa: E402
from schemas.usage import UsageSchema  # noqa: E402
from schemas.fields import CheckEvery  # noqa: E402
from schemas.unfollows import UnfollowedTriggerRequestSchema, UnfollowEventSchema  # noqa: E402
from schemas.crowds import (MAX_WITHIN_DAYS, MIN_CROWD_HANDLES, FollowedByManyEventSchema,  # noqa: E402
                            FollowedByManyTriggerRequestSchema)
from schemas.watchlist import MAX_HANDLES  # noqa: E402

FIELDS_JSON = HERE / "fields.json"

# Zapier labels (Title Case). Every schema field the app exposes needs one.
LABELS = {
    # flat account (AccountSchema)
    "id": "TikTok User ID",
    "uniqueId": "Username",
    "nickname": "Display Name",
    "profileUrl": "Profile URL",
    "avatarThumb": "Avatar Thumbnail URL",
    "signature": "Bio",
    "verified": "Verified",
    "privateAccount": "Private Account",
    "secUid": "Secure User ID",
    "followerCount": "Follower Count",
    "followingCount": "Following Count",
    "heartCount": "Likes Received",
    "videoCount": "Video Count",
    "diggCount": "Likes Given",
    # follow event (FollowEventSchema)
    "followedBy": "Followed By",
    "detectedAt": "Detected At",
    "sequence": "Event Sequence",
    "eventId": "Event ID",
    "event": "Event Type",
    # unfollow event (UnfollowEventSchema)
    "unfollowedBy": "Unfollowed By",
    # followed-by-many event (FollowedByManyEventSchema)
    "followedByHandles": "Followed By Handles",
    "followedByCount": "Followed By Count",
    # following action answer (FollowingResponseSchema)
    "handle": "Handle",
    "count": "Accounts Returned",
    "total": "Total Following (Approximate)",
    "hasMore": "Has More",
    "nextMinTime": "Next Page Cursor",
    "pages": "Pages Read (Credits Spent)",
    # follow check answer (CheckResponseSchema)
    "follows": "Follows",
    "complete": "Complete Answer",
    "pagesRead": "Pages Read (Credits Spent)",
    # credit usage (UsageSchema)
    "day": "Day (UTC)",
    "creditsToday": "Credits Spent Today",
    "dailyBudget": "Daily Credit Budget",
    "budgetLeft": "Budget Left Today",
    "resetsAt": "Budget Resets At",
    "creditsLast30Days": "Credits in the Last 30 Days",
    "credits": "Credits",
    "refreshes": "Checks",
    "status": "Status",
    "checkEvery": "Check Every (Minutes)",
    "lastCheckAt": "Last Check At",
    "nextCheckAt": "Next Check At",
}
# Labels of the items of a list field (Zapier line items).
LINE_ITEM_LABELS = {"following": "Account: ", "days": "Day: ", "watches": "Watched Handle: "}

# checkEvery as a choice, with what each option costs a month (30 days, 1 credit a check).
CHECK_EVERY_MINUTES = (1, 5, 15, 30, 60, 180, 360, 720, 1440)


def _about(n: float) -> str:
    """Two significant figures, as a person would say it: 2880 -> "2,900"."""
    digits = len(str(int(n))) - 2
    return f"{int(round(n, -digits) if digits > 0 else round(n)):,}"


def _every(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return "once a day" if hours == 24 else "every hour" if hours == 1 else f"every {hours} hours"
    return "every minute" if minutes == 1 else f"every {minutes} minutes"


def check_every_choices() -> list[dict]:
    out = [{"value": "auto", "sample": "auto",
            "label": f"auto: checks busy handles more often, quiet ones less; about "
                     f"{_about(30 * 1440 / 15)} credits a month per handle (like every 15 minutes)"}]
    for minutes in CHECK_EVERY_MINUTES:
        out.append({"value": str(minutes), "sample": str(minutes),
                    "label": f"{_every(minutes)}: about {_about(30 * 1440 / minutes)} credits a month per handle"})
    return out

# Input labels/help where the Zapier wording differs from the API's.
INPUT_LABELS = {
    "handle": "TikTok Handle",
    "handles": "TikTok Handles (Watchlist)",
    "count": "Accounts per Page",
    "minTime": "Start After Cursor",
    "limit": "Maximum Accounts",
    "target": "Followed Account",
    "verifiedOnly": "Verified Accounts Only",
    "excludePrivate": "Exclude Private Accounts",
    "minFollowers": "Minimum Followers",
    "maxFollowers": "Maximum Followers",
    "keywords": "Keywords",
    "checkEvery": "Check Every",
    "sweepEvery": "Check for Unfollows Every (Hours)",
    "minHandles": "Minimum Handles",
    "withinDays": "Within Days",
}
FILTER_KEYS = list(FilterFields().fields)
FILTER_NOTE = " Accounts that do not pass are never a Zap run (no task)."
INPUT_HELP = {
    "handle": (
        "The TikTok account whose follows you want, as `name`, `@name` or a "
        "profile URL like `https://www.tiktok.com/@name`."
    ),
    "count": (
        "How many accounts to ask TikTok for per page (1-100). Leave empty for "
        "the provider's default."
    ),
    "minTime": (
        "To continue a previous run, map its **Next Page Cursor** here; only "
        "accounts followed before that point are listed. Leave empty to start "
        "with the newest follows."
    ),
    "limit": (
        "Collect up to this many accounts across pages (1-1000). Leave empty "
        "for one page. Each page costs 1 DumplingAI credit. One step reads for "
        "at most about 20 seconds; if accounts remain, **Has More** is true and "
        "**Next Page Cursor** continues from there."
    ),
    "target": (
        "The account to look for in the list: `name`, `@name`, a profile URL, or its numeric "
        "TikTok user ID."
    ),
    "sweepEvery": (
        "An unfollow can only be seen by reading the whole following list (as deep as TikTok serves "
        "it): a sweep costs about 1 DumplingAI credit per 100 accounts followed (a handle following 2,000 "
        "accounts: 21 credits, then 22 from the second sweep on). 1 to 168 hours; default 24. The first "
        "sweep only records the list. Accounts pushed out of the readable part of a very long list are "
        "never reported as unfollowed."
    ),
    "verifiedOnly": "Only verified accounts." + FILTER_NOTE,
    "excludePrivate": "Leave out private accounts." + FILTER_NOTE,
    "minFollowers": "Only accounts with at least this many followers." + FILTER_NOTE,
    "maxFollowers": (
        "Only accounts with at most this many followers (not less than Minimum Followers)." + FILTER_NOTE
    ),
    "keywords": (
        "Only accounts whose username, display name or bio contains any of these words "
        "(not case-sensitive; up to 20, each up to 100 characters)." + FILTER_NOTE
    ),
    "checkEvery": (
        "How often this handle may be checked; each check costs 1 DumplingAI credit. Checks in "
        "between answer from what was already found, for free. If several of your Zaps watch the "
        "same handle with the same key, the most frequent setting applies to all of them. Leave "
        "empty for the service's default."
    ),
}
# Triggers watch one handle, or a list (a watchlist): both fields are offered, the service
# refuses both at once.
WATCH_HELP = {
    "handle": (
        "One handle, or a list: fill either this field (one TikTok account: `name`, `@name` or a "
        "profile URL like `https://www.tiktok.com/@name`) or **TikTok Handles (Watchlist)**, not both."
    ),
    "handles": (
        "One handle, or a list: up to 50 TikTok handles to watch in this one Zap (each as `name`, "
        "`@name` or a profile URL; no duplicates). Each handle is checked and charged on its own, as "
        "if it were alone. Every item says which handle "
        "followed the account, and the same account followed by two of your handles is two items. "
        "Leave empty when you fill **TikTok Handle**."
    ),
}
WATCH_INPUTS = ["handle", "handles"]

# "Followed by many": a watchlist only. Each handle is a new-follows watch, so the cost is that of
# New Followed Account per handle; what a handle followed before it was watched never counts.
CROWD_HELP = {
    "handles": (
        f"The watchlist: {MIN_CROWD_HANDLES} to {MAX_HANDLES} TikTok handles (each as `name`, `@name` or a "
        "profile URL; no duplicates). Each handle is checked as New Followed Account checks it: 1 DumplingAI credit per handle per check "
        "(a 10-handle watchlist costs 10 credits a check); checks inside **Check Every** answer from what was "
        "already found, for free. Only follows made after a handle is first watched count: the accounts it "
        "already followed then (its baseline) never do."
    ),
    "minHandles": (
        f"How many handles of the watchlist must have followed the same account (at least {MIN_CROWD_HANDLES}, "
        "at most the number of handles). The account triggers once, when this many is reached."
    ),
    "withinDays": (
        f"Count only follows detected within this many days of each other (1 to {MAX_WITHIN_DAYS}). Follows a "
        "handle made before it was first watched never count."
    ),
}
CROWD_ONLY = ("minHandles", "withinDays")  # subscription fields of event followed_by_many only
CROWD_INPUTS = ["handles", "minHandles", "withinDays", "checkEvery", *FILTER_KEYS]

# The action filters page by page: say what a filtered page costs.
ACTION_HELP = {
    key: INPUT_HELP[key].replace(
        FILTER_NOTE,
        " Filters apply to each page read: a page whose accounts are all filtered out still costs "
        "its credit, and Accounts Returned counts the accounts kept.")
    for key in FILTER_KEYS
}

# Output types Zapier knows; detectedAt is a datetime for Zapier's formatter.
OUTPUT_TYPE_OVERRIDES = {"detectedAt": "datetime"}

LINE_ITEMS_KEY = "following"  # FollowingResponseSchema.following: a list of accounts


def _type(field: mfields.Field) -> str:
    if isinstance(field, mfields.Boolean):
        return "boolean"
    if isinstance(field, mfields.Integer):
        return "integer"
    if isinstance(field, (mfields.Float, mfields.Decimal, mfields.Number)):
        return "number"
    if isinstance(field, (mfields.DateTime,)):
        return "datetime"
    return "string"  # CheckEvery too: Zapier sends a choice's value as a string


def _label(key: str, table: dict) -> str:
    try:
        return table[key]
    except KeyError:
        raise SystemExit(
            f"generate_fields.py: no Zapier label for schema field {key!r}; add it to LABELS"
        ) from None


def output_fields(schema: Schema, prefix: str = "", label_prefix: str = "") -> list[dict]:
    out = []
    for key, field in schema.fields.items():
        key = field.data_key or key
        if isinstance(field, mfields.List) and isinstance(field.inner, mfields.Nested):
            out.extend(output_fields(field.inner.schema, f"{prefix}{key}[]", LINE_ITEM_LABELS[key]))
            continue
        if isinstance(field, mfields.Nested):  # Zapier flattens a nested object as key__child
            out.extend(output_fields(field.schema, f"{prefix}{key}__", "Account: "))
            continue
        is_list = isinstance(field, mfields.List)  # a list of plain values: Zapier's `list: true`
        item = {
            "key": f"{prefix}{key}",
            "label": label_prefix + _label(key, LABELS),
            "type": OUTPUT_TYPE_OVERRIDES.get(key, _type(field.inner if is_list else field)),
        }
        if is_list:
            item["list"] = True
        out.append(item)
    return out


def input_fields(schema: Schema, keys: list[str], help_overrides: dict | None = None) -> list[dict]:
    out = []
    for key in keys:
        field = schema.fields[key]  # KeyError: the schema lost a field the app sends
        is_list = isinstance(field, mfields.List)
        item = {
            "key": key,
            "label": _label(key, INPUT_LABELS),
            "type": _type(field.inner if is_list else field),
            "required": bool(field.required),
            "helpText": (help_overrides or {}).get(key) or INPUT_HELP.get(key)
            or field.metadata.get("description") or key,
        }
        if is_list:
            item["list"] = True
        if isinstance(field, CheckEvery):
            item["choices"] = check_every_choices()
        out.append(item)
    return out


def build() -> dict:
    event_out = output_fields(FollowEventSchema())
    unfollow_out = output_fields(UnfollowEventSchema())
    unfollow_inputs = [*WATCH_INPUTS, "sweepEvery", *FILTER_KEYS]
    crowd_out = output_fields(FollowedByManyEventSchema())
    return {
        "_comment": "GENERATED by manifests/zapier/generate_fields.py from schemas/*.py; do not edit by hand.",
        "account": output_fields(AccountSchema()),
        "followEvent": event_out,
        "unfollowEvent": unfollow_out,
        "crowdEvent": crowd_out,
        "operations": {
            "list_following": {
                "type": "search",
                "requestSchema": "schemas.following.FollowingRequestSchema",
                "responseSchema": "schemas.following.FollowingResponseSchema",
                "inputFields": input_fields(FollowingRequestSchema(), list(FollowingRequestSchema().fields), ACTION_HELP),
                # every request key comes from a user input
                "requestKeys": list(FollowingRequestSchema().fields),
                "outputFields": output_fields(FollowingResponseSchema()),
            },
            "check_following": {
                "type": "search",
                "requestSchema": "schemas.following.CheckRequestSchema",
                "responseSchema": "schemas.following.CheckResponseSchema",
                "inputFields": input_fields(CheckRequestSchema(), list(CheckRequestSchema().fields)),
                "requestKeys": list(CheckRequestSchema().fields),
                "outputFields": output_fields(CheckResponseSchema()),
            },
            # The polling trigger, deduplicated on eventId (primary). `new_following` below is
            # the same trigger as it was before eventId: hidden, deduplicated on the account id,
            # kept so that existing Zaps do not fire again for follows they already saw.
            "new_followed_account": {
                "type": "trigger",
                "requestSchema": "schemas.triggers.TriggerRequestSchema",
                "responseSchema": "schemas.account.FollowEventSchema",
                "inputFields": input_fields(TriggerRequestSchema(), [*WATCH_INPUTS, "checkEvery", *FILTER_KEYS],
                                            WATCH_HELP),
                # limit comes from Zapier's bundle.meta.limit; since/afterSequence are for Make/API
                "requestKeys": [*WATCH_INPUTS, "checkEvery", "limit", *FILTER_KEYS],
                "outputFields": [{**f, "primary": True} if f["key"] == "eventId" else f for f in event_out],
            },
            "new_following": {
                "type": "trigger",
                "requestSchema": "schemas.triggers.TriggerRequestSchema",
                "responseSchema": "schemas.account.FollowEventSchema",
                # one handle, required, as it always was
                "inputFields": [{**f, "required": True} for f in input_fields(TriggerRequestSchema(), ["handle"])],
                "requestKeys": ["handle", "limit"],
                "outputFields": event_out,
            },
            "new_following_instant": {
                "type": "trigger",
                "requestSchema": "schemas.hooks.SubscriptionCreateSchema",
                "responseSchema": "schemas.account.FollowEventSchema",
                "inputFields": _with_default(
                    input_fields(SubscriptionCreateSchema(), [*WATCH_INPUTS, "checkEvery", *FILTER_KEYS], WATCH_HELP),
                    "checkEvery", "auto"),
                # targetUrl is Zapier's bundle.targetUrl; event is left to its default (new_following)
                "requestKeys": [k for k in SubscriptionCreateSchema().fields
                                if k not in ("event", "sweepEvery", *CROWD_ONLY)],
                "outputFields": event_out,
            },
            "credit_usage": {
                "type": "search",
                "requestSchema": None,  # GET /usage takes no input
                "responseSchema": "schemas.usage.UsageSchema",
                "inputFields": [],
                "requestKeys": [],
                "outputFields": output_fields(UsageSchema()),
            },
            # Unfollows (polling, deduplicated on eventId, and instant).
            "new_unfollow": {
                "type": "trigger",
                "requestSchema": "schemas.unfollows.UnfollowedTriggerRequestSchema",
                "responseSchema": "schemas.unfollows.UnfollowEventSchema",
                "inputFields": input_fields(UnfollowedTriggerRequestSchema(), unfollow_inputs, WATCH_HELP),
                "requestKeys": [*WATCH_INPUTS, "limit", "sweepEvery", *FILTER_KEYS],
                "outputFields": [{**f, "primary": True} if f["key"] == "eventId" else f for f in unfollow_out],
            },
            "new_unfollow_instant": {
                "type": "trigger",
                "requestSchema": "schemas.hooks.SubscriptionCreateSchema",
                "responseSchema": "schemas.unfollows.UnfollowEventSchema",
                "inputFields": input_fields(SubscriptionCreateSchema(), unfollow_inputs, WATCH_HELP),
                # targetUrl is Zapier's bundle.targetUrl; event is always "unfollowed"; sweeps, not checkEvery
                "requestKeys": [k for k in SubscriptionCreateSchema().fields if k not in ("checkEvery", *CROWD_ONLY)],
                "outputFields": unfollow_out,
            },
            # Followed by many (polling, deduplicated on eventId, and instant): a watchlist only.
            "followed_by_many": {
                "type": "trigger",
                "requestSchema": "schemas.crowds.FollowedByManyTriggerRequestSchema",
                "responseSchema": "schemas.crowds.FollowedByManyEventSchema",
                "inputFields": _crowd_inputs(FollowedByManyTriggerRequestSchema()),
                # limit comes from Zapier's bundle.meta.limit; since/afterSequence are for Make/API
                "requestKeys": [*CROWD_INPUTS, "limit"],
                "outputFields": [{**f, "primary": True} if f["key"] == "eventId" else f for f in crowd_out],
            },
            "followed_by_many_instant": {
                "type": "trigger",
                "requestSchema": "schemas.hooks.SubscriptionCreateSchema",
                "responseSchema": "schemas.crowds.FollowedByManyEventSchema",
                "inputFields": _with_default(_crowd_inputs(SubscriptionCreateSchema()), "checkEvery", "auto"),
                # targetUrl is Zapier's bundle.targetUrl; event is always "followed_by_many"
                "requestKeys": [*CROWD_INPUTS, "targetUrl", "event"],
                "outputFields": crowd_out,
            },
        },
    }


def _with_default(items: list[dict], key: str, value: str) -> list[dict]:
    """The instant trigger checks adaptively unless the user picks a fixed interval."""
    for item in items:
        if item["key"] == key:
            item["default"] = value
    return items


def _crowd_inputs(schema: Schema) -> list[dict]:
    """The watchlist is required here, and the thresholds show the trigger's defaults (the
    subscription schema, shared with the other events, leaves them unset)."""
    defaults = FollowedByManyTriggerRequestSchema().fields
    items = input_fields(schema, CROWD_INPUTS, CROWD_HELP)
    for item in items:
        if item["key"] == "handles":
            item["required"] = True
        if item["key"] in ("minHandles", "withinDays"):
            item["default"] = str(defaults[item["key"]].load_default)
    return items


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when fields.json is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = FIELDS_JSON.read_text(encoding="utf-8") if FIELDS_JSON.exists() else ""
        if current != text:
            print(f"{FIELDS_JSON} is stale: run {Path(__file__).relative_to(ROOT)}", file=sys.stderr)
            return 1
        return 0
    FIELDS_JSON.write_text(text, encoding="utf-8")
    print(f"wrote {FIELDS_JSON}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
