"""`python -m integration.probe --handle NAME [--max-credits 10] [--yes] [--json]`

Run once when setting up. Everything the detection does rests on our reading of the
upstream's documentation (CONTRACT.md "The upstream we wrap"); this reads a few pages of
the real service with the operator's key (`DUMPLING_API_KEY`) and checks each assumption:
newest follow first, cursors in Unix seconds that move back page by page, an exclusive
`minTime` (re-asked at a page boundary), `count` honoured (asked 1, 30 and 100), `hasMore`,
empty pages, duplicates, ids as strings, field presence, page depth; it also reports the
latency of every request and the rate-limit headers. Each verdict is "holds" or "differs:
the service will ..."; where a setting adapts the service, it is printed.

It spends at most `--max-credits` (1 per successful request), asked before spending.
Exit status: 0 it ran (whatever the verdicts), 1 the upstream failed, 2 bad usage or no key.
The key is never printed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from integration.accounts import STAT_FIELDS
from integration.config import Settings
from integration.errors import UpstreamFailure, from_upstream
from integration.handles import InvalidHandle, normalize_handle
from integration.upstream import DumplingClient

SIZES = (1, 30, 100)  # the `count`s asked of the first page
WALK_COUNT = 100      # the `count` of every later page: the most depth per credit
USER_FIELDS = ("id", "uniqueId", "nickname", "avatarThumb", "signature", "verified", "secUid", "privateAccount")
RATE_HEADER_WORDS = ("ratelimit", "rate-limit", "retry-after")
MS_THRESHOLD = 1e11   # a Unix time in seconds stays below this until the year 5138


class Step(str, Enum):
    SIZE = "size"    # the first page, asked with each of SIZES
    WALK = "walk"    # the next page: minTime = the previous page's minCursor
    REASK = "reask"  # the same minTime again, after an empty page that said hasMore


class Stop(str, Enum):
    """Why the probe stopped reading."""
    END = "end"          # the upstream said (or showed) there is no more
    BUDGET = "budget"    # --max-credits spent
    CURSORS = "cursors"  # the cursors cannot lead to an older page (absent, 0, not moving back)
    HIDDEN = "hidden"    # the first page is empty with a non-zero total
    EMPTY = "empty"      # empty pages that keep saying hasMore


class Status(str, Enum):
    HOLDS = "holds"
    DIFFERS = "differs"
    UNTESTED = "untested"


class Assumption(str, Enum):
    LIST_READABLE = "list_readable"
    NEWEST_FIRST = "newest_first"
    CURSOR_UNIT = "cursor_unit"
    CURSORS_ADVANCE = "cursors_advance"
    MIN_TIME_EXCLUSIVE = "min_time_exclusive"
    COUNT_HONOURED = "count_honoured"
    HAS_MORE = "has_more"
    EMPTY_PAGE = "empty_page"
    NO_DUPLICATES = "no_duplicates"
    STRING_IDS = "string_ids"
    FIELDS_PRESENT = "fields_present"
    FULL_DEPTH = "full_depth"


STATEMENTS = {  # what the documentation (as we read it) promises
    Assumption.LIST_READABLE: "the handle's following list can be read",
    Assumption.NEWEST_FIRST: "pages list the newest follow first",
    Assumption.CURSOR_UNIT: "maxCursor/minCursor are follow times in Unix seconds",
    Assumption.CURSORS_ADVANCE: "each next page's cursors are older than the minTime asked",
    Assumption.MIN_TIME_EXCLUSIVE: "minTime returns accounts followed strictly before it",
    Assumption.COUNT_HONOURED: "count sets the page size",
    Assumption.HAS_MORE: "hasMore is true exactly when more accounts follow",
    Assumption.EMPTY_PAGE: "an empty page means the end of the list",
    Assumption.NO_DUPLICATES: "every account appears once",
    Assumption.STRING_IDS: "user.id is a string",
    Assumption.FIELDS_PRESENT: "every documented field is present",
    Assumption.FULL_DEPTH: "the whole list can be paged through",
}
SAFE_MODE = ("runs in safe mode: it reads the first page only and announces only the accounts standing before "
             "one it has seen before (counted in detection_safe_mode_total and shown as the watch's detection mode)")


@dataclass(frozen=True)
class Page:
    """One successful request and its raw answer."""
    step: Step
    count: int
    min_time: int | float | None
    body: dict
    headers: dict
    seconds: float

    @property
    def entries(self) -> list[dict]:
        return [e for e in self.body.get("followingList", []) if isinstance(e, dict)]

    @property
    def ids(self) -> list[str]:
        return [str((e.get("user") or {}).get("id")) for e in self.entries]

    @property
    def has_more(self) -> bool:
        return self.body.get("hasMore") is True

    def cursor(self, name: str) -> int | float | None:
        value = self.body.get(name)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def total(self) -> int | None:
        value = self.body.get("total")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Verdict:
    assumption: Assumption
    status: Status
    detail: str
    setting: str | None = None  # e.g. "PAGE_SIZE=20": what to set for the service to adapt


class OutOfBudget(Exception):
    pass


# ---------------------------------------------------------------- reading (I/O)

def collect(fetch: Callable[..., object], max_credits: int) -> tuple[list[Page], Stop]:
    """Read the pages the verdicts need, within `max_credits` successful requests.
    `fetch(count=, min_time=)` is DumplingClient.fetch_raw bound to a key and handle."""
    pages: list[Page] = []

    def ask(step: Step, count: int, min_time=None) -> Page:
        if len(pages) >= max_credits:
            raise OutOfBudget
        raw = fetch(count=count, min_time=min_time)
        if not isinstance(raw.body, dict) or not isinstance(raw.body.get("followingList"), list):
            raise UpstreamFailure("malformed", 200, detail="the answer has no followingList")
        pages.append(Page(step, count, min_time, raw.body, raw.headers, raw.seconds))
        return pages[-1]

    try:
        return pages, _read(ask)
    except OutOfBudget:
        return pages, Stop.BUDGET


def _read(ask) -> Stop:
    first = ask(Step.SIZE, SIZES[0])
    if not first.entries and not first.has_more:
        return Stop.HIDDEN if first.total else Stop.END
    for size in SIZES[1:]:
        page = ask(Step.SIZE, size)
    while True:  # walk back in time with minTime = minCursor
        cursor = page.cursor("minCursor")
        if not (page.has_more or len(page.entries) >= page.count):
            return Stop.END  # a short page saying "no more": trust it
        if not cursor:
            return Stop.CURSORS
        following = ask(Step.WALK, WALK_COUNT, cursor)
        if not following.entries and following.has_more:
            following = ask(Step.REASK, WALK_COUNT, cursor)  # once: is the empty page a glitch?
            if not following.entries:
                return Stop.EMPTY if following.has_more else Stop.END
        if not following.entries:
            return Stop.END
        newer = following.cursor("minCursor")
        if newer is None or newer >= cursor:
            return Stop.CURSORS  # asking again would not move back in time: no endless loop
        page = following


# ---------------------------------------------------------------- verdicts (pure)

def _chain(pages: list[Page]) -> list[Page]:
    """The pages read back in time: the largest first page, then each non-empty later one."""
    sized = [p for p in pages if p.step is Step.SIZE]
    return sized[-1:] + [p for p in pages if p.step is not Step.SIZE and p.entries]


def _pairs(pages: list[Page]) -> list[tuple[Page, Page]]:
    chain = _chain(pages)
    return list(zip(chain, chain[1:]))


def _name(page: Page, account_id: str) -> str:
    for entry in page.entries:
        user = entry.get("user") or {}
        if str(user.get("id")) == account_id:
            return "@" + str(user.get("uniqueId") or account_id)
    return account_id


def _iso(seconds: float) -> str:
    try:
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "out of range"


def check_list_readable(pages, stop, page_size, now):
    first = pages[0]
    if first.entries:
        return Status.HOLDS, f"{len(first.entries)} account(s) on the first page"
    if stop is Stop.HIDDEN:
        return Status.DIFFERS, (
            f"a 200 with no accounts and hasMore false while total says ~{first.total}: the list is hidden "
            "or private; the service will answer 404 saying so and pause watches of this handle with that "
            "reason. Probe a public handle for the other verdicts")
    return Status.UNTESTED, "the handle follows nobody: probe a handle that follows 100+ accounts"


def check_newest_first(pages, stop, page_size, now):
    sized = [p for p in pages if p.step is Step.SIZE and p.entries]
    for page in pages:
        high, low = page.cursor("maxCursor"), page.cursor("minCursor")
        if page.entries and high is not None and low is not None and high < low:
            return Status.DIFFERS, (f"a page reported maxCursor {high} below minCursor {low}; the detection "
                                    f"{SAFE_MODE}; no setting needed")
    for small, large in zip(sized, sized[1:]):
        n = min(len(small.ids), len(large.ids))
        if small.ids[:n] != large.ids[:n]:
            return Status.DIFFERS, (
                f"the first accounts depend on the page size (count={small.count}: {small.ids[:2]}, "
                f"count={large.count}: {large.ids[:2]}), so pages are not strictly newest first; the "
                f"detection cannot trust the newest prefix and {SAFE_MODE}; no setting needed")
    if len(sized) < 2:
        return Status.UNTESTED, "needs the first page at two sizes"
    return Status.HOLDS, "the first accounts are the same at count=" + ", ".join(str(p.count) for p in sized)


def check_cursor_unit(pages, stop, page_size, now):
    full = [p for p in pages if p.entries]
    if not full:
        return Status.UNTESTED, "no account was listed"
    if any("maxCursor" not in p.body or "minCursor" not in p.body for p in full):
        return Status.DIFFERS, (f"the cursor keys are absent, so the service cannot page by time; the detection "
                                f"reads the first page only and {SAFE_MODE}; no setting needed")
    values = [p.body[name] for p in full for name in ("maxCursor", "minCursor")]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        return Status.DIFFERS, f"cursors are not numbers (e.g. {values[0]!r}); the detection {SAFE_MODE}"
    if not any(values):
        return Status.DIFFERS, (f"cursors are always 0, so the service cannot page by time; the detection "
                                f"reads the first page only and {SAFE_MODE}; no setting needed")
    newest = max(values)
    if newest > MS_THRESHOLD:
        return Status.DIFFERS, (
            f"cursors are in milliseconds (newest {newest} = {_iso(newest / 1000)}); the detection uses cursors "
            "only to order pages and gives them back as minTime unchanged, so paging keeps working; a "
            "same-second re-ask moves by 1 ms instead of 1 s; no setting needed")
    if 1e9 <= newest <= now + 86400:
        return Status.HOLDS, f"Unix seconds (newest follow {_iso(newest)})"
    return Status.DIFFERS, f"cursors do not look like Unix times (newest {newest}); the detection {SAFE_MODE}"


def check_cursors_advance(pages, stop, page_size, now):
    pairs = [(a, b) for a, b in _pairs(pages) if a.cursor("minCursor") and b.cursor("maxCursor") is not None]
    for newer, older in pairs:
        asked = older.min_time
        if (older.cursor("maxCursor"), older.cursor("minCursor")) == (newer.cursor("maxCursor"), newer.cursor("minCursor")):
            return Status.DIFFERS, (
                f"every page reports the same cursors ({newer.cursor('maxCursor')}, {newer.cursor('minCursor')}); "
                f"the detection stops paging when a cursor does not move back (no endless loop) and {SAFE_MODE}; "
                "no setting needed")
        if older.cursor("maxCursor") > asked:
            return Status.DIFFERS, (
                f"the page asked with minTime={asked} reported maxCursor={older.cursor('maxCursor')}, newer than "
                f"minTime: cursors do not move back page by page; the detection stops paging when a cursor "
                f"does not move back (no endless loop) and {SAFE_MODE}; no setting needed")
    if not pairs:
        return Status.UNTESTED, "no second page could be asked by cursor"
    return Status.HOLDS, f"{len(pairs)} page(s) asked by minTime, each older than the minTime asked"


def check_min_time_exclusive(pages, stop, page_size, now):
    pairs = _pairs(pages)
    if not pairs:
        return Status.UNTESTED, "no second page could be asked by cursor"
    newer, older = pairs[0]
    boundary = newer.ids[-1]
    if boundary in older.ids:
        return Status.DIFFERS, (
            f"asked with minTime={older.min_time} (the previous page's minCursor), the page repeated the boundary "
            f"account {_name(newer, boundary)}: minTime is inclusive; the detection de-duplicates the repeated "
            "boundary account and re-asks boundaries; no setting needed")
    return Status.HOLDS, f"the page asked with minTime={older.min_time} started after the boundary account"


def check_count_honoured(pages, stop, page_size, now):
    sized = [p for p in pages if p.step is Step.SIZE]
    if not any(p.entries for p in sized):
        return Status.UNTESTED, "no account was listed"
    shown = ", ".join(f"count={p.count} gave {len(p.entries)}" for p in sized)
    longer = [p for p in sized if len(p.entries) > p.count]
    if longer:
        return Status.DIFFERS, (f"count is ignored ({shown}); the detection takes pages as they come; "
                                "no setting needed")
    more_later = any(p.entries for p in pages if p.step is not Step.SIZE)
    capped = [p for p in sized if len(p.entries) < p.count and (p.has_more or more_later)]
    if capped:
        largest = min(len(p.entries) for p in capped)
        if largest < page_size:
            return (Status.DIFFERS, f"count is capped at {largest} ({shown}); set PAGE_SIZE={largest}",
                    f"PAGE_SIZE={largest}")
        return Status.HOLDS, f"count honoured up to {largest} ({shown}); PAGE_SIZE={page_size} fits"
    return Status.HOLDS, f"{shown}; the largest page is at least {max(len(p.entries) for p in sized)}"


def check_has_more(pages, stop, page_size, now):
    sized = [p for p in pages if p.step is Step.SIZE]
    for small, large in zip(sized, sized[1:]):
        if small.entries and not small.has_more and len(set(large.ids)) > len(set(small.ids)):
            return Status.DIFFERS, (
                f"count={small.count} said hasMore false, yet count={large.count} listed {len(large.entries)} "
                "accounts; the detection stops reading there but takes it as the list's end only when total "
                "agrees, and reports a possible miss instead of guessing; no setting needed")
    for newer, older in _pairs(pages):
        if not newer.has_more:
            return Status.DIFFERS, (
                f"a page said hasMore false, yet the next page listed {len(older.entries)} accounts; the detection "
                "does not take hasMore false as the end of a full page and stops on an empty or short page "
                "or PAGE_CAP instead; no setting needed")
    if stop is Stop.EMPTY:
        return Status.DIFFERS, (
            "hasMore stays true after the last account (an empty page, asked twice, still says hasMore); "
            "the detection stops at an empty page and at PAGE_CAP (no endless paging); no setting needed")
    if not any(p.entries for p in pages):
        return Status.UNTESTED, "no account was listed"
    return Status.HOLDS, "hasMore agreed with every page that followed"


def check_empty_page(pages, stop, page_size, now):
    for i, page in enumerate(pages):
        if page.entries or not page.has_more:
            continue
        after = pages[i + 1] if i + 1 < len(pages) else None
        if after is not None and after.step is Step.REASK and after.entries:
            return Status.DIFFERS, (
                f"an empty page said hasMore true at minTime={page.min_time}, and the same request again listed "
                f"{len(after.entries)} accounts; the detection re-asks an empty page once and never takes it "
                "as the end; no setting needed")
        return Status.DIFFERS, ("an empty page said hasMore true (and asked again, it stayed empty); the "
                                "detection stops there and at PAGE_CAP; no setting needed")
    if not any(p.entries for p in pages):
        return Status.UNTESTED, "no account was listed"
    return Status.HOLDS, "no empty page said hasMore true"


def check_no_duplicates(pages, stop, page_size, now):
    for page in pages:
        twice = [i for i, n in Counter(page.ids).items() if n > 1]
        if twice:
            return Status.DIFFERS, (f"{_name(page, twice[0])} appears twice on one page; the detection "
                                   "de-duplicates accounts by id; no setting needed")
    seen: set[str] = set()
    for newer, older in _pairs(pages):
        seen |= set(newer.ids)
        again = (set(older.ids) & seen) - {newer.ids[-1]}  # the boundary is min_time_exclusive's verdict
        if again:
            return Status.DIFFERS, (f"{_name(older, sorted(again)[0])} appears on two pages; the detection "
                                   "de-duplicates accounts by id; no setting needed")
    if not any(p.entries for p in pages):
        return Status.UNTESTED, "no account was listed"
    return Status.HOLDS, "no account appeared twice"


def check_string_ids(pages, stop, page_size, now):
    ids = [(e.get("user") or {}).get("id") for p in pages for e in p.entries]
    if not ids:
        return Status.UNTESTED, "no account was listed"
    other = [i for i in ids if not isinstance(i, str)]
    if other:
        return Status.DIFFERS, (f"{len(other)} of {len(ids)} ids are JSON {type(other[0]).__name__}s "
                                f"(e.g. {other[0]}); the service turns them into strings; no setting needed")
    return Status.HOLDS, f"all {len(ids)} ids are strings"


def field_presence(pages: list[Page]) -> dict[str, dict[str, int]]:
    """field -> {"present", "null", "absent"} over every account listed (`stats.x` for stats)."""
    out = {name: Counter() for name in USER_FIELDS + tuple("stats." + s for s in STAT_FIELDS)}
    for entry in (e for p in pages for e in p.entries):
        user, stats = entry.get("user") or {}, entry.get("stats")
        for name in out:
            holder, key = (stats, name[6:]) if name.startswith("stats.") else (user, name)
            if not isinstance(holder, dict) or key not in holder:
                out[name]["absent"] += 1
            else:
                out[name]["null" if holder[key] is None else "present"] += 1
    return {name: {k: counts[k] for k in ("present", "null", "absent")} for name, counts in out.items()}


def check_fields_present(pages, stop, page_size, now):
    presence = field_presence(pages)
    listed = sum(len(p.entries) for p in pages)
    if not listed:
        return Status.UNTESTED, "no account was listed"
    gaps = [f"{name} null {c['null']}, absent {c['absent']}"
            for name, c in presence.items() if c["null"] or c["absent"]]
    if gaps:
        return Status.DIFFERS, (f"of {listed} account entries: " + "; ".join(gaps) + "; the service shows a "
                                "missing text as \"\" and a missing count as 0; no setting needed")
    return Status.HOLDS, f"every field present in all {listed} accounts"


def check_full_depth(pages, stop, page_size, now):
    chain = _chain(pages)
    read = len({i for p in chain for i in p.ids})
    total = next((p.total for p in reversed(pages) if p.total is not None), None)
    if not read or stop in (Stop.CURSORS, Stop.HIDDEN):
        return Status.UNTESTED, "could not page through the list"
    if stop is Stop.BUDGET:
        return Status.HOLDS, f"read {read} of ~{total} accounts in {len(chain)} page(s) without a stop (budget spent)"
    if total is not None and read < total * 0.9 - 10:  # `total` is approximate
        return Status.DIFFERS, (
            f"the list ended after {read} accounts while total says ~{total}: the upstream stops early (a depth "
            "cap); older follows are invisible, and the detection compares only what it can read; no setting needed")
    return Status.HOLDS, f"read all {read} accounts (total ~{total}) in {len(chain)} page(s)"


CHECKS = {
    Assumption.LIST_READABLE: check_list_readable,
    Assumption.NEWEST_FIRST: check_newest_first,
    Assumption.CURSOR_UNIT: check_cursor_unit,
    Assumption.CURSORS_ADVANCE: check_cursors_advance,
    Assumption.MIN_TIME_EXCLUSIVE: check_min_time_exclusive,
    Assumption.COUNT_HONOURED: check_count_honoured,
    Assumption.HAS_MORE: check_has_more,
    Assumption.EMPTY_PAGE: check_empty_page,
    Assumption.NO_DUPLICATES: check_no_duplicates,
    Assumption.STRING_IDS: check_string_ids,
    Assumption.FIELDS_PRESENT: check_fields_present,
    Assumption.FULL_DEPTH: check_full_depth,
}


def assess(pages: list[Page], stop: Stop, page_size: int, now: float) -> list[Verdict]:
    if not pages:
        return [Verdict(a, Status.UNTESTED, "nothing was read") for a in Assumption]
    return [Verdict(a, *check(pages, stop, page_size, now)) for a, check in CHECKS.items()]


# ---------------------------------------------------------------- the report

def report(handle: str, base_url: str, max_credits: int, pages: list[Page], stop: Stop,
           verdicts: list[Verdict]) -> dict:
    seconds = [p.seconds for p in pages]
    rate = {k: v for k, v in (pages[-1].headers.items() if pages else ())
            if any(word in k.lower() for word in RATE_HEADER_WORDS)}
    return {
        "handle": handle,
        "baseUrl": base_url,
        "maxCredits": max_credits,
        "creditsSpent": len(pages),  # every request in `pages` answered 200: 1 credit each
        "stoppedBecause": stop.value,
        "requests": [{
            "step": p.step.value, "count": p.count, "minTime": p.min_time, "accounts": len(p.entries),
            "hasMore": p.body.get("hasMore"), "maxCursor": p.body.get("maxCursor"),
            "minCursor": p.body.get("minCursor"), "total": p.body.get("total"), "seconds": round(p.seconds, 4),
        } for p in pages],
        "latency": {"min": min(seconds), "median": statistics.median(seconds), "max": max(seconds)} if seconds else None,
        "rateLimitHeaders": rate,
        "fieldPresence": field_presence(pages),
        "verdicts": [{"assumption": v.assumption.value, "statement": STATEMENTS[v.assumption],
                      "status": v.status.value, "detail": v.detail, "setting": v.setting} for v in verdicts],
        "settings": [v.setting for v in verdicts if v.setting],
    }


def render_text(out: dict) -> str:
    lines = [f"Probe of @{out['handle']} at {out['baseUrl']}: {out['creditsSpent']} credit(s) spent "
             f"(at most {out['maxCredits']}); stopped: {out['stoppedBecause']}", "",
             "  #  step   count  minTime        accounts  hasMore  maxCursor      minCursor      total    seconds"]
    for i, r in enumerate(out["requests"], 1):
        cells = [r["step"], r["count"], r["minTime"], r["accounts"], r["hasMore"], r["maxCursor"], r["minCursor"],
                 r["total"]]
        text = [("-" if c is None else str(c).lower() if isinstance(c, bool) else str(c)) for c in cells]
        lines.append(f"{i:>3}  {text[0]:<6} {text[1]:>5}  {text[2]:<14} {text[3]:>8}  {text[4]:<7}  "
                     f"{text[5]:<14} {text[6]:<14} {text[7]:<8} {r['seconds']:.3f}")
    if out["latency"]:
        lat = out["latency"]
        lines.append(f"\nLatency: min {lat['min']:.3f} s, median {lat['median']:.3f} s, max {lat['max']:.3f} s")
    rate = ", ".join(f"{k}: {v}" for k, v in out["rateLimitHeaders"].items()) or "none sent"
    lines.append(f"Rate-limit headers (last answer): {rate}")
    gaps = {k: v for k, v in out["fieldPresence"].items() if v["null"] or v["absent"]}
    listed = sum(r["accounts"] for r in out["requests"])
    lines.append(f"Field presence over {listed} account entries: " + (
        "; ".join(f"{k} present {v['present']}, null {v['null']}, absent {v['absent']}" for k, v in gaps.items())
        if gaps else "every field present"))
    lines += ["", "Verdicts (assumption: what the documentation promises)"]
    for v in out["verdicts"]:
        said = f"holds ({v['detail']})" if v["status"] == "holds" else f"{v['status']}: {v['detail']}"
        lines.append(f"  {v['assumption']} ({v['statement']}): {said}")
    lines.append("")
    lines.append("Settings to apply: " + (", ".join(out["settings"]) if out["settings"] else "none"))
    return "\n".join(lines)


# ---------------------------------------------------------------- command line

def positive_integer(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None, *, settings: Settings | None = None, stdin=None, stdout=None,
         stderr=None) -> int:
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    parser = argparse.ArgumentParser(prog="python -m integration.probe",
                                     description="Check once what the real upstream does (key: DUMPLING_API_KEY).")
    parser.add_argument("--handle", required=True, help="a TikTok handle that follows 100+ accounts")
    parser.add_argument("--max-credits", type=positive_integer, default=10, help="most credits to spend (default 10)")
    parser.add_argument("--yes", action="store_true", help="do not ask before spending")
    parser.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    args = parser.parse_args(argv)  # exits 2 on bad usage

    def fail(code: int, message: str) -> int:
        print(f"probe: {message}", file=stderr)
        return code

    try:
        handle = normalize_handle(args.handle)
        settings = settings or Settings.from_env()
    except (InvalidHandle, RuntimeError, ValueError) as exc:
        return fail(2, str(exc))
    key = settings.probe_api_key.strip()
    if not key:
        return fail(2, "DUMPLING_API_KEY is not set: export your DumplingAI API key, then run the probe again.")
    print(f"The probe reads @{handle}'s following list from {settings.dumpling_base_url}: at most "
          f"{args.max_credits} request(s), at most {args.max_credits} credit(s) (1 per successful request).",
          file=stderr)
    if not args.yes:
        print(f"Spend up to {args.max_credits} credit(s)? [y/N] ", end="", file=stderr, flush=True)
        if stdin.readline().strip().lower() not in ("y", "yes"):
            print("Nothing spent.", file=stderr)
            return 0
    client = DumplingClient(settings.dumpling_base_url, connect_timeout=settings.upstream_connect_timeout,
                            read_timeout=settings.upstream_read_timeout)
    answered = []  # successful requests so far: what a failure part-way has already cost

    def fetch(**ask):
        answered.append(client.fetch_raw(key, handle, "API", **ask))
        return answered[-1]

    try:
        pages, stop = collect(fetch, args.max_credits)
    except UpstreamFailure as failure:
        error = from_upstream(failure)
        return fail(1, f"the upstream failed ({error.code}, upstream status {failure.upstream_status}) after "
                       f"{len(answered)} credit(s) spent: {error.message}")
    finally:
        client.close()
    out = report(handle, settings.dumpling_base_url, args.max_credits, pages, stop,
                 assess(pages, stop, settings.page_size, time.time()))
    print(json.dumps(out, indent=2) if args.json else render_text(out), file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
