"""Replays follow/unfollow/re-follow histories against the upstream model, sweeping with the
pure `integration.unfollows` and refreshing with the detection, and counts what was decided
against the truth. Shared by tests/test_unfollows.py and bench/bench_unfollows.py."""
from __future__ import annotations

from integration.unfollows import Ask, Read, Record, next_ask, seen_in_refresh, unfollowed
from tests.upstream_model import Upstream, Watch, apply, ids


def sweep(up: Upstream, *, count: int, page_cap: int, top: int | None = None, fail_after: int | None = None):
    """One sweep; `fail_after` pages: the upstream fails then (the sweep is interrupted)."""
    pages = []
    while isinstance(r := next_ask(tuple(pages), page_cap=page_cap, count=count, top=top), Ask):
        if fail_after is not None and len(pages) >= fail_after:
            return pages, Read(False, pages=len(pages))
        pages.append(up.page(r.min_time, r.count))
    return pages, r


def replay_unfollows(up: Upstream, history, *, count: int, page_cap: int, refresh_count: int = 10,
                     free: bool = True) -> dict:
    """Ops: those of upstream_model.apply, plus ("sweep", k) (k > 0: fails after k % 4 pages
    when odd) and ("refresh", 0). With `free`, each refresh also decides the unfollows its
    pages prove against the record, and moves the record on (`seen_in_refresh`), as the
    refresh shell does. Counts false unfollows (still
    followed, or announced twice without a follow between), false follows (not followed, the
    same follow announced twice, or one older than the watch) and missed unfollows:
    `missed_pushed` would now stand beyond the part the sweep could read, `missed_readable`
    within it (what the rule's bound gives up), `missed_between` followed and unfollowed
    between two sweeps (never in a sweep). `delay` sums, over announced unfollows, the
    operations between the unfollow and its announcement."""
    w = Watch(up, refresh_count, page_cap=10)
    w.refresh()
    baseline = up.serial
    record: Record | None = None
    recent: list[dict] = []
    keys_then: dict[str, tuple] = {}     # each recorded account's list key at its sweep
    announced_gone: set[str] = set()     # unfollows emitted and not followed since
    announced_follow: dict[str, int] = {}  # id -> the follow (rank) announced last
    unfollowed_at: dict[str, int] = {}   # id -> the operation that unfollowed it
    counts = dict(sweeps=0, complete=0, credits=0, refresh_credits=0, unfollowed=0, free=0, false=0,
                  missed_readable=0, missed_pushed=0, missed_between=0, false_followed=0, false_follows=0,
                  delay=0)

    def announce(gone_ids: list[str], step: int) -> None:
        counts["false"] += sum(1 for i in gone_ids if i in up.key_of or i in announced_gone)
        counts["false_followed"] += sum(1 for i in gone_ids if i in up.key_of)
        counts["unfollowed"] += len(gone_ids)
        counts["delay"] += sum(step - unfollowed_at.get(i, step) for i in gone_ids)
        for i in gone_ids:
            w.known.discard(i)  # what the shell does: a later follow of it is new again

    ever = list(up.key_of)
    for step, (op, arg) in enumerate(list(history) + [("sweep", 0)]):
        if op == "refresh":
            before = up.requests
            out, _ = w.refresh()
            counts["refresh_credits"] += up.requests - before
            got = ids(out)
            for i in got:
                key = up.key_of.get(i)
                counts["false_follows"] += key is None or announced_follow.get(i) == key[1] or abs(key[1]) <= baseline
                if key is not None:
                    announced_follow[i] = key[1]
            recent += [{"id": i} for i in got if i not in {a["id"] for a in recent}]
            for i in got:
                keys_then[i] = up.key_of[i]
            announced_gone -= set(got)
            seen = seen_in_refresh(record, w.pages) if free and out.safe_mode is None else None
            if seen is not None:  # as the refresh shell does: announced, and the record moved on
                gone_ids = [a["id"] for a in seen.gone]
                announce(gone_ids, step)
                counts["free"] += len(gone_ids)
                announced_gone |= set(gone_ids)
                record = seen.record
                keys_then.update((a["id"], up.key_of[a["id"]]) for page in w.pages for a in page.accounts
                                 if a["id"] in up.key_of)
            continue
        if op != "sweep":
            followed = set(up.key_of)
            apply(up, op, arg, ever)
            unfollowed_at.update((i, step) for i in followed - set(up.key_of))
            continue
        fail_after = arg % 4 if arg % 2 else None
        pages, read = sweep(up, count=count, page_cap=page_cap, top=record and record.top, fail_after=fail_after)
        counts["sweeps"] += 1
        counts["credits"] += len(pages)
        gone = unfollowed(record, read)
        if not read.complete:
            assert gone == []
            continue
        counts["complete"] += 1
        gone_ids = [a["id"] for a in gone]
        announce(gone_ids, step)
        if record is not None:
            present = {a["id"] for a in read.accounts}
            recorded = {a["id"] for a in record.accounts}
            candidates = [a["id"] for a in record.accounts] + [a["id"] for a in recent]
            for i in dict.fromkeys(candidates):
                if i in up.key_of or i in gone_ids or i in present or i in announced_gone:
                    continue
                if i not in recorded:  # followed and unfollowed between two sweeps: never swept
                    counts["missed_between"] += 1
                    continue
                # Where it would stand had it stayed: readable now (a miss of the rule) or not.
                would = sum(1 for key in up.key_of.values() if key > keys_then[i])
                counts["missed_readable" if would < len(read.accounts) else "missed_pushed"] += 1
        announced_gone -= {a["id"] for a in read.accounts}  # followed again, and seen
        announced_gone |= set(gone_ids)
        record, recent = Record(read.accounts, read.top), []
        keys_then = {i: up.key_of[i] for i in (a["id"] for a in read.accounts)}
    return counts
