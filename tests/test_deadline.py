"""The watchdog is woken only for a guard due before it looks again, and still cuts every
exchange on time (integration/deadline.py)."""
from __future__ import annotations

import socket
import time

from integration.deadline import Watchdog


def test_a_guard_due_before_the_watchdogs_next_look_is_still_cut_on_time():
    watchdog = Watchdog()
    late_a, late_b = socket.socketpair()
    soon_a, soon_b = socket.socketpair()
    with watchdog.guard(30) as late:  # the watchdog now sleeps up to its 1 s sweep
        late.track(late_a)
        with watchdog.guard(0.2) as soon:  # due before that: must wake it
            soon.track(soon_a)
            started = time.monotonic()
            soon_a.settimeout(5)
            assert soon_a.recv(1) == b""  # shut down by the watchdog, not the 5 s timeout
            assert time.monotonic() - started < 1.0 and soon.expired
        assert not late.expired
    for s in (late_a, late_b, soon_a, soon_b):
        s.close()


def test_guards_due_later_leave_the_watchdog_asleep_until_its_next_look():
    watchdog = Watchdog()
    with watchdog.guard(30):
        time.sleep(0.05)  # the watchdog thread is waiting now
        wakes_at = watchdog._wakes_at
        with watchdog.guard(60):
            assert watchdog._wakes_at == wakes_at  # not woken: it looks again before 60 s anyway
