"""SimpleFilter and stamp reading, the part of message_filters every other filter builds on."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

NANOSECONDS = 1_000_000_000


class SimpleFilter:
    """A message source that calls its registered callbacks, as in message_filters."""

    def __init__(self) -> None:
        self.callbacks: dict[int, tuple[Callable, tuple]] = {}

    def registerCallback(self, cb: Callable, *args) -> int:
        """Call `cb(*msgs, *args)` for every signalled message set; returns a connection id."""
        connection = len(self.callbacks)
        self.callbacks[connection] = (cb, args)
        return connection

    def signalMessage(self, *msg) -> None:
        for cb, args in list(self.callbacks.values()):
            cb(*(msg + args))


def stamp_ns(msg) -> int | None:
    """msg.header.stamp in integer nanoseconds (builtin_interfaces/Time or rclpy Time), or None
    when the message has no header stamp."""
    try:
        stamp = msg.header.stamp
    except AttributeError:
        return None
    try:
        return stamp.sec * NANOSECONDS + stamp.nanosec
    except AttributeError:
        return stamp.nanoseconds


def to_ns(stamp) -> int:
    """A time given as int nanoseconds, float seconds, builtin_interfaces/Time or rclpy Time."""
    if isinstance(stamp, int):
        return stamp
    if isinstance(stamp, float):
        return round(stamp * NANOSECONDS)
    if hasattr(stamp, "nanoseconds"):
        return stamp.nanoseconds
    return stamp.sec * NANOSECONDS + stamp.nanosec


def arrival_clock(filters: Sequence) -> Callable[[], int]:
    """Clock for headerless messages: the first input's ROS node clock (so sim time works),
    else wall time."""
    for f in filters:
        node = getattr(f, "node", None)
        if node is not None:
            return lambda: node.get_clock().now().nanoseconds
    return time.time_ns
