"""Real sensor sizes through fusion_node end to end, over DDS between two processes with the
shipped transport profile (conftest points Fast DDS at it; the child inherits the environment):
an rgb8 camera with its camera_info and a registered 32FC1 depth image at 1280x720 (and 640x480)
at 30 Hz, and a 64-beam lidar cloud of ~124k points at 10 Hz, as an HDL-64E gives. The node, trained
at 320x240, must synchronize them and publish detections stamped with the lidar's stamps, and
its /diagnostics must show every input fine at the big resolution.

The child process is this file run as a script: it renders one frame set once (rendering
1280x720 and 64 beams takes longer than a camera period) and republishes the same messages with
fresh stamps, printing the lidar stamps it published as JSON when it stops."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray

from adaptive_fusion.ros.conversions import numpy_to_image, numpy_to_pointcloud2
from adaptive_fusion.ros.diagnostics import OK, values_of
from adaptive_fusion.ros.fusion_node import FusionNode
from adaptive_fusion.ros.qos import SENSOR_QOS
from adaptive_fusion.ros.spin import init_for_main, spin_until_shutdown, spinning
from adaptive_fusion.sim import World, WorldConfig
from adaptive_fusion.sim.rig import fusion_node_parameters
from adaptive_fusion.sim.sensors_node import camera_info_msg

CAMERA_HZ, LIDAR_HZ = 30, 10
LIDAR_LAG_NS = 4_000_000  # the sweep's stamp trails the camera's, as two drivers' stamps do
# a Velodyne HDL-64E: 64 beams from +2 to -24.9 degrees, 2048 points per beam and turn
HDL64 = dict(lidar_beams=64, lidar_elevation_min_deg=-24.9, lidar_elevation_max_deg=2.0,
             lidar_azimuth_steps=2048)  # fmt: skip
MEASURE_S = 2.5
CAMERA_FRAME, LIDAR_FRAME = "camera_optical_frame", "lidar"


class StillSensors:
    """One rendered frame set as pre-built messages, republished with fresh stamps: camera,
    camera_info and depth every tick, the cloud every third (30/30/10 Hz)."""

    def __init__(self, width: int, height: int):
        world = World(WorldConfig(camera_width=width, camera_height=height, **HDL64))
        frames = world.render(seed=3)
        self.node = rclpy.create_node("still_sensors")
        camera_header = Header(frame_id=CAMERA_FRAME)
        self.camera_msgs = {
            "camera/image_raw": numpy_to_image(frames.image, "rgb8", camera_header),
            "camera/camera_info": camera_info_msg(world, camera_header),
            "depth/image_raw": numpy_to_image(frames.depth, "32FC1", camera_header),
        }
        self.cloud = numpy_to_pointcloud2(frames.points, ("x", "y", "z", "intensity"),
                                          Header(frame_id=LIDAR_FRAME))  # fmt: skip
        types = {"camera/image_raw": Image, "camera/camera_info": CameraInfo,
                 "depth/image_raw": Image}  # fmt: skip
        self.pubs = {t: self.node.create_publisher(types[t], t, SENSOR_QOS) for t in types}
        self.pub_cloud = self.node.create_publisher(PointCloud2, "lidar/points", SENSOR_QOS)
        self.ticks = 0
        self.lidar_stamps: list[int] = []
        self.node.create_timer(1.0 / CAMERA_HZ, self.tick)

    def tick(self) -> None:
        now = self.node.get_clock().now().nanoseconds
        for topic, msg in self.camera_msgs.items():
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 10**9)
            self.pubs[topic].publish(msg)
        if self.ticks % (CAMERA_HZ // LIDAR_HZ) == 0:
            stamp = now - LIDAR_LAG_NS
            self.cloud.header.stamp.sec, self.cloud.header.stamp.nanosec = divmod(stamp, 10**9)
            self.pub_cloud.publish(self.cloud)
            self.lidar_stamps.append(stamp)
        self.ticks += 1


def publish_until_interrupted(width: int, height: int) -> None:
    """The child: publish until SIGINT, then print the lidar stamps sent."""
    init_for_main()
    sensors = StillSensors(width, height)
    print(f"points {sensors.cloud.width}", file=sys.stderr, flush=True)
    spin_until_shutdown(sensors.node)
    print(json.dumps(sensors.lidar_stamps), flush=True)


class Probe:
    """Detections with their arrival times, and the latest status of each fusion_node entry."""

    def __init__(self, context):
        self.node = rclpy.create_node("large_probe", context=context)
        self.detections: list[tuple[int, int, Detection3DArray]] = []  # arrival ns, stamp ns
        self.status: dict[str, tuple[bytes, str, dict]] = {}
        sub = self.node.create_subscription
        sub(Detection3DArray, "detections", self._on_detections, 10)
        sub(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_detections(self, msg: Detection3DArray) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self.detections.append((self.node.get_clock().now().nanoseconds, stamp, msg))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        # replaced whole, so that a copy never mixes two messages' entries
        self.status = self.status | {
            s.name.split(": ", 1)[1]: (s.level, s.message, values_of(s))
            for s in msg.status
            if s.name.startswith("/fusion_node: ")
        }


def errors_of(status: dict) -> dict[str, dict[str, str]]:
    """Every error count per /diagnostics entry of fusion_node."""
    return {
        entry: {k: v for k, v in values.items() if k.startswith("errors.")}
        for entry, (_, _, values) in status.items()
    }


def wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")



@pytest.fixture
def run(model_path):
    """Start the child publishing at a size and fusion_node here; measure; stop both. Yields a
    function returning the fusion node, the detections of the measured window with their
    arrival and stamp (ns), its statuses before and after the window, the child's lidar stamps
    and the child's stderr."""
    context = Context()
    rclpy.init(context=context)
    children, nodes = [], []

    def start(width: int, height: int):
        child = subprocess.Popen(
            [sys.executable, __file__, str(width), str(height)], env=os.environ.copy(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        children.append(child)
        params = dict(model_path=str(model_path), policy="quality_weighted", threads=1,
                      diagnostics_period=0.25,
                      score_threshold=0.0, sensor_timeout=2.0, lidar_frame_id=LIDAR_FRAME,
                      **fusion_node_parameters(WorldConfig(**HDL64)))  # fmt: skip
        fusion = FusionNode(
            context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
        probe = Probe(context)
        nodes.extend((fusion, probe.node))
        with spinning(context, (fusion, probe.node)):
            fusion.trigger_configure()
            fusion.trigger_activate()
            wait_for(lambda: len(probe.detections) >= 3, 30.0, "the first detections")
            time.sleep(0.6)  # two diagnostics periods: the counts of the start-up are in
            before = dict(probe.status)
            first = len(probe.detections)
            time.sleep(MEASURE_S)
            measured = probe.detections[first:]
            time.sleep(0.6)  # two more, covering the whole window
            after = dict(probe.status)
            fusion.trigger_deactivate()
        child.send_signal(signal.SIGINT)
        output, errors = child.communicate(timeout=15)
        assert child.returncode == 0 and "Traceback" not in errors, errors
        stamps = json.loads(output.strip().splitlines()[-1])
        return fusion, measured, (before, after), stamps, errors

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
            child.communicate()
    for node in nodes:
        node.destroy_node()
    rclpy.shutdown(context=context)


@pytest.mark.parametrize("width, height", [(1280, 720), (640, 480)])
def test_real_sizes_reach_the_node_and_give_detections(run, width, height):
    fusion, measured, (before, status), lidar_stamps, child_log = run(width, height)
    points = int(child_log.split("points ")[1].split()[0])
    assert points > 110_000  # a 64-beam sweep of this scene

    latency_ms = np.array([(arrival - stamp) * 1e-6 for arrival, stamp, _ in measured])
    summary = status["fusion"][2]
    ages = {m: 1e3 * float(status[f"input {m}"][2]["stamp_age_s"]) for m in ("camera", "depth",
                                                                             "lidar")}  # fmt: skip
    print(
        f"\n{width}x{height} + {points} points: {len(measured) / MEASURE_S:.1f} Hz detections, "
        f"stamp->received p50 {np.median(latency_ms):.0f} ms p95 "
        f"{np.percentile(latency_ms, 95):.0f} ms; pipeline mean "
        f"{float(summary['latency_ms_mean']):.0f} ms, node overhead mean "
        f"{float(summary['node_overhead_ms_mean']):.0f} ms; frames {summary['frames']}, "
        f"stale sets dropped {summary['stale_sets_dropped']}; stamp age on arrival "
        + ", ".join(f"{m} {age:.0f} ms" for m, age in ages.items())
    )

    # detections at a steady rate: one per lidar sweep, or as many as the pipeline's time allows
    # on this machine (the node drops the older of two waiting sets and counts it), each
    # stamped with a published sweep
    rate = len(measured) / MEASURE_S
    capacity_hz = min(LIDAR_HZ, 1e3 / float(summary["latency_ms_mean"]))
    assert rate >= 0.5 * capacity_hz, f"{rate:.1f} Hz of detections"
    sets = int(status["synchronizer"][2]["sets"])
    skipped = sum(int(v) for v in errors_of(status)["fusion"].values())
    handled = int(summary["frames"]) + int(summary["stale_sets_dropped"]) + skipped
    # every set is processed or counted: two may be in flight, one formed while diagnosing
    assert 0 <= sets - handled <= 3
    stamps = [stamp for _, stamp, _ in measured]
    assert set(stamps) <= set(lidar_stamps)
    assert len(set(stamps)) == len(stamps)
    assert all(msg.header.frame_id == LIDAR_FRAME for _, _, msg in measured)
    assert any(len(msg.detections) for _, _, msg in measured)  # threshold 0: boxes come out

    # the node took camera_info's big resolution, and every input is fine at it
    assert (fusion._intrinsics.width, fusion._intrinsics.height) == (width, height)
    for name in ("camera", "camera_info", "depth", "lidar"):
        level, message, values = status[f"input {name}"]
        assert (level, values["findings"]) == (OK, "none"), (name, message)
    assert int(status["input camera"][2]["size_bytes"]) >= width * height * 3
    assert int(status["input depth"][2]["size_bytes"]) >= width * height * 4
    assert int(status["input lidar"][2]["size_bytes"]) >= 16 * points
    # next to nothing lost while measuring (samples reported lost while the two processes start
    # are not counted). The inputs are best effort, as camera drivers publish: on a host whose
    # two cores the other process shares, CI once lost 5 of the window's ~75 images of 640x480
    # (7%), so up to 10% passes; the monitor's own finding (samples_lost) starts at 20%.
    for name, hz in (("camera", CAMERA_HZ), ("depth", CAMERA_HZ), ("lidar", LIDAR_HZ)):
        values, earlier = status[f"input {name}"][2], before[f"input {name}"][2]
        lost = int(values["lost"]) - int(earlier["lost"])
        received = int(values["received"]) - int(earlier["received"])
        assert float(values["rate_hz"]) > 0.6 * hz and lost <= 0.1 * received, (name, values)
    level, message, values = status["synchronizer"]
    assert level == OK and sets >= rate * MEASURE_S, message
    for entry in ("camera", "depth", "lidar", "fusion"):
        level, message, values = status[entry]
        assert level == OK, (entry, message)
    # no input was skipped, before or while measuring (sets that form before the first
    # camera_info are counted apart, as start-up, not as errors)
    for counts in (errors_of(before), errors_of(status)):
        assert not [k for c in counts.values() for k, v in c.items() if v != "0"], counts
    assert status["fusion"][2]["live"] == "camera depth lidar"
    assert np.median(latency_ms) < 1000.0


if __name__ == "__main__":
    publish_until_interrupted(int(sys.argv[1]), int(sys.argv[2]))
