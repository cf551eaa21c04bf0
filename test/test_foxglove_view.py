"""The Foxglove live view: fusion_node (in this process, real DDS) fuses sim_sensors' topics and
serves them through foxglove-sdk's WebSocket server; a client of Foxglove's protocol
(adaptive_fusion/lab/foxglove_client.py) subscribes to every channel, decodes each message with
the schema the server advertised, and checks it against what the node published over ROS for
the same stamp: the number of boxes, the image size, the point count, the transform."""

import json
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import rclpy
from conftest import sim_fusion_node, start_sim_sensors, stop_sim_fusion
from rclpy.context import Context
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, PointCloud2
from vision_msgs.msg import Detection3DArray

from adaptive_fusion.core.frames import CLASSES, MODALITIES
from adaptive_fusion.lab.foxglove_client import FoxgloveClient
from adaptive_fusion.ros.qos import SENSOR_QOS
from adaptive_fusion.ros.spin import spinning
from adaptive_fusion.runtime import foxglove_view
from adaptive_fusion.runtime.foxglove_view import (
    TOPICS,
    FoxgloveNotInstalled,
    FoxgloveServerError,
    FoxgloveView,
)
from adaptive_fusion.sim import WorldConfig
from adaptive_fusion.sim.rig import fusion_node_parameters
from adaptive_fusion.sync import stamp_ns

REPO = Path(__file__).resolve().parents[1]
LAYERS = 2  # the blocks per modality of conftest's model
MAX_DETECTIONS = 5  # with no score threshold, every frame has boxes (up to this many)
FRAMES = 3  # messages checked per channel


def free_port() -> int:
    """A port free now (the node's parameter takes 0 as "off", so the test picks one)."""
    with socket.socket() as probe:
        probe.bind((foxglove_view.HOST, 0))
        return probe.getsockname()[1]


class Published:
    """What the node and sim_sensors published over ROS, by stamp."""

    def __init__(self, context):
        self.node = rclpy.create_node("foxglove_probe", context=context)
        self.detections: dict[int, int] = {}
        self.points: dict[int, int] = {}
        self.camera_info: CameraInfo | None = None
        sub = self.node.create_subscription
        sub(Detection3DArray, "detections",
            lambda m: self.detections.__setitem__(stamp_ns(m), len(m.detections)), 10)
        sub(PointCloud2, "lidar/points",
            lambda m: self.points.__setitem__(stamp_ns(m), m.width * m.height), SENSOR_QOS)
        sub(CameraInfo, "camera/camera_info",
            lambda m: setattr(self, "camera_info", m), SENSOR_QOS)  # fmt: skip


@pytest.fixture(scope="module")
def served(model_path):
    """fusion_node with its live view on a free port, sim_sensors feeding it; messages of every
    channel as the client decoded them, and what went out over ROS."""
    sim = start_sim_sensors(seed=5)
    context = Context()
    rclpy.init(context=context)
    fusion = sim_fusion_node(context, model_path, score_threshold=0.0,
                             max_detections=MAX_DETECTIONS, foxglove_port=free_port())  # fmt: skip
    published = Published(context)
    try:
        with spinning(context, (fusion, published.node)):
            assert fusion.trigger_configure() == TransitionCallbackReturn.SUCCESS
            fusion.trigger_activate()
            received = defaultdict(list)
            with FoxgloveClient(fusion._view.url) as client:
                client.subscribe_all(set(TOPICS.values()), timeout_s=10.0)
                for message in client.messages(timeout_s=60.0):
                    received[message.topic].append(message)
                    if all(len(received[t]) >= FRAMES for t in TOPICS.values()):
                        break
                channels = {c["topic"]: c for c in client.channels.values()}
            time.sleep(0.5)  # the ROS messages of the last frames served
            yield channels, received, published
    finally:
        stop_sim_fusion(context, fusion, [published.node], sim)


def test_every_channel_is_advertised_with_its_schema(served):
    channels, received, _ = served
    assert set(channels) == set(TOPICS.values())
    schemas = {topic: (c["encoding"], c["schemaName"]) for topic, c in channels.items()}
    assert schemas[TOPICS["image"]] == ("protobuf", "foxglove.RawImage")
    assert schemas[TOPICS["points"]] == ("protobuf", "foxglove.PointCloud")
    assert schemas[TOPICS["boxes"]] == ("protobuf", "foxglove.SceneUpdate")
    assert schemas[TOPICS["tf"]] == ("protobuf", "foxglove.FrameTransforms")
    assert schemas[TOPICS["allocation"]][0] == "json"
    assert all(len(received[topic]) >= FRAMES for topic in TOPICS.values())


def test_boxes_are_the_detections_of_the_same_frame(served):
    _, received, published = served
    for served_update in received[TOPICS["boxes"]]:
        (entity,) = served_update.message.entities
        stamp = entity.timestamp.seconds * 10**9 + entity.timestamp.nanos
        assert entity.frame_id == "lidar"
        assert len(entity.cubes) == len(entity.texts) == published.detections[stamp]
        assert 0 < len(entity.cubes) <= MAX_DETECTIONS
        assert all(cube.size.x > 0 and cube.size.z > 0 for cube in entity.cubes)
        assert all(text.text.split()[0] in CLASSES for text in entity.texts)


def test_image_is_the_camera_picture_with_layer_bars(served):
    _, received, published = served
    info = published.camera_info
    for served_image in received[TOPICS["image"]]:
        image = served_image.message
        assert (image.width, image.height) == (info.width, info.height) == (320, 240)
        assert image.encoding == "rgb8" and image.frame_id == info.header.frame_id
        picture = np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, 3)
        assert (np.all(picture[-3] == (250, 200, 40), axis=1)).mean() > 0.8  # full layers


def test_point_cloud_is_the_lidar_sweep_of_the_frame(served):
    _, received, published = served
    for served_cloud in received[TOPICS["points"]]:
        cloud = served_cloud.message
        stamp = cloud.timestamp.seconds * 10**9 + cloud.timestamp.nanos
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity"]
        assert cloud.point_stride == 16 and cloud.frame_id == "lidar"
        points = np.frombuffer(cloud.data, np.float32).reshape(-1, 4)
        assert len(points) == published.points[stamp] > 1000
        assert np.isfinite(points).all()


def test_transform_places_the_camera_in_the_lidar_frame(served):
    _, received, published = served
    T_cam_lidar = np.reshape(fusion_node_parameters(WorldConfig())["camera_from_lidar"], (4, 4))
    camera_in_lidar = np.linalg.inv(T_cam_lidar)[:3, 3]
    for served_tf in received[TOPICS["tf"]]:
        (transform,) = served_tf.message.transforms
        assert transform.parent_frame_id == "lidar"
        assert transform.child_frame_id == published.camera_info.header.frame_id
        t = transform.translation
        np.testing.assert_allclose([t.x, t.y, t.z], camera_in_lidar, atol=1e-6)
        q = transform.rotation
        assert abs(np.linalg.norm([q.x, q.y, q.z, q.w]) - 1) < 1e-6


def test_allocation_is_plottable_json(served):
    _, received, published = served
    for served_allocation in received[TOPICS["allocation"]]:
        row = served_allocation.message
        assert set(row["layers"]) == set(MODALITIES)
        assert row["layers"] == dict.fromkeys(MODALITIES, LAYERS)  # budget 1, every sensor live
        assert row["budget_blocks"] == 3 * LAYERS and row["budget_fraction"] == 1.0
        assert all(0 <= q <= 1 for q in row["quality"].values())
        assert row["latency_ms"] > 0
        assert row["detections"] == published.detections[served_allocation.log_time_ns]


def test_layout_is_the_views_own(tmp_path):
    """config/foxglove_layout.json is foxglove_view.layout() written out, and names only the
    topics the view serves."""
    shipped = json.loads((REPO / "config" / "foxglove_layout.json").read_text())
    assert shipped == json.loads(foxglove_view.layout().to_json())
    text = json.dumps(shipped)
    named = {topic for topic in TOPICS.values() if topic in text}
    assert named == set(TOPICS.values()) - {TOPICS["tf"]}  # TF: the 3D panel reads it itself


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind((foxglove_view.HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(FoxgloveServerError, match=f"127.0.0.1:{port}.*in use"):
            FoxgloveView(port, CLASSES, MODALITIES)


def test_without_foxglove_sdk_the_node_needs_it_only_for_the_view(monkeypatch):
    # the node's module does not import foxglove: a robot without it runs with foxglove_port 0
    code = ("import sys, adaptive_fusion.ros.fusion_node; "
            "sys.exit('foxglove' in sys.modules)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
    monkeypatch.setitem(sys.modules, "foxglove", None)  # as if not installed
    with pytest.raises(FoxgloveNotInstalled, match="pip install foxglove-sdk==0.30.3"):
        FoxgloveView(0, CLASSES, MODALITIES)


def test_demo_option_turns_the_view_on_in_fusion_node():
    from adaptive_fusion.cli.main import build_parser
    from adaptive_fusion.lab.demo_session import DemoSession

    def fusion_port(*options):
        arguments = DemoSession(build_parser().parse_args(["demo", *options])).fusion_arguments()
        return [a for a in arguments if a.startswith("foxglove_port:=")]

    assert fusion_port() == []
    assert fusion_port("--foxglove") == ["foxglove_port:=8765"]
    assert fusion_port("--foxglove", "9000") == ["foxglove_port:=9000"]
