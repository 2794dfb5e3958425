"""Every error the service answers, and the one table mapping upstream failures to them.

CONTRACT.md: always JSON `{"error": <sentence>, "code": <snake_case>}`; never HTML,
never a stack trace, never a 200 carrying an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str
    headers: dict = field(default_factory=dict)
    fields: dict | None = None

    def body(self) -> dict:
        out = {"error": self.message, "code": self.code}
        if self.fields:
            out["fields"] = self.fields
        return out


class FailureKind(StrEnum):
    """What went wrong upstream; the keys of UPSTREAM_ERRORS (a StrEnum equals its string)."""

    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    NO_CREDITS = "no_credits"
    NOT_FOUND = "not_found"
    LIST_HIDDEN = "list_hidden"  # a 200 with no accounts while `total` says there are some
    RATE_LIMITED = "rate_limited"
    UPSTREAM_ERROR = "upstream_error"
    MALFORMED = "malformed"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"


@dataclass
class UpstreamFailure(Exception):
    """Raised by the upstream client; `kind` is a FailureKind (a key of UPSTREAM_ERRORS)."""

    kind: str
    upstream_status: int | None = None
    detail: str = ""
    retry_after: float | None = None
    rate_limit: dict = field(default_factory=dict)


# kind -> (our status, code, sentence). `{detail}` is the upstream's own message.
UPSTREAM_ERRORS: dict[str, tuple[int, str, str]] = {
    "bad_request": (400, "upstream_rejected", "DumplingAI refused the request: {detail}"),
    "unauthorized": (401, "invalid_api_key", "DumplingAI refused the API key. Check the key in your DumplingAI dashboard (API keys) and reconnect."),
    "no_credits": (402, "insufficient_credits", "Your DumplingAI account has no credits left. Top up your DumplingAI credits, then try again."),
    "not_found": (404, "handle_not_found", "TikTok has no following list for this handle: it may be misspelled, renamed or banned. Check the handle on tiktok.com and try again."),
    "list_hidden": (404, "following_list_hidden", "This account keeps its following list private, so it cannot be read. Nothing can be listed or watched until the account makes it public."),
    "rate_limited": (429, "rate_limited", "DumplingAI is rate limiting requests for this key. Wait a moment and try again."),
    "upstream_error": (502, "upstream_error", "DumplingAI had a problem answering ({detail}). Try again in a few minutes."),
    "malformed": (502, "upstream_malformed", "DumplingAI answered with data we could not read. Try again in a few minutes."),
    "unreachable": (502, "upstream_unreachable", "We could not reach DumplingAI. Try again in a few minutes."),
    "timeout": (504, "upstream_timeout", "DumplingAI did not answer in time. Try again; a smaller limit answers faster."),
}

# upstream HTTP status -> kind
UPSTREAM_STATUS_KINDS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "no_credits",
    404: "not_found",
    429: "rate_limited",
    503: "rate_limited",
    500: "upstream_error",
    502: "upstream_error",
}


def kind_for_status(status: int) -> str:
    return UPSTREAM_STATUS_KINDS.get(status, "upstream_error" if status >= 500 else "bad_request")


def from_upstream(failure: UpstreamFailure) -> ApiError:
    status, code, sentence = UPSTREAM_ERRORS[failure.kind]
    detail = (failure.detail or f"status {failure.upstream_status}")[:200]
    headers = {}
    if status == 429:
        headers["Retry-After"] = str(max(1, int(round(failure.retry_after or 30))))
    return ApiError(status, code, sentence.format(detail=detail), headers)


# Errors the service raises itself.
def missing_key() -> ApiError:
    return ApiError(401, "missing_api_key", "Send your DumplingAI API key as 'Authorization: Bearer <key>'.")


def not_found(what: str = "This resource") -> ApiError:
    return ApiError(404, "not_found", f"{what} does not exist.")


def too_many_subscriptions(limit: int) -> ApiError:
    return ApiError(409, "too_many_subscriptions",
                    f"This API key already has {limit} webhook subscriptions, the most one key may have. "
                    "Delete ones you no longer use (turn off unused Zaps or scenarios), then subscribe again.")


def too_many_crowds(limit: int) -> ApiError:
    return ApiError(409, "too_many_crowds",
                    f"This API key already has {limit} \"followed by many\" watchlists (handles, minHandles and "
                    "withinDays), the most one key may have. Reuse one, or wait until unused ones expire "
                    "(WATCH_IDLE_DAYS).", fields={"handles": [f"at most {limit} different watchlists per key"]})


def invalid_body(messages: dict | None = None) -> ApiError:
    """A 400 whose sentence names the first invalid field and its message (the rest are in
    `fields`), so a user who only sees the sentence still knows what to fix."""
    messages = messages or {}
    sentence = "Some fields are missing or invalid."
    if messages:
        name, detail = next(iter(messages.items()))
        while isinstance(detail, dict) and detail:  # nested (a list item, a sub-object): its first message
            key, detail = next(iter(detail.items()))
            name = f"{name}[{key}]" if isinstance(key, int) else f"{name}.{key}"
        text = detail[0] if isinstance(detail, list) and detail else detail
        more = f" ({len(messages) - 1} more in 'fields')" if len(messages) > 1 else ""
        sentence = f"{name}: {str(text).rstrip('.')}.{more}"
    return ApiError(400, "invalid_request", sentence, fields=messages)


def not_json() -> ApiError:
    return ApiError(400, "invalid_json", "The request body must be a JSON object.")


def not_json_content_type() -> ApiError:
    return ApiError(415, "unsupported_media_type",
                    "The request body must be a JSON object sent with 'Content-Type: application/json'.")


def json_too_deep() -> ApiError:
    return ApiError(400, "invalid_json", "The request body is nested too deeply; send a flat JSON object.")


def body_too_large(max_bytes: int | None) -> ApiError:
    limit = f" ({max_bytes // 1024} KiB)" if max_bytes else ""
    return ApiError(413, "body_too_large", f"The request body is larger than we accept{limit}; "
                                           "send only the documented fields.")


BUDGET_HEADER = "X-Daily-Credit-Budget"


def invalid_budget_header() -> ApiError:
    return ApiError(400, "invalid_budget_header",
                    f"The {BUDGET_HEADER} header must be a whole number of credits, 0 or more "
                    "(0 spends nothing); fix it in your connection settings.",
                    fields={BUDGET_HEADER: ["Must be a whole number, 0 or more."]})


def daily_budget_reached(resets_at) -> ApiError:
    when = resets_at.strftime("%Y-%m-%d %H:%M") + " UTC"
    return ApiError(402, "daily_budget_reached",
                    f"Your daily credit budget ({BUDGET_HEADER}) is spent for today: nothing more is asked of "
                    f"DumplingAI until it resets at {when} (midnight UTC). Raise the budget in your connection "
                    "to continue now.")
