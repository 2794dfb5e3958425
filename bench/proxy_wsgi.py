"""The least a Python service can do per action call, at three depths, for the floor rows of
bench/bench_overhead_split.py (served behind gunicorn or granian, the fake upstream at
DUMPLING_BASE_URL):

- `app`: raw WSGI. Reads the body, adds "requestSource", one pycurl exchange with the fake (one
  easy handle per thread, its connection kept alive, the caller's Authorization forwarded, as
  the action forwards the caller's key), answers the fake's body (orjson loads + dumps).
- `flask_app`: the same work in one plain Flask route: what Flask adds.
- `client_app`: one plain Flask route calling our DumplingClient.fetch_page with a Meter, as
  the action calls it (answer check, flatten), answering the page with orjson: what our
  upstream client adds.
No database, no metrics, no logging: everything else the action does is above these.
"""
from __future__ import annotations

import io
import os
import threading

import orjson
import pycurl
from flask import Flask, Response, request

from integration.upstream import PATH, DumplingClient, Meter

UPSTREAM = os.environ["DUMPLING_BASE_URL"].rstrip("/")
ROUTE = "/v1/api/following"  # the action's path, which the bench calls: the same request line
_local = threading.local()


def _handle() -> pycurl.Curl:
    handle = getattr(_local, "handle", None)
    if handle is None:
        handle = _local.handle = pycurl.Curl()
        handle.setopt(pycurl.URL, UPSTREAM + PATH)
    return handle


def forward(body: dict, authorization: str) -> bytes:
    """The fake's answer to `body` plus requestSource, re-encoded as the action re-encodes it."""
    body["requestSource"] = "API"
    handle, answer = _handle(), io.BytesIO()
    handle.setopt(pycurl.HTTPHEADER, ["Content-Type: application/json", "Authorization: " + authorization])
    handle.setopt(pycurl.POSTFIELDS, orjson.dumps(body))
    handle.setopt(pycurl.WRITEDATA, answer)
    handle.perform()
    status = handle.getinfo(pycurl.RESPONSE_CODE)
    if status != 200:  # the server answers 500: the bench's status check stops on it
        raise RuntimeError(f"the fake answered {status}")
    return orjson.dumps(orjson.loads(answer.getvalue()))


def app(environ, start_response):
    out = forward(orjson.loads(environ["wsgi.input"].read()), environ.get("HTTP_AUTHORIZATION", ""))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]


flask_app = Flask("floor_flask")


@flask_app.post(ROUTE)
def _forwarded():
    return Response(forward(request.get_json(), request.headers.get("Authorization", "")),
                    mimetype="application/json")


client_app = Flask("floor_client")
_client = DumplingClient(UPSTREAM)


@client_app.post(ROUTE)
def _fetched():
    body = request.get_json()
    api_key = request.headers.get("Authorization", "").removeprefix("Bearer ")
    page = _client.fetch_page(api_key, body["handle"], "API", count=body["count"], meter=Meter())
    return Response(orjson.dumps({"handle": body["handle"], "following": page.accounts,
                                  "count": len(page.accounts), "hasMore": page.has_more}),
                    mimetype="application/json")
