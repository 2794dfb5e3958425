"""Memory of the web processes when a 200 MB body is refused: RSS of every gunicorn worker
before and after sending 200 MB (Content-Length declared, and chunked), as `make run` starts
the service. Goal: no growth (the body is refused with a 413 and never held in memory).

    .venv/bin/python bench/bench_body_memory.py [MB]
"""
from __future__ import annotations

import os
import socket
import sys

from harness import API_KEY, FakeProcess, fresh_sqlite, service_env, start_service, stop_service

MB = int(sys.argv[1]) if len(sys.argv) > 1 else 200
PATH = b"/v1/api/triggers/new-following"


def worker_pids(parent: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1]) == parent:
                    pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return sorted(pids)


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def send_big(port: int, chunked: bool) -> tuple[str, int]:
    """Send up to MB megabytes; returns the status line and how many MB went out before the server stopped us."""
    head = (b"POST " + PATH + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() +
            b"\r\nContent-Type: application/json\r\n")
    head += b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: %d\r\n\r\n" % (MB << 20)
    block = b"x" * (1 << 20)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for _ in range(MB):
                sock.sendall(b"100000\r\n" + block + b"\r\n" if chunked else block)
                sent += 1
        except OSError:  # the server answered and closed
            pass
        sock.settimeout(10)
        try:
            answer = sock.recv(200)
        except OSError:
            answer = b"(connection closed)"
    return answer.split(b"\r\n", 1)[0].decode(), sent


def send_big_warmup(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        body = b'{"handle": "alice", "pad": "' + b"x" * 100_000 + b'"}'
        sock.sendall(b"POST " + PATH + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        sock.recv(200)


def main():
    import gunicorn_settings  # noqa: F401  (prints the configuration used)

    fake = FakeProcess()
    service = start_service(fresh_sqlite(), fake.url, workers=gunicorn_settings.WORKERS,
                            threads=gunicorn_settings.THREADS, extra_env=service_env())
    port = int(service.url.rsplit(":", 1)[1])
    try:
        for _ in range(20):  # warm up every worker's code paths (a normal call and a small refused body)
            send_big_warmup(port)
        pids = worker_pids(service.process.pid)
        before = {pid: rss_kib(pid) for pid in pids}
        for chunked in (False, True, False, True):
            status, sent = send_big(port, chunked)
            print(f"{'chunked' if chunked else 'Content-Length'} {MB} MB: {status!r}, {sent} MB written before the server stopped reading")
        after = {pid: rss_kib(pid) for pid in pids}
        for pid in pids:
            print(f"worker {pid}: RSS {before[pid] / 1024:.1f} MiB before, {after[pid] / 1024:.1f} MiB after "
                  f"({(after[pid] - before[pid]) / 1024:+.1f} MiB)   (goal: no growth)")
    finally:
        stop_service(service)
        fake.stop()


if __name__ == "__main__":
    main()
