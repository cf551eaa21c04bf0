"""fusion_node explains its silence over real DDS: fake drivers in this process publish inputs
that fail in one way each, and the node's own /diagnostics names the problem (the doctor's tests
cover every kind; these check the node is wired to its InputMonitor). Also the per-input QoS
overrides and the extrinsic's source where tf2_ros is absent."""

import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from adaptive_fusion.ros import extrinsics
from adaptive_fusion.ros.conversions import numpy_to_image, numpy_to_pointcloud2
from adaptive_fusion.ros.diagnostics import ERROR, OK, values_of
from adaptive_fusion.ros.fusion_node import FusionNode
from adaptive_fusion.ros.qos import SENSOR_QOS
from adaptive_fusion.ros.spin import spinning
from adaptive_fusion.sim import WorldConfig
from adaptive_fusion.sim.rig import fusion_node_parameters

W, H = 64, 48



class Drivers:
    """Camera, camera_info, depth and lidar at 10 Hz; per input a stamp offset (s), a frame_id
    and (images) a size, changeable while running."""

    def __init__(self, context):
        self.node = rclpy.create_node("fake_drivers", context=context)
        self.offsets = {}
        self.frames = {"camera": "camera", "depth": "camera", "lidar": "lidar"}
        self.sizes = {"camera": (W, H), "depth": (W, H)}
        pub = self.node.create_publisher
        self.pubs = {
            "camera": pub(Image, "camera/image_raw", SENSOR_QOS),
            "camera_info": pub(CameraInfo, "camera/camera_info", SENSOR_QOS),
            "depth": pub(Image, "depth/image_raw", SENSOR_QOS),
            "lidar": pub(PointCloud2, "lidar/points", SENSOR_QOS),
        }
        rng = np.random.default_rng(0)
        self.points = rng.uniform(-10, 10, (500, 4)).astype(np.float32)
        self.node.create_timer(0.1, self.tick)

    def header(self, name: str) -> Header:
        now = self.node.get_clock().now().nanoseconds + int(self.offsets.get(name, 0) * 1e9)
        header = Header(frame_id=self.frames.get(name, "camera"))
        header.stamp.sec, header.stamp.nanosec = divmod(now, 10**9)
        return header

    def tick(self) -> None:
        w, h = self.sizes["camera"]
        image = np.full((h, w, 3), 90, np.uint8)
        self.pubs["camera"].publish(numpy_to_image(image, "rgb8", self.header("camera")))
        info = CameraInfo(header=self.header("camera_info"), width=W, height=H)
        info.k = [W / 2, 0.0, W / 2, 0.0, W / 2, H / 2, 0.0, 0.0, 1.0]
        self.pubs["camera_info"].publish(info)
        w, h = self.sizes["depth"]
        depth = np.full((h, w), 5.0, np.float32)
        self.pubs["depth"].publish(numpy_to_image(depth, "32FC1", self.header("depth")))
        cloud = numpy_to_pointcloud2(self.points, ("x", "y", "z", "intensity"),
                                     self.header("lidar"))  # fmt: skip
        self.pubs["lidar"].publish(cloud)


class Diagnostics:
    """The newest /diagnostics status of each of fusion_node's entries, by name after ': '."""

    def __init__(self, node):
        self.latest: dict[str, tuple[bytes, str, dict]] = {}
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on, 10)

    def _on(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name.startswith("/fusion_node: "):
                self.latest[s.name.split(": ", 1)[1]] = (s.level, s.message, values_of(s))

    def wait(self, name: str, predicate, timeout: float = 10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            entry = self.latest.get(name)
            if entry is not None and predicate(*entry):
                return entry
            time.sleep(0.05)
        raise AssertionError(
            f"{name}: no status as expected in {timeout} s: {self.latest.get(name)}"
        )


@pytest.fixture
def system(model_path):
    """A configured, active fusion_node (slop 20 ms, causes named after 1 s) and the drivers."""

    def start(**overrides):
        params = dict(model_path=str(model_path), policy="quality_weighted", threads=1,
                      diagnostics_period=0.2,
                      sync_slop=0.02, silence_timeout=1.0,
                      **fusion_node_parameters(WorldConfig()))  # fmt: skip
        params.update(overrides)
        fusion = FusionNode(
            context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
        drivers = Drivers(context)
        diagnostics = Diagnostics(drivers.node)
        nodes.extend((fusion, drivers.node))
        fusion.trigger_configure()
        fusion.trigger_activate()
        executors.append(spinning(context, (fusion, drivers.node)))
        executors[-1].__enter__()
        return fusion, drivers, diagnostics

    context = Context()
    rclpy.init(context=context)
    nodes, executors = [], []
    yield start
    for executor in executors:
        executor.__exit__(None, None, None)
    for node in nodes:
        node.destroy_node()
    rclpy.shutdown(context=context)


def test_stamps_beyond_the_slop_are_reported_with_their_offset(system):
    fusion, drivers, diagnostics = system()
    diagnostics.wait("synchronizer", lambda level, msg, values: int(values["sets"]) > 5)
    drivers.offsets["depth"] = -0.045  # 45 ms late: over the 20 ms slop, under half a period
    level, message, values = diagnostics.wait(
        "synchronizer", lambda level, msg, values: level == ERROR
    )
    assert "no synchronized set" in message and "sync_slop 0.02 s" in message
    assert abs(float(values["stamp_offset_s.depth"]) + 0.045) < 0.01
    assert "a sync_slop above 0.04" in values["fix"]
    # the slop raised at runtime: the node's synchronizer and its monitor both take it
    assert fusion.set_parameters([Parameter("sync_slop", value=0.06)])[0].successful
    level, message, values = diagnostics.wait(
        "synchronizer", lambda level, msg, values: level == OK
    )
    assert values["slop_s"] == "0.06"
    sets = int(values["sets"])
    diagnostics.wait("synchronizer", lambda level, msg, values: int(values["sets"]) > sets + 5)


def test_image_size_and_frame_disagreeing_with_camera_info(system):
    fusion, drivers, diagnostics = system()
    diagnostics.wait("input camera", lambda level, msg, values: level == OK)
    drivers.sizes["camera"] = (80, 60)
    drivers.frames["depth"] = "depth_optical"
    drivers.frames["lidar"] = "velodyne"  # camera_from_lidar is configured for "lidar"
    level, message, values = diagnostics.wait(
        "input camera", lambda level, msg, values: "size_mismatch" in values["findings"]
    )
    assert level == ERROR and "image is 80x60 but camera_info says 64x48" in message
    _, message, values = diagnostics.wait(
        "input depth", lambda level, msg, values: "frame_mismatch" in values["findings"]
    )
    assert "'depth_optical' differs from camera_info's 'camera'" in message
    if extrinsics.tf2_ros is None:  # with TF, any lidar frame has its transform looked up
        _, message, values = diagnostics.wait(
            "input lidar", lambda level, msg, values: "frame_mismatch" in values["findings"]
        )
        assert "frame_id 'velodyne' is not 'lidar'" in message
    # the node skips and counts each mismatched image as well
    diagnostics.wait(
        "camera", lambda level, msg, values: int(values.get("errors.size_mismatch", 0)) >= 3
    )


def test_qos_override_makes_a_reliable_subscription(system):
    fusion, drivers, diagnostics = system(**{"qos.lidar.reliability": "reliable",
                                              "qos.lidar.depth": 3})  # fmt: skip
    (info,) = fusion.get_subscriptions_info_by_topic("/lidar/points")
    assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert fusion._sensor_subs["lidar"].sub.qos_profile.depth == 3  # graph info has no depth
    # the best-effort driver cannot reach it, and the node says so
    _, message, values = diagnostics.wait(
        "input lidar", lambda level, msg, values: "incompatible_qos" in values["findings"]
    )
    assert "/fake_drivers (best_effort" in message and "publish reliable" in values["fix"]
    assert fusion.monitor.states["lidar"].received == 0


def test_invalid_qos_override_is_refused():
    context = Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ValueError, match="qos.camera.reliability: 'fast' is not one of"):
            FusionNode(
                context=context,
                parameter_overrides=[Parameter("qos.camera.reliability", value="fast")],
            )
    finally:
        rclpy.shutdown(context=context)


def test_streams_are_scheduled_by_measurement_and_the_evidence_is_in_diagnostics(system):
    fusion, drivers, diagnostics = system(threads=2)  # stream_scheduling: auto by default
    _, _, values = diagnostics.wait(
        "fusion", lambda level, msg, values: "model_ms.side_by_side" in values)
    assert values["stream_scheduling"] == "auto"
    assert values["streams_last"] in ("one_after_another", "side_by_side")
    assert float(values["model_ms.one_after_another"]) > 0
    assert float(values["model_ms.side_by_side"]) > 0


def test_an_unknown_stream_scheduling_is_refused():
    context = Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ValueError, match="stream_scheduling: 'parallel' is not one of"):
            FusionNode(context=context,
                       parameter_overrides=[Parameter("stream_scheduling", value="parallel")])
    finally:
        rclpy.shutdown(context=context)


def test_extrinsic_comes_from_the_parameter_without_tf2(system):
    if extrinsics.tf2_ros is not None:
        pytest.skip("tf2_ros is installed here: the lookup path is in use")
    fusion, drivers, diagnostics = system(use_tf=True)
    assert fusion._extrinsics.source == extrinsics.PARAMETER
    matrix, problem = fusion._extrinsics.camera_from_lidar("camera", "lidar")
    np.testing.assert_array_equal(matrix, fusion._extrinsic())
    assert problem == ""


def test_transform_to_matrix():
    from geometry_msgs.msg import Transform

    t = Transform()
    t.translation.x, t.translation.y, t.translation.z = 0.1, -0.2, 0.3
    # the REP 103 lidar -> optical-frame rotation: quaternion (-0.5, 0.5, -0.5, 0.5) applied
    # to the points (x fwd, y left, z up) gives (z fwd, x right, y down)
    t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w = 0.5, -0.5, 0.5, 0.5
    T = extrinsics.transform_to_matrix(t)
    forward = T @ np.array([1.0, 0.0, 0.0, 1.0])
    left = T[:3, :3] @ np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(forward, [0.1, -0.2, 1.3, 1.0], atol=1e-12)
    np.testing.assert_allclose(left, [-1.0, 0.0, 0.0], atol=1e-12)
