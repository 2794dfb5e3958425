"""The flat account shape every route and event uses (CONTRACT.md)."""
from __future__ import annotations

PROFILE_URL = "https://www.tiktok.com/@{}"
STAT_FIELDS = ("followerCount", "followingCount", "heartCount", "videoCount", "diggCount")


def flatten(entry: dict) -> dict:
    """One upstream `followingList` entry (already validated) -> one flat account."""
    user, stats = entry["user"], entry.get("stats") or {}
    return {
        "id": str(user["id"]),
        "uniqueId": user["uniqueId"],
        "nickname": user.get("nickname") or "",
        "profileUrl": PROFILE_URL.format(user["uniqueId"]),
        "avatarThumb": user.get("avatarThumb") or "",
        "signature": user.get("signature") or "",
        "verified": bool(user.get("verified")),
        "privateAccount": bool(user.get("privateAccount")),
        "secUid": user.get("secUid") or "",
        **{name: int(stats.get(name) or 0) for name in STAT_FIELDS},
    }
