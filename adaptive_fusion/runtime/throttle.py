"""One log line per kind of event at most every `period_s`, with a count of those held back, so
a fault repeated at sensor rate is reported without flooding the log."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable


class Throttle:
    def __init__(self, period_s: float):
        self.period_s = period_s
        self._last: dict[Hashable, float] = {}
        self._held: Counter[Hashable] = Counter()

    def allow(self, key: Hashable, now: float) -> int | None:
        """None if an event of this key was let through less than period_s ago (it is counted);
        else the number held back since the last one let through."""
        if now - self._last.get(key, -math.inf) < self.period_s:
            self._held[key] += 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)
