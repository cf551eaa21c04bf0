"""The doctor's listener: subscribes to fusion_node's inputs exactly as the node does (same
QoS, same synchronizer and slop), feeds an InputMonitor, and reports what will go wrong.
The `adaptive-fusion doctor` command prints its report."""

from __future__ import annotations

from dataclasses import dataclass

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float32

from adaptive_fusion.ros import filters, transport
from adaptive_fusion.ros.diagnostics import ERROR, values_of
from adaptive_fusion.ros.input_monitor import (
    Finding,
    InputMonitor,
    InputSpec,
    MonitorConfig,
    event_callbacks,
    refresh_graph,
)

TYPES = {"camera": Image, "camera_info": CameraInfo, "depth": Image, "lidar": PointCloud2,
         "compute_budget": Float32}  # fmt: skip
GRAPH_PERIOD_S = 0.5
SYNC_QUEUE_SIZE = 10  # fusion_node's default sync_queue_size
LEVEL_NAMES = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


@dataclass
class DoctorReport:
    inputs: dict[str, dict[str, str]]  # per input: the monitor's status values
    synchronizer: dict[str, str] | None
    findings: list[Finding]
    transport: dict[str, str]

    @property
    def failing(self) -> bool:
        """Something that will keep the node from producing output."""
        return any(f.level >= ERROR for f in self.findings)

    def as_dict(self) -> dict:
        return {
            "ok": not self.failing,
            "transport": self.transport,
            "inputs": self.inputs,
            "synchronizer": self.synchronizer,
            "findings": [
                {
                    "input": f.input,
                    "kind": f.kind,
                    "level": LEVEL_NAMES[f.level[0]],
                    "message": f.message,
                    "fix": f.fix,
                }
                for f in self.findings
            ],
        }


def subscription_qos(spec: InputSpec) -> QoSProfile:
    """The QoS the node subscribes `spec` with (reliability and durability decide matching)."""
    return QoSProfile(
        depth=5,
        reliability=ReliabilityPolicy[spec.reliability.upper()],
        durability=DurabilityPolicy[spec.durability.upper()],
    )


class Doctor:
    """A node in `context` listening to `specs`; spin it (with any other nodes) for a few
    seconds, then call `report()`."""

    def __init__(self, context, specs: list[InputSpec], config: MonitorConfig):
        self.node = rclpy.create_node("adaptive_fusion_doctor", context=context)
        self.monitor = InputMonitor(specs, config, node_name="")
        self._subscribers = {}
        for spec in specs:
            sub = filters.Subscriber(
                self.node,
                TYPES[spec.name],
                spec.topic,
                qos_profile=subscription_qos(spec),
                event_callbacks=event_callbacks(self.monitor, spec.name),
            )
            sub.registerCallback(self._on_message, spec.name)
            self._subscribers[spec.name] = sub
        synchronized = [self._subscribers[s.name] for s in specs if s.synchronized]
        if len(synchronized) >= 2:
            self._sync = filters.ApproximateTimeSynchronizer(
                synchronized, SYNC_QUEUE_SIZE, config.slop_s
            )
            self._sync.registerCallback(lambda *msgs: self.monitor.on_set_emitted())
        self._timer = self.node.create_timer(GRAPH_PERIOD_S, self._refresh)

    def _on_message(self, msg, name: str) -> None:
        self.monitor.on_message(name, msg, self.node.get_clock().now().nanoseconds)

    def _refresh(self) -> None:
        refresh_graph(self.monitor, self.node)

    def report(self) -> DoctorReport:
        self._refresh()
        result = self.monitor.check(self.node.get_clock().now().nanoseconds)
        inputs, synchronizer = {}, None
        for status_msg in result.statuses:
            values = {"level": LEVEL_NAMES[status_msg.level[0]], **values_of(status_msg)}
            if status_msg.hardware_id == "sync":
                synchronizer = values
            else:
                inputs[status_msg.name.removeprefix("input ")] = values
        rmw = transport.rmw_implementation()
        profile = transport.profile_in_effect() if rmw in transport.FAST_DDS_RMWS else None
        return DoctorReport(
            inputs, synchronizer, result.findings, {"rmw": rmw, "profile": profile or "none"}
        )

    def destroy(self) -> None:
        self.node.destroy_node()
