"""The one webhook receiver of the tests and benches: a real HTTP server on 127.0.0.1.

    r = Receiver()                           # answers 200 to every POST, records it
    r.answer(500, times=2)                   # the next two POSTs get 500 (then 200 again)
    r.answer(200, delay=6)                   # the next one is answered after 6 s
    r.route("/gone", Answer(410))            # a path always answered this way
    Receiver(default=Answer(drip=0.5))       # dribbles its answer, one byte every 0.5 s
    Receiver(keep=False, on_post=fn)         # bench: count only, call fn(request) per POST

`requests` are recorded when they arrive, `received` when answered (a request whose
sender gave up before the answer still counts once answered)."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_PHRASES = {s.value: s.phrase for s in HTTPStatus}


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict = field(default_factory=dict)
    delay: float = 0.0    # seconds before answering
    body: bytes = b""
    hang: bool = False    # never answer (until close())
    drip: float | None = None  # seconds between single bytes of the answer
    drip_body: bool = False    # with drip: the status and headers at once, then the body dripped


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict  # lower-cased names
    body: bytes
    at: float      # time.time() of arrival


class Receiver:
    def __init__(self, *, default: Answer | None = None, keep: bool = True, on_post=None):
        self.default = default or Answer()
        self.keep = keep  # False: keep no request (long benches), only the counts
        self.on_post = on_post
        self.requests: list[Request] = []
        self.received: list[Request] = []
        self.started = 0      # requests that arrived
        self.answered = 0     # requests answered
        self.connections = 0  # TCP connections accepted, even ones that never send a request
        self.in_flight = 0    # requests being answered right now (until the answer is written), and the most at once
        self.max_in_flight = 0
        self.script: deque[Answer] = deque()
        self.routes: dict[str, Answer] = {}
        self.closing = threading.Event()
        self.arrived = threading.Condition()
        self.server = _Server(self)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, status: int = 200, headers: dict | None = None, times: int = 1, delay: float = 0.0,
               **kw) -> None:
        with self.arrived:
            self.script.extend([Answer(status, headers or {}, delay, **kw)] * times)

    def route(self, path: str, answer: Answer) -> None:
        self.routes[path] = answer

    def url_for(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def wait_for(self, n: int, timeout: float = 30.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: self.answered >= n, timeout)

    def wait_started(self, n: int, timeout: float = 30.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: self.started >= n, timeout)

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def _choose(self, path: str) -> Answer:
        with self.arrived:
            if self.script:
                return self.script.popleft()
        return self.routes.get(path.split("?")[0], self.default)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, receiver: Receiver):
        self.receiver = receiver
        super().__init__(("127.0.0.1", 0), _Handler)

    def verify_request(self, request, client_address):
        self.receiver.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is observable

    def log_message(self, *args):
        pass

    def do_POST(self):
        r: Receiver = self.server.receiver
        with r.arrived:
            r.in_flight += 1
            r.max_in_flight = max(r.max_in_flight, r.in_flight)
        try:
            self._post(r)
        finally:
            with r.arrived:
                r.in_flight -= 1

    def _post(self, r: Receiver):
        request = Request(self.path, {k.lower(): v for k, v in self.headers.items()},
                          self.rfile.read(int(self.headers.get("Content-Length", 0))), time.time())
        answer = r._choose(self.path)
        with r.arrived:
            r.started += 1
            if r.keep:
                r.requests.append(request)
            r.arrived.notify_all()
        if r.on_post is not None:
            r.on_post(request)
        if answer.hang:
            r.closing.wait(10)
            self.close_connection = True
            return
        if answer.delay:
            time.sleep(answer.delay)
        with r.arrived:
            r.answered += 1
            if r.keep:
                r.received.append(request)
            r.arrived.notify_all()
        head = [f"HTTP/1.1 {answer.status} {_PHRASES.get(answer.status, 'Status')}",
                f"Content-Length: {len(answer.body)}", *(f"{k}: {v}" for k, v in answer.headers.items())]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + answer.body
        at_once = len(raw) - len(answer.body) if answer.drip_body else 0
        try:
            if answer.drip is None:
                self.wfile.write(raw)
                return
            self.wfile.write(raw[:at_once])
            self.wfile.flush()
            for i in range(at_once, len(raw)):  # a hostile or broken receiver: never quite done answering
                if r.closing.wait(answer.drip):
                    break
                self.wfile.write(raw[i:i + 1])
                self.wfile.flush()
        except OSError:  # the sender gave up and closed the connection
            self.close_connection = True
