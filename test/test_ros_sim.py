"""sim_sensors over real DDS: what it publishes (rates, frames, encodings, jittered stamps,
moving ground truth) and a scenario file driving corruption, the budget topic and a dead
sensor on time."""

import time

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float32
from vision_msgs.msg import Detection3DArray

from adaptive_fusion.ros.conversions import (
    camera_info_to_intrinsics,
    depth_to_metres,
    image_to_numpy,
    pointcloud2_to_xyzi,
)
from adaptive_fusion.ros.messages import detections_to_boxes
from adaptive_fusion.ros.qos import LATCHED_QOS, SENSOR_QOS
from adaptive_fusion.ros.spin import spinning
from adaptive_fusion.sim import World
from adaptive_fusion.sim.sensors_node import SimSensors

SCENARIO = """
events:
  - {at: 1.5, corrupt: {camera: [dead, 1.0]}}
  - {at: 1.5, budget: 0.3}
  - {at: 1.5, kill: lidar}
  - {at: 1.5, latency_budget: 42}
  - {at: 1.5, busy_cores: 1}
"""


def stamp_s(msg) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Three seconds of sim_sensors output with the scenario above, as (receive time, msg)."""
    scenario = tmp_path_factory.mktemp("scenario") / "events.yaml"
    scenario.write_text(SCENARIO)
    context = Context()
    rclpy.init(context=context)
    sim = SimSensors(
        context=context,
        parameter_overrides=[
            Parameter("scenario", value=str(scenario)),
            Parameter("seed", value=2),
            Parameter("jitter_ms", value=5.0),
        ],
    )
    probe = rclpy.create_node("sim_probe", context=context)
    # stands in for fusion_node: the scenario's latency_budget sets its parameter
    target = rclpy.create_node("fusion_node", context=context)
    target.declare_parameter("latency_budget_ms", 0.0)
    log: dict[str, list] = {k: [] for k in ("image", "info", "depth", "cloud", "truth", "budget")}
    for key, msg_type, topic, qos in (
        ("image", Image, "camera/image_raw", SENSOR_QOS),
        ("info", CameraInfo, "camera/camera_info", SENSOR_QOS),
        ("depth", Image, "depth/image_raw", SENSOR_QOS),
        ("cloud", PointCloud2, "lidar/points", SENSOR_QOS),
        ("truth", Detection3DArray, "ground_truth", 10),
        ("budget", Float32, "compute_budget", LATCHED_QOS),
    ):
        probe.create_subscription(
            msg_type, topic, lambda msg, key=key: log[key].append((time.monotonic(), msg)), qos
        )
    start = time.monotonic()
    with spinning(context, (sim, probe, target)):
        time.sleep(3.2)
        busy = [(process, process.is_alive()) for process in sim.busy]
    log["latency_budget_ms"] = target.get_parameter("latency_budget_ms").value
    sim.destroy_node()
    log["busy"] = [(alive, process.is_alive()) for process, alive in busy]
    probe.destroy_node()
    target.destroy_node()
    rclpy.shutdown(context=context)
    return start, log


def test_sensor_streams(recorded):
    start, log = recorded
    for key in ("image", "depth", "cloud", "info", "truth"):
        assert len(log[key]) >= 10, key  # 10 Hz for ~1.5 s at least
    _, image = log["image"][0]
    assert image.encoding == "rgb8" and image.header.frame_id == "camera_optical_frame"
    assert image_to_numpy(image).shape == (240, 320, 3)
    _, depth = log["depth"][0]
    assert depth.encoding == "32FC1" and np.nanmax(depth_to_metres(depth)) > 1.0
    _, info = log["info"][0]
    np.testing.assert_allclose(camera_info_to_intrinsics(info).K, World().calib.K)
    _, cloud = log["cloud"][0]
    points, has_intensity = pointcloud2_to_xyzi(cloud)
    assert has_intensity and len(points) > 10000 and cloud.header.frame_id == "lidar"
    # stamps: increasing, 10 Hz apart, but not on a grid (driver latency up to jitter_ms)
    stamps = np.array([stamp_s(m) for _, m in log["image"]])
    gaps = np.diff(stamps)
    assert (gaps > 0).all() and 0.08 < np.median(gaps) < 0.12 and gaps.std() > 1e-4
    depth_stamps = np.array([stamp_s(m) for _, m in log["depth"]])
    offsets = np.abs(depth_stamps[:, None] - stamps[None, :]).min(axis=0)  # nearest depth
    assert 0 < offsets.max() <= 0.005  # the same capture, each with its own driver latency


def test_ground_truth_moves_smoothly(recorded):
    _, log = recorded
    first, second = (detections_to_boxes(m) for _, m in log["truth"][:2])
    assert len(first) >= 1 and first.labels.tolist() == second.labels.tolist()
    step = np.linalg.norm(second.centers - first.centers, axis=1)
    assert step.max() > 0.005 and step.max() < 1.0
    assert log["truth"][0][1].header.frame_id == "lidar"


def test_scenario_events_happen_on_time(recorded):
    start, log = recorded
    event = start + 1.5
    images = [(t, image_to_numpy(m).max()) for t, m in log["image"]]
    assert all(peak > 0 for t, peak in images if t < event - 0.2)  # clean before
    assert all(peak == 0 for t, peak in images if t > event + 0.5)  # dead camera: black after
    assert [m.data for _, m in log["budget"]] == [pytest.approx(0.3)]
    assert log["budget"][0][0] > event - 0.2
    clouds = [t for t, _ in log["cloud"]]
    assert min(clouds) < event - 0.5 and max(clouds) < event + 0.5  # the lidar stopped
    assert log["latency_budget_ms"] == 42.0  # set on the node named by `fusion_node`
    # one busy process while the scenario ran, none left once sim_sensors is gone
    assert log["busy"] == [(True, False)]
