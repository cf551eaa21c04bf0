"""Drop-in for message_filters' Python API (not on PyPI): the same sets from the same messages,
in any arrival order, without upstream's known faults; see approximate.py. Only `Subscriber`
needs rclpy, and it is imported on first use, so the synchronizers work (and are tested)
without ROS; Cache's time accessors import rclpy's Time when called, as upstream returns it."""

from adaptive_fusion.sync.approximate import (
    DROP_REASONS,
    DUPLICATE,
    HEADERLESS,
    OVERFLOW,
    STALE,
    ApproximateTimeSynchronizer,
    TimeSynchronizer,
)
from adaptive_fusion.sync.base import SimpleFilter, stamp_ns
from adaptive_fusion.sync.cache import Cache

__all__ = [
    "DROP_REASONS",
    "DUPLICATE",
    "HEADERLESS",
    "OVERFLOW",
    "STALE",
    "ApproximateTimeSynchronizer",
    "Cache",
    "SimpleFilter",
    "Subscriber",
    "TimeSynchronizer",
    "stamp_ns",
]


def __getattr__(name: str):
    if name == "Subscriber":
        from adaptive_fusion.sync.subscriber import Subscriber

        return Subscriber
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
