"""The outgoing call's own cost, client stacks side by side: CPU (this process's) and wall time
per call of one page of 30 accounts from the fake upstream (its own process, answering at
once), one keep-alive connection each, interleaved rounds. Chose the action's client
(integration/upstream.py; docs/SCALING.md "The action's overhead").

    .venv/bin/python bench/bench_upstream_client.py [N]
"""
from __future__ import annotations

import argparse
import time

import orjson
import requests
import urllib3

from harness import API_KEY, seeded_fake
from integration.upstream import PATH, DumplingClient

BODY = {"handle": "alice", "requestSource": "API", "count": 30}
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


def stacks(base_url: str) -> dict:
    url = base_url + PATH
    session = requests.Session()
    session.trust_env = False  # as the client had it: no proxy lookups per call
    pool = urllib3.PoolManager(maxsize=64, retries=False)
    timeout = urllib3.Timeout(connect=3, read=12)
    client = DumplingClient(base_url)

    def with_requests():
        response = session.post(url, json=BODY, headers=HEADERS, stream=True, timeout=(3, 12))
        response.json()

    def with_urllib3():
        response = pool.urlopen("POST", url, body=orjson.dumps(BODY), headers=HEADERS, timeout=timeout,
                                retries=False, redirect=False, preload_content=False)
        orjson.loads(response.read())
        response.release_conn()

    def ours():  # libcurl (pycurl) + capped read + the answer's validation
        client.fetch_page(API_KEY, "alice", "API", count=30)

    return {"requests.Session": with_requests, "urllib3.PoolManager": with_urllib3,
            "DumplingClient.fetch_page": ours}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=2000)
    args = parser.parse_args()
    fake = seeded_fake()
    try:
        calls = stacks(fake.url)
        totals = {name: [0.0, 0.0] for name in calls}
        for name, call in calls.items():  # warm up connections and code paths
            for _ in range(100):
                call()
        for _ in range(4):  # interleaved rounds: all stacks see the same machine state
            for name, call in calls.items():
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(args.n // 4):
                    call()
                totals[name][0] += time.process_time() - cpu
                totals[name][1] += time.perf_counter() - wall
    finally:
        fake.stop()
    per = (args.n // 4) * 4
    print(f"upstream client: {per} calls each, a page of 30 accounts, the fake answering at once")
    print(f"{'':28}{'CPU/call':>10}{'wall/call':>11}")
    for name, (cpu, wall) in totals.items():
        print(f"{name:28}{cpu * 1000 / per:>8.3f} ms{wall * 1000 / per:>8.3f} ms")


if __name__ == "__main__":
    main()
