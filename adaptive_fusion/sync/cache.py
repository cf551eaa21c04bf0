"""Cache: the last N messages of a filter, queryable by time, as in message_filters."""

from __future__ import annotations

import logging

from adaptive_fusion.sync.base import SimpleFilter, arrival_clock, stamp_ns, to_ns

_log = logging.getLogger(__name__)


class Cache(SimpleFilter):
    """Keeps the `cache_size` most recent messages of `f` and passes each one on.

    As upstream: times are returned as rclpy Time (ROS time), `getLast` is the first cached
    message stamped at or after the last one's stamp, and `getInterval` refuses an empty range.
    Beyond upstream, time arguments may also be int nanoseconds, float seconds or
    builtin_interfaces/Time, not only rclpy Time."""

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
        if start > end:  # upstream asserts it
            raise ValueError(f"getInterval: from_stamp {start} ns is after to_stamp {end} ns")
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

    def getLatestTime(self):
        """The stamp of the message cached last (rclpy Time), or None."""
        return _ros_time(self.cache_times[-1]) if self.cache_times else None

    getLastestTime = getLatestTime  # upstream's spelling

    def getOldestTime(self):
        """The stamp of the oldest message still cached (rclpy Time), or None."""
        return _ros_time(self.cache_times[0]) if self.cache_times else None

    def getLast(self):
        if not self.cache_times:
            return None
        return self.getElemAfterTime(self.cache_times[-1])


def _ros_time(stamp_ns: int):
    # imported here so that the cache and the synchronizers work without ROS (see __init__)
    from rclpy.clock_type import ClockType
    from rclpy.time import Time

    return Time(nanoseconds=stamp_ns, clock_type=ClockType.ROS_TIME)
