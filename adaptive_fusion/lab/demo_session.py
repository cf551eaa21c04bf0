"""The demo's ROS side: starts fusion_node and sim_sensors as processes, listens to what they
publish and turns it into one timeline row a second."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray

from adaptive_fusion.core.frames import CLASSES, MODALITIES
from adaptive_fusion.lab.evaluation.metrics import evaluate_detections
from adaptive_fusion.lab.evaluation.recorded import nearest_stamp
from adaptive_fusion.lab.timeline import COLUMNS, format_header, format_row
from adaptive_fusion.model.architecture import FULL
from adaptive_fusion.ros import transport
from adaptive_fusion.ros.bags import Recorder
from adaptive_fusion.ros.diagnostics import values_of
from adaptive_fusion.ros.messages import detections_to_boxes
from adaptive_fusion.ros.qos import LATCHED_QOS
from adaptive_fusion.ros.spin import interrupt, spinning
from adaptive_fusion.ros.topics import recorded_topics
from adaptive_fusion.runtime.foxglove_view import HOST as FOXGLOVE_HOST
from adaptive_fusion.sim.scenario import Scenario
from adaptive_fusion.sync import stamp_ns

START_TIMEOUT_S = 90.0
WINDOW_FRAMES = 30  # frames in the running mAP


class Listener:
    """Latest fusion diagnostics, and (detections, ground truth) pairs matched by stamp."""

    def __init__(self, context):
        self.node = rclpy.create_node("demo_listener", context=context)
        self.status: dict[str, dict[str, str]] = {}
        self.truth: dict[int, object] = {}
        self.pairs: list[tuple] = []
        self.scenario_start: float | None = None  # time.monotonic() when the scenario started
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.node.create_subscription(Detection3DArray, "ground_truth", self._on_truth, 10)
        self.node.create_subscription(Detection3DArray, "detections", self._on_detections, 10)
        self.node.create_subscription(Header, "/sim_sensors/scenario_start",
                                      self._on_scenario_start, LATCHED_QOS)  # fmt: skip

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("/fusion_node: "):
                self.status[status.name.split(": ", 1)[1]] = values_of(status)

    def _on_scenario_start(self, msg) -> None:
        """sim_sensors' wall-clock stamp of the start, on this process's monotonic clock."""
        started_ns = msg.stamp.sec * 1_000_000_000 + msg.stamp.nanosec
        self.scenario_start = time.monotonic() - (time.time_ns() - started_ns) * 1e-9

    def _on_truth(self, msg) -> None:
        self.truth[stamp_ns(msg)] = detections_to_boxes(msg)

    def _on_detections(self, msg) -> None:
        nearest = nearest_stamp(sorted(self.truth), stamp_ns(msg))
        if nearest is not None:
            self.pairs.append((detections_to_boxes(msg), self.truth[nearest]))

    def running_map(self) -> float:
        recent = self.pairs[-WINDOW_FRAMES:]
        if not recent:
            return float("nan")
        return evaluate_detections([p for p, _ in recent], [g for _, g in recent], CLASSES).mean_ap

    def row(self, t: float) -> dict:
        fusion = self.status.get("fusion", {})
        row = {"t": round(t, 1), "budget": _number(fusion.get("budget_in_force"))}
        for m in MODALITIES:
            values = self.status.get(m, {})
            row[f"layers_{m}"] = int(values.get("layers", 0))
            row[f"quality_{m}"] = _number(values.get("quality"))
        row["latency_ms"] = _number(fusion.get("latency_ms_last"))
        row["deadline_ms"] = _number(fusion.get("latency_budget_ms"))
        row["mAP"] = self.running_map()
        return {key: row[key] for key in COLUMNS}


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


class DemoSession:
    def __init__(self, args):
        self.args = args
        self.events = Scenario.load(args.scenario).events
        self.processes: list[subprocess.Popen] = []
        self.recorder: Recorder | None = None

    def _start(self, name: str, ros_args: list[str]) -> subprocess.Popen:
        command = [str(Path(sys.executable).parent / name), "--ros-args", *ros_args]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True,
                                   env=transport.profile_environment())  # fmt: skip
        self.processes.append(process)
        return process

    def fusion_arguments(self) -> list[str]:
        """fusion_node's ROS arguments for the demo's options."""
        args = self.args
        fusion_args = ["--params-file", args.params, "--params-file", args.rig,
                       "-p", f"threads:={args.threads}",
                       "-p", "diagnostics_period:=0.5"]  # fmt: skip
        if args.model:
            fusion_args += ["-p", f"model_path:={Path(args.model).resolve()}"]
        if args.architecture:
            architecture = (args.architecture if args.architecture == FULL
                            else Path(args.architecture).resolve())
            fusion_args += ["-p", f"architecture:={architecture}"]
        if args.policy:
            fusion_args += ["-p", f"policy:={args.policy}"]
        if args.foxglove:
            fusion_args += ["-p", f"foxglove_port:={args.foxglove}"]
        return fusion_args

    def run(self) -> list[dict] | None:
        if self.args.foxglove:
            print(f"Foxglove live view: ws://{FOXGLOVE_HOST}:{self.args.foxglove} "
                  "(layout: config/foxglove_layout.json)", flush=True)  # fmt: skip
        fusion = self._start("fusion_node", self.fusion_arguments())
        transport.use_profile()  # this process listens over DDS too, with the same transports
        context = Context()
        rclpy.init(context=context)
        listener = Listener(context)
        try:
            with spinning(context, (listener.node,)):
                try:
                    return self._run_sensors(listener, fusion)
                finally:
                    if self.recorder is not None:
                        self.recorder.close()
        finally:
            rclpy.shutdown(context=context)

    def _run_sensors(self, listener: Listener, fusion: subprocess.Popen) -> list[dict] | None:
        """Once fusion_node is active: (the recorder,) sim_sensors, then the table."""
        args = self.args
        active = lambda: listener.status.get("fusion", {}).get("state") == "active"  # noqa: E731
        if not self._wait(active, fusion):
            print("fusion_node did not start:\n" + self._output(fusion))
            return None
        if args.record:  # from before the first sensor message
            self.recorder = Recorder(listener.node, recorded_topics(), args.record)
        sim = self._start("sim_sensors",
                          ["-p", f"scenario:={Path(args.scenario).resolve()}"])  # fmt: skip
        started = lambda: (  # noqa: E731
            _number(listener.status["fusion"]["frames"]) > 0
            and listener.scenario_start is not None
        )
        if not self._wait(started, sim):
            print("no detections from the simulated sensors:\n" + self._output(sim))
            return None
        return self._table(listener)

    @staticmethod
    def _wait(condition, process: subprocess.Popen) -> bool:
        """Wait for `condition` while `process` runs, at most START_TIMEOUT_S."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not condition():
            if process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _table(self, listener: Listener) -> list[dict]:
        """A row each whole second of the scenario's clock (sim_sensors says when it started),
        from the first frame on: events are plotted when they happened, not shifted by the
        first frame's delay."""
        rows = []
        start = listener.scenario_start or time.monotonic()
        print(format_header())
        second = math.floor(time.monotonic() - start) + 1
        while second <= self.args.duration:
            time.sleep(max(0.0, start + second - time.monotonic()))
            rows.append(listener.row(time.monotonic() - start))
            print(format_row(rows[-1]), flush=True)
            second += 1
        return rows

    @staticmethod
    def _output(process: subprocess.Popen) -> str:
        if process.poll() is None:
            process.terminate()
        return process.communicate(timeout=20)[0][-4000:]

    def stop(self) -> None:
        interrupt(*self.processes, timeout=15)


def summarise(rows: list[dict]) -> dict:
    """Mean layers per modality and mAP over the rows (for the JSON output)."""
    table = {key: np.array([row[key] for row in rows], float) for key in COLUMNS}
    return {key: float(np.nanmean(values)) for key, values in table.items() if key != "t"}
