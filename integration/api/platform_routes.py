"""Routes under /v1/<platform>/: the action, the auth test and the polling trigger."""
from __future__ import annotations

from flask import g
from flask.views import MethodView

from integration import crowds, following, items, sweeps, usage, watchlists, watches
from integration.api import Blueprint, Caller, json_answer, key_required, services
from integration.authcheck import check_key, remember
from integration.filters import Filters
from integration.schedule import Wish
from schemas.account import FollowEventSchema
from schemas.auth import AuthTestSchema
from schemas.crowds import FollowedByManyEventSchema, FollowedByManyTriggerRequestSchema
from schemas.following import (CheckRequestSchema, CheckResponseSchema, FollowingRequestSchema,
                               FollowingResponseSchema)
from schemas.triggers import TriggerRequestSchema
from schemas.usage import UsageSchema
from schemas.unfollows import UnfollowedTriggerRequestSchema, UnfollowEventSchema

blp = Blueprint("platform", __name__, url_prefix="/v1/<platform:platform>",
                description="The same routes for Zapier, Make and direct API use; the segment sets the upstream requestSource.")

UPSTREAM_ERRORS = (400, 401, 402, 404, 429, 502, 504)


@blp.route("/auth/test")
class AuthTest(MethodView):
    @blp.response(200, AuthTestSchema)
    @blp.documented_errors(401, 402, 429, 502, 504)
    @key_required
    def get(self, platform, caller: Caller):
        """Check the API key (free when it passed recently)"""
        return check_key(services(), caller.key, platform, g.meter)


@blp.route("/following")
class Following(MethodView):
    @blp.arguments(FollowingRequestSchema)
    @blp.response(200, FollowingResponseSchema)
    @blp.documented_errors(*UPSTREAM_ERRORS)
    @key_required
    def post(self, args, platform, caller: Caller):
        """List the accounts a handle follows (pages across `minCursor` up to `limit`)

        Filters apply per page: a page whose accounts were all filtered out still costs its
        credit, and `count` counts the accounts kept."""
        # Already in the documented shape (flatten builds it): skip a second serialization
        # pass through the schema, which cost more than the rest of our overhead.
        return json_answer(list_for(services(), caller, platform, args, g.meter))


def list_for(svc, caller: Caller, platform, args: dict, meter) -> dict:
    """The action's work, whichever path serves it (this view, or the direct path of
    integration/api/action_path.py): `args` is the body the schema loaded."""
    result = following.list_following(
        svc.client, caller.key, args["handle"], platform,
        count=args.get("count"), min_time=args.get("minTime"), limit=args.get("limit"),
        page_cap=svc.settings.page_cap, budget_seconds=svc.settings.action_budget_seconds,
        filters=Filters.from_request(args), meter=meter)
    remember(svc, caller.owner)
    return result


@blp.route("/triggers/new-following")
class NewFollowing(MethodView):
    @blp.arguments(TriggerRequestSchema)
    @blp.response(200, FollowEventSchema(many=True))
    @blp.documented_errors(*UPSTREAM_ERRORS)
    @key_required
    def post(self, args, platform, caller: Caller):
        """Polling trigger: new follows, newest first (a bare array)

        The first call for a handle takes a baseline (no events). Zapier also receives the
        baseline accounts after the journal (sequence 0) so its dedupe is seeded and the Zap
        editor shows real samples. Calls inside REFRESH_WINDOW_SECONDS (or the watch's
        `checkEvery`) share one upstream refresh; over the daily budget the journal answers.

        `handles` (a watchlist, 1 to 50): each handle is its own watch, charged as above;
        items of all handles merged newest first (detectedAt, then eventId), `limit` applied
        to the merged list. Handles not refreshed within ACTION_BUDGET_SECONDS answer from
        their journals (a handle never watched before then has no items yet).
        """
        svc = services()
        query = _item_query(args, items.NEW_FOLLOWING)
        answers: dict[int, list] = {}  # read in each watch's own transaction (open_watch's `answer`)

        def answer(session, watch_id: int, riding) -> list:
            return items.trigger_items(svc, watch_id, platform, session=session, riding=riding, **query)
        return _answer(svc, args, platform, caller, _opener(svc, args, platform, caller, answer, answers),
                       query, answers)


@blp.route("/triggers/unfollowed")
class Unfollowed(MethodView):
    @blp.arguments(UnfollowedTriggerRequestSchema)
    @blp.response(200, UnfollowEventSchema(many=True))
    @blp.documented_errors(*UPSTREAM_ERRORS)
    @key_required
    def post(self, args, platform, caller: Caller):
        """Polling trigger: accounts the handle stopped following, newest first (a bare array)

        An unfollow is seen by sweeping the readable list: a poll sweeps only when the last
        sweep is `sweepEvery` hours old (default 24; the smallest any caller asked), costing
        ceil(accounts / 100) credits, plus 1 from the second sweep on; other polls answer from
        the journal (and refresh new follows as the new-following trigger does, 1 credit; that
        refresh also announces the unfollows its own page proves, at no extra credit). The
        first sweep only records the list. An account that fell out of the readable part of the
        list (lists are served to a limited depth) is never reported as unfollowed.

        `handles` (a watchlist, 1 to 50): each handle swept and charged on its own, items
        merged newest first, as for new follows."""
        svc = services()
        sweep_every = args.get("sweepEvery") or sweeps.SWEEP_EVERY_DEFAULT
        meter = g.meter

        def open_one(handle: str) -> tuple[int, bool]:
            watch_id, result = watches.open_watch(svc, caller.owner, handle, caller.key, platform, meter,
                                                  Wish(None, caller.budget))
            sweeps.want(svc, watch_id, sweep_every)
            swept = sweeps.run_if_due(svc, watch_id, caller.key, platform, meter,
                                      budget_seconds=svc.settings.action_budget_seconds)
            return watch_id, result.refreshed or swept is not None

        return _answer(svc, args, platform, caller, open_one, _item_query(args, items.UNFOLLOWED))


@blp.route("/triggers/followed-by-many")
class FollowedByMany(MethodView):
    @blp.arguments(FollowedByManyTriggerRequestSchema)
    @blp.response(200, FollowedByManyEventSchema(many=True))
    @blp.documented_errors(409, *UPSTREAM_ERRORS)
    @key_required
    def post(self, args, platform, caller: Caller):
        """Polling trigger: accounts that at least `minHandles` of `handles` followed within `withinDays`, newest first

        Each account fires once, when the follow that makes `minHandles` of the handles is
        detected; `followedByHandles` names the handles counted, in the order they followed.
        Each handle is refreshed exactly as by the new-following trigger: 1 credit per handle
        refreshed (a 50-handle list: up to 50 credits a poll; `checkEvery` and the daily
        budget apply per handle; polls in between answer for free). Only follows detected
        after a handle was first watched count: the accounts it already followed then (its
        baseline) have no known time. Accounts already over the threshold when a list is first
        used do not fire (they crossed before). At most MAX_CROWDS_PER_KEY different lists
        (handles, minHandles, withinDays) per key (409 past it)."""
        svc = services()
        definition = (args["handles"], args["minHandles"], args["withinDays"])
        crowds.refuse_if_full(svc, caller.owner, *definition)
        opened = _open(svc, args["handles"], caller, _opener(svc, args, platform, caller))
        crowd_id = crowds.open_crowd(svc, caller.owner, opened, *definition)
        crowds.evaluate(svc, crowd_id)
        return crowds.trigger_items(svc, crowd_id, limit=args["limit"], since=args.get("since"),
                                    filters=Filters.from_request(args))


def _item_query(args, kind: str) -> dict:
    """What items.trigger_items reads for a polling trigger's arguments."""
    return {"limit": args["limit"], "since": args.get("since"), "after_sequence": args.get("afterSequence"),
            "filters": Filters.from_request(args), "kind": kind}


def _answer(svc, args, platform, caller: Caller, open_one, query: dict, answers: dict | None = None):
    """One handle or a watchlist (`handles`): each handle opened as its own watch, then the
    items of every watch merged newest first; `limit` applies to the merged list. A watch's
    items in `answers` were read while it was opened; the others are read now.

    The items are already in the documented shape (items.trigger_items builds them once; a
    test checks them against the schema): sent as they are, as the action's answer is."""
    handles = args.get("handles") or [args["handle"]]
    opened = _open(svc, handles, caller, open_one)
    answers = answers or {}
    lists = [answers[watch_id] if watch_id in answers else items.trigger_items(svc, watch_id, platform, **query)
             for watch_id in opened.values()]
    return json_answer(lists[0] if len(handles) == 1 else watchlists.merge(lists, args["limit"]))


def _opener(svc, args, platform, caller: Caller, answer: watches.Answer | None = None,
            answers: dict | None = None) -> watchlists.OpenOne:
    """Open (refresh) one handle's watch as the new-following trigger does; with `answer`,
    the items read while opening it go to `answers` (only once its transaction committed)."""
    wish, meter = Wish(args.get("checkEvery"), caller.budget), g.meter

    def open_one(handle: str) -> tuple[int, bool]:
        watch_id, result = watches.open_watch(svc, caller.owner, handle, caller.key, platform, meter, wish, answer)
        if result.answer is not None:
            answers[watch_id] = result.answer
        return watch_id, result.refreshed
    return open_one


def _open(svc, handles: list[str], caller: Caller, open_one) -> dict[str, int]:
    """Every handle opened (a watchlist on a small thread pool); {handle: watch id}."""
    opened, paid = watchlists.open_all(svc, caller.owner, handles, open_one,
                                       budget_seconds=svc.settings.action_budget_seconds)
    if paid:
        remember(svc, caller.owner)
    return opened


@blp.route("/following/check")
class FollowingCheck(MethodView):
    @blp.arguments(CheckRequestSchema)
    @blp.response(200, CheckResponseSchema)
    @blp.documented_errors(*UPSTREAM_ERRORS)
    @key_required
    def post(self, args, platform, caller: Caller):
        """Does `handle` follow `target`? Stops reading at the page where the target is found

        Costs 1 credit per page read (`pagesRead`, X-Credits-Used): an account followed
        recently is found on the first page. A "no" is `complete: false` when only part of
        the list could be read (PAGE_CAP pages, the ACTION_BUDGET_SECONDS budget, or the depth
        the upstream serves the list to)."""
        svc = services()
        result = following.check_follows(
            svc.client, caller.key, args["handle"], args["target"], platform,
            page_cap=svc.settings.page_cap, budget_seconds=svc.settings.action_budget_seconds, meter=g.meter)
        remember(svc, caller.owner)
        return json_answer(result)


@blp.route("/usage")
class Usage(MethodView):
    @blp.response(200, UsageSchema)
    @blp.documented_errors(400, 401)
    @key_required
    def get(self, platform, caller: Caller):
        """What watching costs this key: credits and refreshes per UTC day (the last 30 days), and per watch

        Free (no upstream call). `dailyBudget` echoes the X-Daily-Credit-Budget header when sent."""
        return usage.for_owner(services(), caller.owner, caller.budget)
