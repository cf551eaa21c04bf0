"""Real rclpy over Fast DDS: a best-effort sensor publisher node and a second node with our
Subscriber + ApproximateTimeSynchronizer receive synchronized Image + PointCloud2 sets."""

import time

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header

from adaptive_fusion.ros import filters
from adaptive_fusion.ros.conversions import (
    image_to_numpy,
    numpy_to_image,
    numpy_to_pointcloud2,
    pointcloud2_to_xyzi,
)
from adaptive_fusion.sync import ApproximateTimeSynchronizer, Subscriber

FRAMES = 20


@pytest.fixture
def ros_context():
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    yield context, executor
    executor.shutdown()
    rclpy.shutdown(context=context)


def header(stamp_ns: int, frame_id: str) -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def spin_for(executor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.005)


def test_best_effort_sensors_are_synchronized_over_dds(ros_context):
    context, executor = ros_context
    sensors = rclpy.create_node("fake_sensors", context=context)
    fusion = rclpy.create_node("fusion_under_test", context=context)
    for node in (sensors, fusion):
        executor.add_node(node)
    image_pub = sensors.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
    cloud_pub = sensors.create_publisher(PointCloud2, "lidar/points", qos_profile_sensor_data)

    inputs = [
        filters.sensor_subscriber(fusion, Image, "camera/image_raw"),
        Subscriber(fusion, PointCloud2, "lidar/points"),  # sensor-data QoS by default
    ]
    sync = ApproximateTimeSynchronizer(inputs, queue_size=10, slop=0.05, purge_stale=True)
    received, drops = [], []
    sync.registerCallback(lambda image, cloud: received.append((image, cloud)))
    assert filters.observe_drops(sync, lambda msg, index, reason: drops.append((index, reason)))
    reliable_images = []  # upstream's default QoS: incompatible with best-effort publishers
    fusion.create_subscription(Image, "camera/image_raw", reliable_images.append, 10)

    deadline = time.monotonic() + 10
    while image_pub.get_subscription_count() < 1 or cloud_pub.get_subscription_count() < 1:
        assert time.monotonic() < deadline, "DDS discovery did not complete in 10 s"
        spin_for(executor, 0.05)

    rng = np.random.default_rng(0)
    base = 1_700_000_000 * 10**9
    for k in range(FRAMES):
        stamp = base + k * 100_000_000
        pixels = np.full((48, 64, 3), k, np.uint8)
        image_pub.publish(numpy_to_image(pixels, "rgb8", header(stamp + 7_000_000, "camera")))
        for half in range(2):  # lidar at twice the camera rate
            points = rng.uniform(-20, 20, (2000, 4)).astype(np.float32)
            points[:, 3] = k
            cloud_pub.publish(
                numpy_to_pointcloud2(
                    points, ("x", "y", "z", "intensity"), header(stamp + half * 50_000_000, "lidar")
                )
            )
        spin_for(executor, 0.03)
    spin_for(executor, 0.5)

    assert len(received) >= FRAMES - 2  # best effort on localhost: at most a stray loss
    for image, cloud in received:
        k = int(image_to_numpy(image)[0, 0, 0])
        points, has_intensity = pointcloud2_to_xyzi(cloud)
        assert has_intensity and points.shape == (2000, 4) and np.all(points[:, 3] == k)
        image_ns = image.header.stamp.sec * 10**9 + image.header.stamp.nanosec
        cloud_ns = cloud.header.stamp.sec * 10**9 + cloud.header.stamp.nanosec
        assert cloud_ns == base + k * 100_000_000  # the nearer of the two clouds (7 ms vs 43 ms)
        assert image_ns - cloud_ns == 7_000_000
    assert reliable_images == []
    assert len(drops) >= len(received) - 1 and set(drops) == {(1, "stale")}  # unpaired clouds
    assert sync.drop_counts["stale"] == len(drops)
    sensors.destroy_node()
    fusion.destroy_node()


def test_filters_selects_this_package_where_message_filters_is_missing():
    try:
        import message_filters  # noqa: F401
    except ImportError:
        assert filters.UPSTREAM is False
        assert filters.ApproximateTimeSynchronizer is ApproximateTimeSynchronizer
        assert filters.Subscriber is Subscriber
    else:
        assert filters.UPSTREAM is True
