"""The server's clocks: the real one is waited for to the microsecond without the GIL, a
manual one is never waited for in real time, however far ahead of the machine it is."""
import threading
import time

from realtime.timing import MONOTONIC, ManualClock, Waiter


def test_a_wait_on_the_real_clock_returns_at_its_deadline():
    waiter = Waiter()
    t = time.monotonic_ns() + 2_000_000
    returned = waiter.wait_until(t)
    assert t <= returned <= time.monotonic_ns()


def test_a_manual_clock_far_ahead_of_the_machine_is_never_waited_for_in_real_time():
    clock = ManualClock(10**18)  # 31 years of uptime
    waiter = Waiter(clock)
    t0 = time.monotonic()
    assert waiter.wait_until(10**18 - 5) == 10**18  # passed: returns the clock's time
    assert waiter.wait_until(10**18 + 10**12) == 10**18 + 10**12  # ahead: not sat out
    assert time.monotonic() - t0 < 0.5
    assert clock.now_ns() == 10**18  # only its owner moves it


def test_a_sleep_ends_when_its_event_is_set_or_the_clock_is_moved_past_it():
    event = threading.Event()
    assert MONOTONIC.sleep(event, MONOTONIC.now_ns() + 1_000_000) is False
    clock = ManualClock(0)
    threading.Timer(0.05, setattr, (clock, "t", 10)).start()
    assert clock.sleep(event, 10) is False and clock.t == 10
    threading.Timer(0.05, event.set).start()
    assert clock.sleep(event, 10**9) is True
