"""The flat account shape every route and event uses (CONTRACT.md), read from the upstream's
entries (their documented shape: integration/upstream_shape.py)."""
from __future__ import annotations

from marshmallow import ValidationError

PROFILE_URL = "https://www.tiktok.com/@"  # + the username
STAT_FIELDS = ("followerCount", "followingCount", "heartCount", "videoCount", "diggCount")
_NO_STATS: dict = {}
# Accepted exact types (`type(v) in ...`: True is not an int here); optional fields may be null or absent.
_ID, _TEXT, _FLAG, _COUNT = (str, int), (str, type(None)), (bool, type(None)), (int, type(None))


def flatten(entry) -> dict:
    """One upstream `followingList` entry -> one flat account: nulls and absent fields take the
    documented defaults, a numeric id becomes a string. An entry off the documented shape
    raises ValidationError (upstream_shape.UpstreamEntries: the page is refused, a 502).

    Checked and built in one pass, spelled out key by key: every page of every refresh goes
    through here, and a separate check over a table of types cost more than the building
    (bench/bench_overhead_split.py)."""
    if type(entry) is not dict or type(user := entry.get("user")) is not dict:
        raise ValidationError("entry.user must be an object")
    stats = entry.get("stats")
    if stats is None:
        stats = _NO_STATS
    elif type(stats) is not dict:
        raise ValidationError("entry.stats must be an object")
    get, stat = user.get, stats.get
    user_id, unique_id = get("id"), get("uniqueId")
    nickname, avatar, signature, sec_uid = get("nickname"), get("avatarThumb"), get("signature"), get("secUid")
    verified, private = get("verified"), get("privateAccount")
    followers, following, hearts = stat("followerCount"), stat("followingCount"), stat("heartCount")
    videos, diggs = stat("videoCount"), stat("diggCount")
    if type(user_id) not in _ID or user_id == "" or type(unique_id) is not str or not unique_id:
        raise ValidationError("user.id and user.uniqueId are required (a string; the id may be a number)")
    if (type(nickname) not in _TEXT or type(avatar) not in _TEXT or type(signature) not in _TEXT
            or type(sec_uid) not in _TEXT or type(verified) not in _FLAG or type(private) not in _FLAG):
        raise ValidationError("a user field has the wrong type")
    if (type(followers) not in _COUNT or type(following) not in _COUNT or type(hearts) not in _COUNT
            or type(videos) not in _COUNT or type(diggs) not in _COUNT):
        raise ValidationError("a stats field has the wrong type")
    return {
        "id": str(user_id),
        "uniqueId": unique_id,
        "nickname": nickname or "",
        "profileUrl": PROFILE_URL + unique_id,
        "avatarThumb": avatar or "",
        "signature": signature or "",
        "verified": verified is True,
        "privateAccount": private is True,
        "secUid": sec_uid or "",
        "followerCount": followers or 0,
        "followingCount": following or 0,
        "heartCount": hearts or 0,
        "videoCount": videos or 0,
        "diggCount": diggs or 0,
    }
