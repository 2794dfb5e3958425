"""TikTok handles as users paste them: `name`, `@name`, or a profile URL."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

# TikTok usernames: 2-24 letters, digits, underscores and periods, not ending in a period.
_USERNAME = re.compile(r"^[a-z0-9_.]{2,24}$")


class InvalidHandle(ValueError):
    pass


def normalize_handle(raw: str) -> str:
    """Return the lower-case username, or raise InvalidHandle with a message a user can act on."""
    if not isinstance(raw, str):
        raise InvalidHandle("Enter a TikTok handle as text, e.g. charlidamelio.")
    text = raw.strip()
    if "tiktok.com" in text.lower():
        url = text if "://" in text else "https://" + text
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host != "tiktok.com" and not host.endswith(".tiktok.com"):
            raise InvalidHandle("That link is not a tiktok.com profile link.")
        segment = parts.path.strip("/").split("/")[0] if parts.path.strip("/") else ""
        if not segment.startswith("@"):
            raise InvalidHandle("Use a profile link like https://www.tiktok.com/@name.")
        text = segment
    name = text[1:] if text.startswith("@") else text
    name = name.lower()
    if not _USERNAME.match(name) or name.endswith("."):
        raise InvalidHandle(
            "Enter a TikTok handle like charlidamelio, @charlidamelio or "
            "https://www.tiktok.com/@charlidamelio (2-24 letters, digits, '_' or '.')."
        )
    return name
