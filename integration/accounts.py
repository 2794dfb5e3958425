"""The flat account shape every route and event uses (CONTRACT.md)."""
from __future__ import annotations

PROFILE_URL = "https://www.tiktok.com/@"  # + the username
STAT_FIELDS = ("followerCount", "followingCount", "heartCount", "videoCount", "diggCount")
_NO_STATS: dict = {}


def flatten(entry: dict) -> dict:
    """One upstream `followingList` entry (already validated: integration/upstream_shape.py,
    so a stat is an int or null and a flag a bool or null) -> one flat account.

    Spelled out key by key: every page of every refresh goes through here, and this form
    costs half of a loop over STAT_FIELDS with int()/bool() (bench/bench_overhead_split.py)."""
    user = entry["user"]
    get, stat = user.get, (entry.get("stats") or _NO_STATS).get
    unique_id = user["uniqueId"]
    return {
        "id": str(user["id"]),
        "uniqueId": unique_id,
        "nickname": get("nickname") or "",
        "profileUrl": PROFILE_URL + unique_id,
        "avatarThumb": get("avatarThumb") or "",
        "signature": get("signature") or "",
        "verified": get("verified") is True,
        "privateAccount": get("privateAccount") is True,
        "secUid": get("secUid") or "",
        "followerCount": stat("followerCount") or 0,
        "followingCount": stat("followingCount") or 0,
        "heartCount": stat("heartCount") or 0,
        "videoCount": stat("videoCount") or 0,
        "diggCount": stat("diggCount") or 0,
    }
