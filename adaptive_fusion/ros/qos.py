"""QoS profiles of the package's topics, in one place so publishers and subscribers agree."""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

SENSOR_QOS = qos_profile_sensor_data  # best effort, depth 5: what sensor drivers publish
# the budget and the label map are state, not a stream: a late joiner gets the last value
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
RESULTS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
RELIABILITIES = ("best_effort", "reliable")


def sensor_qos(reliability: str, depth: int) -> QoSProfile:
    """Sensor-data QoS with the reliability and depth a user overrides per input (a reliable
    subscription matches only reliable publishers; best effort matches both)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy[reliability.upper()],
        durability=DurabilityPolicy.VOLATILE,
    )
