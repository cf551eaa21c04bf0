"""`adaptive-fusion doctor` over real DDS: for each way fusion_node's inputs fail silently, a
publisher that fails that way, and the diagnostic the doctor gives; a healthy set of sensors
gives none. Publishers live in this process except for the large-message case, which only
shows between processes (the RMW delivers in-process messages directly)."""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float32, Header

from adaptive_fusion.ros import transport
from adaptive_fusion.ros.conversions import numpy_to_image, numpy_to_pointcloud2
from adaptive_fusion.ros.diagnostics import ERROR
from adaptive_fusion.ros.doctor import Doctor
from adaptive_fusion.ros.input_monitor import MonitorConfig, fusion_inputs
from adaptive_fusion.ros.qos import LATCHED_QOS, SENSOR_QOS

LISTEN_S = 2.0
CONFIG = dict(slop_s=0.02, silence_s=1.0, no_set_s=1.0)


@dataclass
class Sensors:
    """What the fake drivers publish at 10 Hz: stamp offsets from the clock (s), frames,
    image sizes, and a stamp source (wall clock by default)."""

    offsets: dict = field(default_factory=dict)
    frames: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    stamp_ns: object = time.time_ns
    budget_qos: QoSProfile = field(default_factory=lambda: LATCHED_QOS)


def header(stamp_ns: int, frame_id: str) -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 10**9)
    return h


def start_sensors(node, sensors: Sensors):
    pubs = {
        "camera": node.create_publisher(Image, "camera/image_raw", SENSOR_QOS),
        "camera_info": node.create_publisher(CameraInfo, "camera/camera_info", SENSOR_QOS),
        "depth": node.create_publisher(Image, "depth/image_raw", SENSOR_QOS),
        "lidar": node.create_publisher(PointCloud2, "lidar/points", SENSOR_QOS),
    }
    budget = node.create_publisher(Float32, "compute_budget", sensors.budget_qos)
    frames = {"camera": "camera", "depth": "camera", "lidar": "lidar", **sensors.frames}
    sizes = {"camera": (64, 48), "depth": (64, 48), **sensors.sizes}
    points = np.random.default_rng(0).uniform(-10, 10, (500, 4)).astype(np.float32)

    def tick():
        now = sensors.stamp_ns()
        stamp = {m: now + int(sensors.offsets.get(m, 0.0) * 1e9) for m in frames}
        w, h = sizes["camera"]
        image = np.zeros((h, w, 3), np.uint8)
        pubs["camera"].publish(
            numpy_to_image(image, "rgb8", header(stamp["camera"], frames["camera"]))
        )
        info = CameraInfo(header=header(stamp["camera"], "camera"), width=64, height=48)
        info.k = [32.0, 0, 32, 0, 32, 24, 0, 0, 1]
        pubs["camera_info"].publish(info)
        w, h = sizes["depth"]
        depth = np.full((h, w), 5.0, np.float32)
        pubs["depth"].publish(
            numpy_to_image(depth, "32FC1", header(stamp["depth"], frames["depth"]))
        )
        lidar_header = header(stamp["lidar"], frames["lidar"])
        pubs["lidar"].publish(
            numpy_to_pointcloud2(points, ("x", "y", "z", "intensity"), lidar_header)
        )

    budget.publish(Float32(data=0.5))
    return node.create_timer(0.1, tick)


@pytest.fixture
def ros():
    """A context and executor; nodes added to the executor are destroyed afterwards (a node
    left alive keeps its publishers in the graph for the next test)."""
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    yield context, executor
    for node in executor.get_nodes():
        node.destroy_node()
    executor.shutdown()
    rclpy.shutdown(context=context)


def spin(executor, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.01)


def diagnose(ros, sensors: Sensors | None, lidar_frame="lidar", listen_s=LISTEN_S):
    """Listen with a Doctor to `sensors` (run in the same executor); (report, its monitor)."""
    context, executor = ros
    doctor = Doctor(context, fusion_inputs(lidar_frame=lidar_frame), MonitorConfig(**CONFIG))
    executor.add_node(doctor.node)
    if sensors is not None:
        drivers = rclpy.create_node("fake_drivers", context=context)
        start_sensors(drivers, sensors)
        executor.add_node(drivers)
    spin(executor, listen_s)
    return doctor.report(), doctor.monitor


def found(report):
    return {(f.input, f.kind): f for f in report.findings}


def test_healthy_sensors_give_no_warning(ros):
    report, monitor = diagnose(ros, Sensors())
    assert report.findings == [] and not report.failing
    camera = report.inputs["camera"]
    assert 7 < float(camera["rate_hz"]) < 13
    assert int(camera["size_bytes"]) == 64 * 48 * 3
    assert "/fake_drivers (best_effort, volatile" in camera["publishers"]
    assert "(reliable, transient_local" in report.inputs["compute_budget"]["publishers"]
    assert report.inputs["lidar"]["frame_id"] == "lidar"
    assert abs(float(camera["stamp_age_s"])) < 0.5
    assert int(report.synchronizer["sets"]) >= 10
    assert report.transport == {"rmw": "rmw_fastrtps_cpp", "profile": str(transport.profile_path())}


def test_a_publisher_with_incompatible_qos(ros):
    volatile = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)  # not latched
    report, monitor = diagnose(ros, Sensors(budget_qos=volatile))
    (finding,) = report.findings
    assert (finding.input, finding.kind, finding.level) == (
        "compute_budget",
        "incompatible_qos",
        ERROR,
    )
    assert (
        "/fake_drivers (reliable, volatile" in finding.message and "durability" in finding.message
    )
    assert "transient_local" in finding.fix and report.failing
    assert monitor.states["compute_budget"].incompatible >= 1  # rclpy's incompatible-QoS event
    assert monitor.states["compute_budget"].incompatible_policy == "DURABILITY"


def test_b_matched_publisher_whose_large_samples_never_arrive(ros):
    context, executor = ros
    doctor = Doctor(context, fusion_inputs(), MonitorConfig(**CONFIG))
    executor.add_node(doctor.node)
    env = {k: v for k, v in os.environ.items() if k != transport.PROFILE_VARIABLE}
    command = [sys.executable, "-m", "adaptive_fusion.ros.transport_probe", "--duration", "6",
               "--stream", "camera/image_raw=rgb8:1280x720@30"]  # fmt: skip
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        camera = doctor.monitor.states["camera"]
        deadline = time.monotonic() + 20
        while not camera.matched:
            assert time.monotonic() < deadline, "the probe never matched"
            executor.spin_once(timeout_sec=0.01)
        spin(executor, 2.5)
        report = doctor.report()
    finally:
        child.kill()
        child.wait()
    (finding,) = [f for f in report.findings if f.input == "camera"]
    assert finding.kind in ("no_samples", "samples_lost") and finding.level == ERROR
    assert camera.lost > camera.received  # most samples lost in transit, as the event says
    assert transport.PROFILE_VARIABLE in finding.fix and "publisher's" in finding.fix


def test_c_every_input_arrives_but_stamps_never_fall_within_the_slop(ros):
    report, monitor = diagnose(ros, Sensors(offsets={"lidar": -0.045}))
    (finding,) = report.findings
    assert (finding.input, finding.kind) == ("sync", "no_sync")
    assert "lidar -0.045 s (nearest-stamp gap 0.045 s)" in finding.message
    assert "sync_slop 0.02 s" in finding.message and "above 0.045 s" in finding.fix
    assert report.synchronizer["sets"] == "0"


SIM_START_NS = time.monotonic_ns()


def sim_time():
    return 12 * 10**9 + time.monotonic_ns() - SIM_START_NS  # a simulator's /clock: 12 s in


class RestartingDriver:
    """Stamps that jump 0.4 s back every 5th message, as a driver restarting or a short bag
    looping would (kept close to the clock so that only the jumps are wrong)."""

    def __init__(self):
        self.k = 0

    def __call__(self):
        self.k += 1
        return time.time_ns() - (4 * 10**8 if self.k % 5 == 0 else 0)


@pytest.mark.parametrize(
    ("stamp_ns", "kind", "text"),
    [
        (sim_time, "clock_offset", "the publisher stamps sim time and this node runs on wall time"),
        (RestartingDriver(), "stamp_backwards", "stamps went backwards"),
    ],
)
def test_d_stamps_far_from_the_clock_or_going_back(ros, stamp_ns, kind, text):
    report, monitor = diagnose(ros, Sensors(stamp_ns=stamp_ns))
    hits = found(report)
    for name in ("camera", "depth", "lidar"):
        assert text in hits[name, kind].message
    assert {k for _, k in hits} <= {kind, "no_sync"}  # jumped stamps may also miss sets


def test_e_frames_and_sizes_that_disagree(ros):
    sensors = Sensors(
        frames={"lidar": "velodyne", "depth": "depth_frame"}, sizes={"camera": (128, 96)}
    )
    report, monitor = diagnose(ros, sensors)
    hits = found(report)
    assert set(hits) == {
        ("camera", "size_mismatch"),
        ("depth", "frame_mismatch"),
        ("lidar", "frame_mismatch"),
    }
    assert "128x96 but camera_info says 64x48" in hits["camera", "size_mismatch"].message
    assert (
        "'depth_frame' differs from camera_info's 'camera'"
        in hits["depth", "frame_mismatch"].message
    )
    assert "'velodyne' is not 'lidar'" in hits["lidar", "frame_mismatch"].message
    assert report.failing  # the node rejects images of another size than camera_info's


def test_cli_json_and_exit_code_when_nothing_publishes():
    command = [sys.executable, "-m", "adaptive_fusion.cli.main", "doctor", "--json",
               "--duration", "1", "--topics", "camera=/nowhere/image"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    kinds = {(f["input"], f["kind"], f["level"]) for f in report["findings"]}
    assert kinds == {
        (m, "no_publisher", "ERROR") for m in ("camera", "camera_info", "depth", "lidar")
    }
    assert report["inputs"]["camera"]["topic"] == "/nowhere/image"
