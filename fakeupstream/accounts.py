"""Upstream-shaped followed-account entries, deterministic in their index."""
from __future__ import annotations

import base64
import hashlib


def make_account(i: int) -> dict:
    """The `followingList` entry for fake TikTok user number `i` (as in the upstream doc)."""
    digest = hashlib.sha256(f"user{i}".encode()).digest()
    return {
        "user": {
            "id": str(6900000000000000000 + i),  # 19 digits, like real TikTok ids
            "uniqueId": f"user{i}",
            "nickname": f"User {i}",
            "avatarThumb": f"https://example.com/avatars/user{i}.jpeg",
            # Non-ASCII on purpose: clients must decode the body as UTF-8.
            "signature": f"Bio of user {i} \u2728",
            "verified": i % 10 == 0,
            "secUid": "MS4wLjABAAAA" + base64.urlsafe_b64encode(digest).decode().rstrip("="),
            "privateAccount": i % 7 == 0,
        },
        "stats": {
            "followerCount": (i * 7919) % 5_000_000,
            "followingCount": (i * 31) % 2_000,
            "heartCount": (i * 104_729) % 50_000_000,
            "videoCount": i % 500,
            "diggCount": (i * 17) % 10_000,
        },
    }
