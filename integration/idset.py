"""PURE packing of account ids (no I/O): the sets behind `integration.known` and the
ordered `top_ids` of a watch.

TikTok ids are decimal strings that fit in 64 bits (the upstream doc: "6123456789012345678"),
so a set of them is stored as a sorted array of unsigned 64-bit little-endian integers:
8 bytes per id, and membership is a binary search over the stored bytes (a memoryview,
nothing decoded). Delta-encoded varints were measured against this (bench/bench_storage.py):
on realistic ids they save under 1 byte per id (7.0-7.9 B against 8) but a lookup must decode
the whole segment in Python (~0.6 ms per 1,000 ids against ~10 us for 30 binary searches),
so fixed width wins.

An id that is not a canonical decimal below 2**64 ("007", "+5", "abc", 2**64) cannot be
packed without changing it: `partition` sets it apart, and the caller keeps it as text.
"""
from __future__ import annotations

import json
import sys
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence

TOP = 2**64 - 1
_ITEM = "Q"
assert array(_ITEM).itemsize == 8
_LITTLE = sys.byteorder == "little"


def number(account_id: str) -> int | None:
    """The id as its number when it is a canonical decimal (no sign, no leading zero, ASCII
    digits only) below 2**64, so that str(number) == account_id; else None. Parsed once:
    a refresh partitions every id it reads."""
    if (account_id.isascii() and account_id.isdigit() and len(account_id) <= 20
            and (account_id[0] != "0" or account_id == "0")):
        n = int(account_id)
        if n <= TOP:
            return n
    return None


def packable(account_id: str) -> bool:
    return number(account_id) is not None


def partition(ids: Iterable[str]) -> tuple[list[int], set[str]]:
    """The packable ids as sorted unique numbers, and the others as they are."""
    numbers, others = set(), set()
    for account_id in ids:
        n = number(account_id)
        if n is None:
            others.add(account_id)
        else:
            numbers.add(n)
    return sorted(numbers), others


def pack(numbers: Iterable[int]) -> bytes:
    """Numbers (of a set: sorted and unique) -> the stored bytes, in the order given."""
    packed = array(_ITEM, numbers)
    if not _LITTLE:
        packed.byteswap()
    return packed.tobytes()


def _view(blob: bytes) -> Sequence[int]:
    if _LITTLE:  # no copy: bisect reads the stored bytes in place
        return memoryview(blob).cast(_ITEM)
    values = array(_ITEM)
    values.frombytes(blob)
    values.byteswap()
    return values


def unpack(blob: bytes) -> list[int]:
    return list(_view(blob))


def contains(blob: bytes, number: int) -> bool:
    return bool(among(blob, (number,)))


def among(blob: bytes, numbers: Iterable[int]) -> list[int]:
    """The `numbers` the set holds (one view of the blob for all of them)."""
    values = _view(blob)
    size = len(values)
    found = []
    for n in numbers:
        i = bisect_left(values, n)
        if i < size and values[i] == n:
            found.append(n)
    return found


def merged(blob: bytes, numbers: Iterable[int]) -> list[int]:
    return sorted(set(_view(blob)).union(numbers))


def without(blob: bytes, numbers: Iterable[int]) -> list[int]:
    gone = set(numbers)
    return [n for n in _view(blob) if n not in gone]


def pieces(numbers: Sequence[int], most: int) -> list[Sequence[int]]:
    """Sorted numbers cut into as few runs of at most `most` as possible, of even sizes (a
    segment that overflows splits in halves rather than leaving one id alone)."""
    if not numbers:
        return [numbers]
    count = -(-len(numbers) // most)
    size = -(-len(numbers) // count)
    return [numbers[i:i + size] for i in range(0, len(numbers), size)]


def segment_of(lows: Sequence[int], number: int) -> int:
    """Index of the segment holding `number`: the last whose low bound is <= it (the first
    segment's bound is 0, so there is always one)."""
    return max(bisect_right(lows, number) - 1, 0)


# An ordered list of ids (a watch's top_ids): the numbers in order, 8 bytes each, or,
# when any id cannot be packed, the list as compressed JSON. The first byte says which.
_NUMBERS, _JSON = b"\x01", b"\x02"


def pack_list(ids: Sequence[str]) -> bytes:
    if not ids:
        return b""
    numbers = [number(i) for i in ids]
    if None not in numbers:
        return _NUMBERS + pack(numbers)
    return _JSON + zlib.compress(json.dumps(list(ids), separators=(",", ":")).encode())


def unpack_list(blob: bytes | None) -> tuple[str, ...]:
    if not blob:
        return ()
    kind, body = blob[:1], blob[1:]
    if kind == _NUMBERS:
        return tuple(map(str, _view(body)))
    if kind == _JSON:
        return tuple(json.loads(zlib.decompress(body)))
    raise ValueError(f"unknown packed list kind {kind!r}")
