"""`python -m fakeupstream --port 8900 [--host 127.0.0.1] [--demo] [--follow-every SECONDS]
[--deviation NAME ...]`"""
from __future__ import annotations

import argparse
import signal
import threading

from .core import FakeDumpling
from .deviations import NAMES

DEMO_KEY = "demo-key"
DEMO_HANDLE = "dumplingdemo"
DEMO_TWIN = "dumplingtwin"  # follows what DEMO_HANDLE follows, a tick later: "followed by many" fires
UNFOLLOW_EVERY = 6          # every 6th tick DEMO_HANDLE unfollows its 5th newest: an unfollow a refresh sees


def seed_demo(fake: FakeDumpling) -> None:
    fake.add_key(DEMO_KEY)  # unlimited credits
    fake.seed(DEMO_HANDLE, 45)
    fake.seed("charlidamelio", 120)
    fake.seed(DEMO_TWIN, 10)


def _follow_every(fake: FakeDumpling, seconds: float, stop: threading.Event) -> None:
    tick, previous = 0, None
    while not stop.wait(seconds):
        tick += 1
        if tick % UNFOLLOW_EVERY == 0:
            fake.unfollow(DEMO_HANDLE, fake.following(DEMO_HANDLE)[4][1]["user"]["id"])
        if previous is not None and tick % 2 == 0:
            fake.follow(DEMO_TWIN, previous)
        previous = fake.follow(DEMO_HANDLE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakeupstream", description="Fake DumplingAI upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900, help="0 picks a free port")
    parser.add_argument("--demo", action="store_true", help=f"seed key {DEMO_KEY!r} and demo handles")
    parser.add_argument("--follow-every", type=float, metavar="SECONDS",
                        help=f"make {DEMO_HANDLE!r} follow a new account every SECONDS ({DEMO_TWIN!r} follows "
                             f"every other one a tick later; every {UNFOLLOW_EVERY}th tick {DEMO_HANDLE!r} unfollows one)")
    parser.add_argument("--deviation", action="append", default=[], choices=NAMES, metavar="NAME",
                        help="break one documented behaviour (repeatable): " + ", ".join(NAMES))
    args = parser.parse_args(argv)

    fake = FakeDumpling()
    fake.set_deviations(*args.deviation)
    if args.demo:
        seed_demo(fake)
    fake.start(args.host, args.port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if args.follow_every:
        threading.Thread(target=_follow_every, args=(fake, args.follow_every, stop), daemon=True).start()
    key_note = f"demo key: {DEMO_KEY}" if args.demo else "no keys yet: POST /_fake/keys"
    deviation_note = f"; deviations: {', '.join(fake.deviations)}" if args.deviation else ""
    print(f"Fake DumplingAI upstream at {fake.url} ({key_note}{deviation_note})", flush=True)
    while not stop.wait(0.5):
        pass
    fake.stop()


if __name__ == "__main__":
    main()
