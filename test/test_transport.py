"""Real sensor sizes between two processes over Fast DDS with the shipped profile: a 1280x720
rgb8 image and 32FC1 depth at 30 Hz and a 130k-point cloud at 10 Hz, published by a child
process, reach a sensor-data-QoS subscriber here intact."""

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data

from adaptive_fusion.ros import transport
from adaptive_fusion.ros.transport_probe import Stream, check_payload

NS = "{http://www.eprosima.com}"
STREAMS = (
    "camera/image_raw=rgb8:1280x720@30",
    "depth/image_raw=32FC1:1280x720@30",
    "lidar/points=cloud:130000@10",
)
PUBLISH_S = 2.5


def test_profile_is_found_and_raises_the_shared_memory_segment():
    path = transport.profile_path()
    assert path.name == transport.PROFILE_FILE and path.is_file()
    root = ET.parse(path).getroot()
    descriptors = {
        d.findtext(f"{NS}transport_id"): d for d in root.iter(f"{NS}transport_descriptor")
    }
    participant = root.find(f"{NS}profiles/{NS}participant")
    assert participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iter(f"{NS}transport_id")]
    assert [descriptors[t].findtext(f"{NS}type") for t in used] == ["SHM", "UDPv4"]
    assert int(descriptors[used[0]].findtext(f"{NS}segment_size")) == 16 * 1024 * 1024
    assert participant.findtext(f"{NS}rtps/{NS}useBuiltinTransports") == "false"


def test_profile_environment_keeps_a_users_own_profile():
    base = {"PATH": "/bin"}
    assert transport.profile_environment(base)[transport.PROFILE_VARIABLE] == str(
        transport.profile_path()
    )
    own = {transport.PROFILE_VARIABLE: "/etc/my_profile.xml"}
    assert transport.profile_environment(own)[transport.PROFILE_VARIABLE] == "/etc/my_profile.xml"


def test_large_message_fix_names_the_profile_for_fast_dds():
    env = {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    fix = transport.large_message_fix(env)
    assert transport.PROFILE_VARIABLE in fix and str(transport.profile_path()) in fix
    assert "CYCLONEDDS_URI" in transport.large_message_fix(
        {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    )
    assert transport.uses_fast_dds({})  # this venv's only RMW


@pytest.fixture
def ros_node():
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("transport_receiver", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    rclpy.shutdown(context=context)


def test_real_sensor_sizes_cross_processes_with_the_profile(ros_node):
    node, executor = ros_node
    streams = [Stream.parse(text) for text in STREAMS]
    received = defaultdict(list)
    shapes = defaultdict(set)

    def on_message(msg, topic):
        received[topic].append(check_payload(msg))  # raises if the content is not the probe's
        shapes[topic].add((msg.height, msg.width))

    for stream in streams:
        node.create_subscription(
            stream.msg_type,
            stream.topic,
            lambda msg, topic=stream.topic: on_message(msg, topic),
            qos_profile_sensor_data,
        )
    command = [sys.executable, "-m", "adaptive_fusion.ros.transport_probe", "--wait", "15"]
    command += [arg for text in STREAMS for arg in ("--stream", text)]
    command += ["--duration", str(PUBLISH_S)]
    env = transport.profile_environment(os.environ)
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 40
        while child.poll() is None:
            assert time.monotonic() < deadline, "the probe did not finish in 40 s"
            executor.spin_once(timeout_sec=0.01)
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.01)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0
    sent = json.loads(child.stdout.read())
    for stream in streams:
        # the probe keeps (nearly) its rate even on a loaded machine
        assert sent[stream.topic] >= 0.8 * PUBLISH_S * stream.rate_hz, (stream.topic, sent)
        got = received[stream.topic]
        assert len(got) >= 0.8 * sent[stream.topic], (stream.topic, len(got), sent)
        assert got == sorted(got) and len(set(got)) == len(got)  # in order, no duplicates
    assert shapes["camera/image_raw"] == {(720, 1280)}
    assert shapes["depth/image_raw"] == {(720, 1280)}
    assert shapes["lidar/points"] == {(1, 130000)}
