"""RateLimit: a sliding window per user, one polite refusal per burst, and bounded memory."""

from __future__ import annotations

import pytest

from chatbot.channels.rate_limit import RateLimit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_user_gets_limit_messages_per_window_and_one_refusal_per_burst() -> None:
    clock = FakeClock()
    limit = RateLimit(3, window=60, clock=clock)
    assert [limit.check("ann") for _ in range(5)] == [True, True, True, False, None]
    assert limit.check("bob") is True  # users do not share a window
    clock.now += 30
    assert limit.check("ann") is None  # the first three are still in the window
    clock.now += 30.5
    assert [limit.check("ann") for _ in range(4)] == [True, True, True, False]  # a new window, a new warning


def test_idle_users_are_forgotten_so_memory_stays_bounded() -> None:
    clock = FakeClock()
    limit = RateLimit(2, window=10, clock=clock)
    for user in range(5000):
        limit.check(f"one-off {user}")
        clock.now += 0.01  # 50 s in all: most of them idle for longer than the window
    assert len(limit) < 1200


def test_a_nonsense_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RateLimit(0)
