"""Cache: the last N messages of a filter, queryable by time, as in message_filters."""

from __future__ import annotations

import logging

from adaptive_fusion.sync.base import SimpleFilter, arrival_clock, stamp_ns, to_ns

_log = logging.getLogger(__name__)


class Cache(SimpleFilter):
    """Keeps the `cache_size` most recent messages of `f` and passes each one on.

    Times are returned as integer nanoseconds; time arguments may be int nanoseconds, float
    seconds, builtin_interfaces/Time or rclpy Time."""

    def __init__(self, f, cache_size: int = 1, allow_headerless: bool = False) -> None:
        super().__init__()
        self.cache_size = cache_size
        self.allow_headerless = allow_headerless
        self.cache_msgs: list = []
        self.cache_times: list[int] = []
        self._clock = arrival_clock([f])
        self.connectInput(f)

    def connectInput(self, f) -> None:
        self.incoming_connection = f.registerCallback(self.add)

    def add(self, msg) -> None:
        stamp = stamp_ns(msg)
        if stamp is None:
            if not self.allow_headerless:
                _log.warning("Cache dropped a message without header.stamp (%s)", type(msg))
                return
            stamp = self._clock()
        self.cache_times.append(stamp)
        self.cache_msgs.append(msg)
        if len(self.cache_msgs) > self.cache_size:
            del self.cache_times[0]
            del self.cache_msgs[0]
        self.signalMessage(msg)

    def _entries(self):
        return zip(self.cache_times, self.cache_msgs, strict=True)

    def getInterval(self, from_stamp, to_stamp) -> list:
        """Messages stamped within [from_stamp, to_stamp], in arrival order."""
        start, end = to_ns(from_stamp), to_ns(to_stamp)
        return [m for t, m in self._entries() if start <= t <= end]

    def getElemAfterTime(self, stamp):
        """The first cached message stamped at or after `stamp`, else None."""
        stamp = to_ns(stamp)
        return next((m for t, m in self._entries() if t >= stamp), None)

    def getElemBeforeTime(self, stamp):
        """The last cached message stamped at or before `stamp`, else None."""
        stamp = to_ns(stamp)
        before = [m for t, m in self._entries() if t <= stamp]
        return before[-1] if before else None

    def getLatestTime(self) -> int | None:
        return self.cache_times[-1] if self.cache_times else None

    getLastestTime = getLatestTime  # upstream's spelling

    def getOldestTime(self) -> int | None:
        return self.cache_times[0] if self.cache_times else None

    def getLast(self):
        return self.cache_msgs[-1] if self.cache_msgs else None
