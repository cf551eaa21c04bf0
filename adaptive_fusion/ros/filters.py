"""The one place that picks the message_filters implementation: upstream's where a ROS 2
distribution provides it, adaptive_fusion.sync otherwise (PyPI has no message_filters).

Both form the same sets from the same messages (docs/architecture.md). Callers pass
`qos_profile` explicitly (see `sensor_subscriber`) because the two Subscriber defaults differ,
and use `observe_drops` because only ours reports dropped messages.
"""

from __future__ import annotations

from collections.abc import Callable

from rclpy.qos import qos_profile_sensor_data

try:
    from message_filters import (
        ApproximateTimeSynchronizer,
        Cache,
        SimpleFilter,
        Subscriber,
        TimeSynchronizer,
    )

    UPSTREAM = True
except ImportError:
    from adaptive_fusion.sync import (
        ApproximateTimeSynchronizer,
        Cache,
        SimpleFilter,
        Subscriber,
        TimeSynchronizer,
    )

    UPSTREAM = False

__all__ = [
    "UPSTREAM",
    "ApproximateTimeSynchronizer",
    "Cache",
    "SimpleFilter",
    "Subscriber",
    "TimeSynchronizer",
    "observe_drops",
    "sensor_subscriber",
]


def sensor_subscriber(
    node, msg_type, topic: str, qos_profile=qos_profile_sensor_data, **kwargs
) -> Subscriber:
    """A Subscriber with sensor-data QoS (best effort) unless told otherwise, whichever
    implementation is in use; `kwargs` go to create_subscription (e.g. event_callbacks)."""
    return Subscriber(node, msg_type, topic, qos_profile=qos_profile, **kwargs)


def observe_drops(synchronizer, cb: Callable, *args) -> bool:
    """Register `cb(msg, input_index, reason, *args)` for dropped messages; False when the
    implementation (upstream) cannot report drops."""
    register = getattr(synchronizer, "registerDropCallback", None)
    if register is None:
        return False
    register(cb, *args)
    return True
