"""vision_msgs as the set-up provides it (built from scripts/third_party_interfaces, or a ROS 2
distribution's)
is the real ROS 2 vision_msgs 4.x: same type hashes on the wire, and a Detection3DArray survives a
publish/subscribe round trip over DDS, in one process and across two."""

import os
import subprocess
import sys
import textwrap
import time

import pytest
import rclpy
import vision_msgs.msg as vm
from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Quaternion, Vector3
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from adaptive_fusion.ros.spin import interrupt

# RIHS01 type hashes of vision_msgs 4.1 as built by a ROS 2 distribution (share/vision_msgs/msg/
# *.json of an upstream build). The hash covers every field name and type, nested types included,
# so equal hashes mean the messages are the same on the wire for every other vision_msgs node.
UPSTREAM_TYPE_HASHES = {
    "BoundingBox2D": "008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f",
    "BoundingBox2DArray": "2464e82838009386d371b523211c21c91d74d313fcdd6788223c531d621cf691",
    "BoundingBox3D": "bbb73a65c163d7f9bb29009c7bde9f7faa576bd2d23299c4511d19230dab4698",
    "BoundingBox3DArray": "a81938db9576b10c2eecd7c5a5da3eac496efd00221b25ed051dfbc81fb56da6",
    "Classification": "f74db28d0eaef3afb78f48bf2161cd709a1383a0309d3454383b25be11345143",
    "Detection2D": "0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea",
    "Detection2DArray": "214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "Detection3D": "ddd703be132ab0b69d33121f1bb034132bfbb3b0ac5f9fb1516005ba1c8a265b",
    "Detection3DArray": "793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018",
    "LabelInfo": "3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
    "ObjectHypothesis": "51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90",
    "ObjectHypothesisWithPose": "41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc",
    "Point2D": "eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247",
    "Pose2D": "b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648",
    "VisionClass": "1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a",
    "VisionInfo": "95d3116a17484ad91c9a2686e1d54890bbfc3ff6c6a2de137738c4950d45d284",
}
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
TIMEOUT_S = 10.0


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


def spin_until(executor, done, timeout_s=TIMEOUT_S, on_tick=None):
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        if on_tick:
            on_tick()
        executor.spin_once(timeout_sec=0.05)
    return done()


def sample_detections() -> vm.Detection3DArray:
    """Two detections with every field away from its default, so a lost field cannot pass."""
    header = Header(frame_id="lidar")
    header.stamp.sec, header.stamp.nanosec = 1_700_000_123, 456_789_012
    detections = []
    for i, (label, score) in enumerate((("car", 0.91), ("pedestrian", 0.47))):
        pose = PoseWithCovariance(
            pose=Pose(position=Point(x=10.5 + i, y=-2.25, z=0.8),
                      orientation=Quaternion(x=0.0, y=0.0, z=0.3826834, w=0.9238795)))
        pose.covariance[0], pose.covariance[35] = 0.04 * (i + 1), 0.01
        results = [
            vm.ObjectHypothesisWithPose(
                hypothesis=vm.ObjectHypothesis(class_id=label, score=score), pose=pose),
            vm.ObjectHypothesisWithPose(
                hypothesis=vm.ObjectHypothesis(class_id="cyclist", score=0.05), pose=pose),
        ]
        bbox = vm.BoundingBox3D(center=pose.pose, size=Vector3(x=4.2 - i, y=1.8, z=1.5))
        detections.append(vm.Detection3D(header=header, results=results, bbox=bbox, id=f"t{i}"))
    return vm.Detection3DArray(header=header, detections=detections)


def assert_same_detections(received: vm.Detection3DArray, sent: vm.Detection3DArray) -> None:
    assert received.header.frame_id == "lidar"
    stamp = received.header.stamp
    assert (stamp.sec, stamp.nanosec) == (1_700_000_123, 456_789_012)
    assert [d.id for d in received.detections] == ["t0", "t1"]
    second = received.detections[1]
    assert second.results[0].hypothesis.class_id == "pedestrian"
    assert second.results[0].hypothesis.score == pytest.approx(0.47)
    assert second.results[0].pose.covariance[0] == pytest.approx(0.08)
    assert second.bbox.size.x == pytest.approx(3.2)
    assert second.bbox.center.orientation.w == pytest.approx(0.9238795)
    assert received == sent  # every remaining field


def test_type_hashes_match_upstream_vision_msgs_4(context):
    pytest.importorskip("rclpy.type_hash", reason="this ROS 2 (Humble) has no type hashes")
    node = rclpy.create_node("hash_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    for name in UPSTREAM_TYPE_HASHES:
        node.create_publisher(getattr(vm, name), f"probe_{name.lower()}", RELIABLE)

    def advertised():
        infos = {n: node.get_publishers_info_by_topic(f"probe_{n.lower()}")
                 for n in UPSTREAM_TYPE_HASHES}
        return {n: str(i[0].topic_type_hash).removeprefix("RIHS01_")
                for n, i in infos.items() if i}

    assert spin_until(executor, lambda: len(advertised()) == len(UPSTREAM_TYPE_HASHES))
    assert advertised() == UPSTREAM_TYPE_HASHES
    executor.shutdown()
    node.destroy_node()


def test_detection3d_array_round_trip_between_two_nodes(context):
    sender = rclpy.create_node("detections_sender", context=context)
    receiver = rclpy.create_node("detections_receiver", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(sender)
    executor.add_node(receiver)
    received = []
    receiver.create_subscription(vm.Detection3DArray, "detections", received.append, RELIABLE)
    publisher = sender.create_publisher(vm.Detection3DArray, "detections", RELIABLE)
    sent = sample_detections()

    # Publish until the subscriber is matched and the message arrives (discovery takes a moment).
    assert spin_until(executor, lambda: received, on_tick=lambda: publisher.publish(sent))
    assert_same_detections(received[0], sent)
    executor.shutdown()
    sender.destroy_node()
    receiver.destroy_node()


ECHO_NODE = textwrap.dedent("""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from vision_msgs.msg import Detection3DArray

    rclpy.init()
    node = rclpy.create_node("detections_echo")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    echo = node.create_publisher(Detection3DArray, "echoed", qos)
    node.create_subscription(Detection3DArray, "to_echo", echo.publish, qos)
    print("ready", flush=True)
    rclpy.spin(node)
""")




def test_detection3d_array_round_trip_through_another_process(context):
    env = dict(os.environ)  # same ROS_DOMAIN_ID and localhost discovery as this test process
    child = subprocess.Popen([sys.executable, "-c", ECHO_NODE], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        node = rclpy.create_node("detections_client", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        received = []
        node.create_subscription(vm.Detection3DArray, "echoed", received.append, RELIABLE)
        publisher = node.create_publisher(vm.Detection3DArray, "to_echo", RELIABLE)
        sent = sample_detections()
        assert spin_until(executor, lambda: received, on_tick=lambda: publisher.publish(sent))
        assert_same_detections(received[0], sent)
        executor.shutdown()
        node.destroy_node()
    finally:
        interrupt(child)
