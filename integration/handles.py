"""TikTok handles as users paste them: `name`, `@name`, or a profile URL.

One regular expression is the rule: the server checks it, and the OpenAPI document (and
so Zapier, Make and schemathesis) publishes the same pattern and length.
"""
from __future__ import annotations

import re

MAX_HANDLE_LENGTH = 256  # a profile link with its query string; a username is 2-24 characters
# TikTok usernames: 2-24 letters, digits, underscores and periods, not ending in a period.
_NAME = r"[A-Za-z0-9_.]{1,23}[A-Za-z0-9_]"
# `tiktok.com` spelled case-insensitively without a flag: JSON Schema patterns (ECMA 262) have none.
_PROFILE_LINK = r"(?:[Hh][Tt][Tt][Pp][Ss]?://)?(?:[A-Za-z0-9-]+\.)*[Tt][Ii][Kk][Tt][Oo][Kk]\.[Cc][Oo][Mm]/@"
_SPACE = r"[ \t]*"
HANDLE_PATTERN = (rf"^{_SPACE}(?:{_PROFILE_LINK}(?P<linked>{_NAME})(?:[/?#][!-~]*)?"
                  rf"|@?(?P<bare>{_NAME})){_SPACE}$")
_HANDLE = re.compile(HANDLE_PATTERN)


class InvalidHandle(ValueError):
    pass


def normalize_handle(raw: str) -> str:
    """Return the lower-case username, or raise InvalidHandle with a message a user can act on."""
    if not isinstance(raw, str):
        raise InvalidHandle("Enter a TikTok handle as text, e.g. charlidamelio.")
    if len(raw) > MAX_HANDLE_LENGTH:
        raise InvalidHandle(f"A TikTok handle or profile link has at most {MAX_HANDLE_LENGTH} characters.")
    match = _HANDLE.fullmatch(raw)  # fullmatch: `$` alone would also accept a trailing newline
    if match is None:
        if "/" in raw or "tiktok.com" in raw.lower():
            raise InvalidHandle("Use a tiktok.com profile link like https://www.tiktok.com/@name.")
        raise InvalidHandle(
            "Enter a TikTok handle like charlidamelio, @charlidamelio or "
            "https://www.tiktok.com/@charlidamelio (2-24 letters, digits, '_' or '.')."
        )
    return (match["linked"] or match["bare"]).lower()
