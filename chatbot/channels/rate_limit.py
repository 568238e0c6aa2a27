"""A per-user rate limit: at most ``limit`` messages in any ``window`` seconds, with a polite answer once over it.

Each user has a sliding window of the times of their accepted messages. Memory stays bounded: users idle for a
whole window are dropped, checked every ``limit`` calls or so, so a flood of one-off users cannot grow the table
without end.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

SLOW_DOWN_REPLY = "You're writing faster than I can answer. Please wait a few seconds and try again."


class RateLimit:
    """Allows each key ``limit`` messages per ``window`` seconds; ``clock`` is monotonic seconds (tests fake it)."""

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be at least 1 and window positive")
        self.limit, self.window, self.clock = limit, window, clock
        self._times: dict[str, deque[float]] = {}
        self._warned: set[str] = set()  # keys told to slow down in their current burst
        self._lock = threading.Lock()
        self._calls = 0

    def check(self, key: str) -> bool | None:
        """True: accept the message. False: refuse it and tell the user (first refusal of a burst). None: refuse
        it silently (already told)."""
        with self._lock:
            now = self.clock()
            self._forget_idle(now)
            times = self._times.setdefault(key, deque())
            while times and now - times[0] >= self.window:
                times.popleft()
            if len(times) < self.limit:
                times.append(now)
                self._warned.discard(key)
                return True
            if key in self._warned:
                return None
            self._warned.add(key)
            return False

    def _forget_idle(self, now: float) -> None:
        self._calls += 1
        if self._calls % (self.limit + 100):
            return
        idle = [key for key, times in self._times.items() if not times or now - times[-1] >= self.window]
        for key in idle:
            del self._times[key]
            self._warned.discard(key)

    def __len__(self) -> int:
        return len(self._times)
