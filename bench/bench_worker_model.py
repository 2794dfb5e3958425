"""Threads or asyncio for the worker's waiting (issue 14 item 3: "choose threads or asyncio on
the measurement").

A refresh spends ~500 ms waiting on the upstream and ~2 ms of CPU. What the waiting model
costs is the CPU of keeping C calls in flight and handing each answer to the code that uses
it. This bench keeps C calls in flight against the fake upstream (its own process, answering
one page of 30 accounts after --delay seconds) for --seconds, and reports calls/s and this
process's CPU per call for:

- threads + DumplingClient: the worker today (a lane per thread, libcurl with a handle per
  thread, the capped read, the page's validation; urllib3 and the deadline watchdog before);
- threads + bare urllib3: the same waiting without our client's work;
- threads + minimal exchange: blocking sockets and the HTTP/1.1 exchange the asyncio lanes
  use, so it and `asyncio streams` differ by the waiting model alone;
- asyncio streams: C coroutines on one event loop, each with a kept-alive connection, a
  minimal HTTP/1.1 exchange written for this bench (no library: none is a dependency), the
  body parsed with orjson as above;
- asyncio + a thread hand-off per answer: as above, then `loop.run_in_executor` for each
  answer, which is what the refresh's database commit (synchronous SQLAlchemy) would need.

    .venv/bin/python bench/bench_worker_model.py [--concurrency C] [--delay S] [--seconds S]
"""
from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import orjson
import urllib3

from harness import API_KEY, seeded_fake
from integration.upstream import PATH, DumplingClient

BODY = orjson.dumps({"handle": "alice", "requestSource": "API", "count": 30})
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


def in_threads(concurrency: int, seconds: float, call) -> tuple[int, float]:
    """(calls, CPU seconds) of `concurrency` threads calling `call` until the time is up."""
    stop = time.monotonic() + seconds
    counts = [0] * concurrency

    def lane(i: int) -> None:
        while time.monotonic() < stop:
            call()
            counts[i] += 1

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(concurrency)]
    cpu = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.process_time() - cpu


def threads_client(base_url: str, concurrency: int):
    client = DumplingClient(base_url)
    return lambda: client.fetch_page(API_KEY, "alice", "API", count=30)


def threads_urllib3(base_url: str, concurrency: int):
    pool = urllib3.PoolManager(maxsize=concurrency, retries=False)
    timeout = urllib3.Timeout(connect=3, read=12)
    url = base_url + PATH

    def call():
        response = pool.urlopen("POST", url, body=BODY, headers=HEADERS, timeout=timeout, retries=False,
                                redirect=False, preload_content=False)
        orjson.loads(response.read())
        response.release_conn()

    return call


def threads_sockets(base_url: str, _concurrency: int):
    """The asyncio lanes' minimal HTTP/1.1 exchange on blocking sockets, one per thread: the
    same work as `asyncio streams`, so the two differ by the waiting model alone."""
    parts = urlsplit(base_url)
    request = _request(parts)
    local = threading.local()

    def call():
        if not hasattr(local, "sock"):
            local.sock = socket.create_connection((parts.hostname, parts.port))
            local.file = local.sock.makefile("rb")
        local.sock.sendall(request)
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += local.file.readline()
        orjson.loads(local.file.read(_length(head)))

    return call


def _request(parts) -> bytes:
    return (f"POST {PATH} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
            + f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY


def _length(head: bytes) -> int:
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"upstream answered {status}")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bytes:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    return await reader.readexactly(_length(head))


def in_asyncio(base_url: str, concurrency: int, seconds: float, hand_off: bool) -> tuple[int, float]:
    parts = urlsplit(base_url)
    request = _request(parts)
    executor = ThreadPoolExecutor(max_workers=32) if hand_off else None  # the worker's DB pool size

    async def lane(stop: float) -> int:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        done = 0
        try:
            while time.monotonic() < stop:
                body = await _exchange(reader, writer, request)
                if executor is not None:
                    await asyncio.get_running_loop().run_in_executor(executor, orjson.loads, body)
                else:
                    orjson.loads(body)
                done += 1
        finally:
            writer.close()
        return done

    async def run() -> int:
        stop = time.monotonic() + seconds
        return sum(await asyncio.gather(*(lane(stop) for _ in range(concurrency))))

    cpu = time.process_time()
    calls = asyncio.run(run())
    used = time.process_time() - cpu
    if executor is not None:
        executor.shutdown()
    return calls, used


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    fake = seeded_fake()
    fake.control("config", {"delay": args.delay})
    models = {
        "threads + DumplingClient (today)": lambda: in_threads(
            args.concurrency, args.seconds, threads_client(fake.url, args.concurrency)),
        "threads + bare urllib3": lambda: in_threads(
            args.concurrency, args.seconds, threads_urllib3(fake.url, args.concurrency)),
        "threads + minimal exchange": lambda: in_threads(
            args.concurrency, args.seconds, threads_sockets(fake.url, args.concurrency)),
        "asyncio streams": lambda: in_asyncio(fake.url, args.concurrency, args.seconds, hand_off=False),
        "asyncio + thread hand-off": lambda: in_asyncio(fake.url, args.concurrency, args.seconds, hand_off=True),
    }
    best: dict[str, tuple[float, float]] = {}
    try:
        for _ in range(args.rounds):  # interleaved: every model sees the same machine
            for name, run in models.items():
                calls, cpu = run()
                figure = (calls / args.seconds, cpu * 1000 / max(calls, 1))
                if name not in best or figure[1] < best[name][1]:
                    best[name] = figure
    finally:
        fake.stop()
    print(f"worker waiting model: {args.concurrency} calls in flight, upstream {args.delay * 1000:.0f} ms, "
          f"{args.seconds:.0f} s x {args.rounds} rounds (least CPU per call)")
    print(f"{'':36}{'calls/s':>9}{'CPU/call':>12}")
    for name, (rate, cpu) in best.items():
        print(f"{name:36}{rate:>9.1f}{cpu:>9.3f} ms")


if __name__ == "__main__":
    main()
