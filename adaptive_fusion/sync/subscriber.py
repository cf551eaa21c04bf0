"""Subscriber: an rclpy subscription as a message_filters source (the only rclpy user here)."""

from __future__ import annotations

from rclpy.qos import QoSProfile, qos_profile_sensor_data

from adaptive_fusion.sync.base import SimpleFilter


class Subscriber(SimpleFilter):
    """Signals every message received on `topic`. Defaults to sensor-data QoS (best effort,
    depth 5): upstream's reliable default receives nothing from best-effort sensor drivers."""

    def __init__(
        self,
        node,
        msg_type,
        topic: str,
        qos_profile: QoSProfile | int = qos_profile_sensor_data,
        **kwargs,
    ) -> None:
        super().__init__()
        self.node = node
        self.topic = topic
        self.sub = node.create_subscription(
            msg_type, topic, self.callback, qos_profile=qos_profile, **kwargs
        )

    def callback(self, msg) -> None:
        self.signalMessage(msg)

    def getTopic(self) -> str:
        return self.topic

    def __getattr__(self, key):
        """Like upstream, anything else is the rclpy Subscription's."""
        if key == "sub":
            raise AttributeError(key)
        return getattr(self.sub, key)
