"""Filters on followed accounts (CONTRACT.md, "Beyond new follows"): PURE, no I/O.

A filter changes what is shown, never what is detected: the journal keeps every event, and
filters apply only when an answer is built (the action's accounts, a trigger's items) or when
a subscription's deliveries are written. So changing a filter later neither replays nor loses
events: it decides about the events detected from then on (and about what a trigger shows)."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

# The request keys (camelCase, as the schemas and both apps name them) -> Filters fields.
REQUEST_KEYS = {"verifiedOnly": "verified_only", "excludePrivate": "exclude_private",
                "minFollowers": "min_followers", "maxFollowers": "max_followers", "keywords": "keywords"}
KEYWORD_FIELDS = ("uniqueId", "nickname", "signature")


@dataclass(frozen=True)
class Filters:
    verified_only: bool = False
    exclude_private: bool = False
    min_followers: int | None = None
    max_followers: int | None = None
    keywords: tuple[str, ...] = ()  # kept lower-case: matching is case-insensitive

    @classmethod
    def from_request(cls, args: Mapping) -> "Filters":
        """From a validated request body (absent or null keys: no filter)."""
        values = {name: args[key] for key, name in REQUEST_KEYS.items() if args.get(key) is not None}
        if "keywords" in values:
            values["keywords"] = tuple(k.casefold() for k in values["keywords"])
        return cls(**values)

    @property
    def active(self) -> bool:
        return self != Filters()

    def keep(self, account: Mapping) -> bool:
        """Does this flat account pass every filter set?"""
        if self.verified_only and not account.get("verified"):
            return False
        if self.exclude_private and account.get("privateAccount"):
            return False
        followers = account.get("followerCount") or 0
        if self.min_followers is not None and followers < self.min_followers:
            return False
        if self.max_followers is not None and followers > self.max_followers:
            return False
        if self.keywords:
            text = " ".join(str(account.get(f) or "") for f in KEYWORD_FIELDS).casefold()
            return any(k in text for k in self.keywords)
        return True

    def to_request(self) -> dict:
        """The filters that are set, keyed as in a request (what a subscription shows)."""
        out = {key: getattr(self, name) for key, name in REQUEST_KEYS.items()}
        out["keywords"] = list(self.keywords)
        return {key: value for key, value in out.items() if value is not None and value is not False and value != []}

    def to_json(self) -> str | None:
        """What a subscription stores (None: no filter, the common case)."""
        return json.dumps(self.to_request(), separators=(",", ":")) if self.active else None

    @classmethod
    def from_json(cls, text: str | None) -> "Filters":
        return cls.from_request(json.loads(text)) if text else cls()


NO_FILTERS = Filters()
