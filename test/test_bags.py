"""rosbag2 recording and playback over real DDS: what fusion_node's topics carry (sensor images,
vision_msgs detections, diagnostics) is written to MCAP or sqlite3 as delivered, reads back with
rosbags (vision_msgs' types from their installed .msg files), and plays back byte for byte with
its timing scaled, topics remapped and the bag's time on /clock."""

import threading
import time
from collections import Counter

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.context import Context
from rclpy.qos import QoSProfile
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

from adaptive_fusion.ros.bags import BagError, Recorder, play, read_messages, typestore_for
from adaptive_fusion.ros.conversions import numpy_to_image
from adaptive_fusion.ros.qos import RESULTS_QOS, SENSOR_QOS
from adaptive_fusion.ros.spin import spinning

TOPICS = ("/camera/image_raw", "/detections", "/diagnostics")


def detections(k: int) -> Detection3DArray:
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = str(k % 3), 0.5 + 0.01 * k
    return Detection3DArray(header=Header(frame_id="lidar"),
                            detections=[Detection3D(results=[hypothesis])])  # fmt: skip


@pytest.fixture
def ros():
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


def record_some(context, path, storage: str, frames: int = 20) -> None:
    """20 Hz of an image, a detection array and a diagnostic array, recorded as they arrive."""
    sensors = rclpy.create_node("bag_sources", context=context)
    recorder_node = rclpy.create_node("bag_recorder", context=context)
    pubs = (sensors.create_publisher(Image, TOPICS[0], SENSOR_QOS),
            sensors.create_publisher(Detection3DArray, TOPICS[1], RESULTS_QOS),
            sensors.create_publisher(DiagnosticArray, TOPICS[2], 10))  # fmt: skip
    try:
        with spinning(context, (sensors, recorder_node)):
            recorder = Recorder(recorder_node, TOPICS, path, storage)
            deadline = time.monotonic() + 10
            while recorder.pending or any(p.get_subscription_count() == 0 for p in pubs):
                assert time.monotonic() < deadline, f"not subscribed: {recorder.pending}"
                time.sleep(0.05)
            for k in range(frames):
                pixels = np.full((24, 32, 3), k, np.uint8)
                pubs[0].publish(numpy_to_image(pixels, "rgb8", Header(frame_id="camera")))
                pubs[1].publish(detections(k))
                pubs[2].publish(DiagnosticArray(status=[DiagnosticStatus(name=f"s{k}")]))
                time.sleep(0.05)
            time.sleep(0.3)
            recorder.close()
    finally:
        sensors.destroy_node()
        recorder_node.destroy_node()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorded_topics_read_back_with_their_types(ros, tmp_path, storage):
    bag = tmp_path / "bag"
    record_some(ros, bag, storage)
    messages = list(read_messages(bag))
    by_topic = {t: [m for m in messages if m[0] == t] for t in TOPICS}
    assert all(len(v) >= 18 for v in by_topic.values()), {t: len(v) for t, v in by_topic.items()}
    assert {m[1] for m in by_topic["/detections"]} == {"vision_msgs/msg/Detection3DArray"}
    stamps = [m[2] for m in messages]
    assert stamps == sorted(stamps)  # time order
    typestore = typestore_for(["vision_msgs/msg/Detection3DArray"])
    first = typestore.deserialize_cdr(by_topic["/detections"][0][3],
                                      "vision_msgs/msg/Detection3DArray")  # fmt: skip
    assert first.header.frame_id == "lidar"
    assert first.detections[0].results[0].hypothesis.class_id in ("0", "1", "2")
    image = typestore.deserialize_cdr(by_topic["/camera/image_raw"][-1][3], "sensor_msgs/msg/Image")
    assert (image.width, image.height, image.encoding) == (32, 24, "rgb8")


def test_the_mcap_file_decodes_with_the_mcap_projects_own_reader(ros, tmp_path):
    """What Foxglove and rosbag2's mcap storage plugin read: the schemas the file carries decode
    every message with mcap-ros2-support, not with rosbags, which wrote it."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    bag = tmp_path / "bag"
    record_some(ros, bag, "mcap")
    [path] = bag.glob("*.mcap")
    with path.open("rb") as file:
        reader = make_reader(file, decoder_factories=[DecoderFactory()])
        decoded = [(channel.topic, message)
                   for _, channel, _, message in reader.iter_decoded_messages()]
    counts = Counter(topic for topic, _ in decoded)
    assert set(counts) == set(TOPICS) and min(counts.values()) >= 18, counts
    detections = [message for topic, message in decoded if topic == "/detections"]
    assert detections[0].header.frame_id == "lidar"
    assert detections[0].detections[0].results[0].hypothesis.class_id in ("0", "1", "2")
    image = next(message for topic, message in decoded if topic == "/camera/image_raw")
    assert (image.width, image.height, image.encoding) == (32, 24, "rgb8")


def test_playback_is_byte_for_byte_with_scaled_timing_remap_and_clock(ros, tmp_path):
    bag = tmp_path / "bag"
    record_some(ros, bag, "mcap")
    recorded = [m for m in read_messages(bag) if m[0] == "/camera/image_raw"]
    span_s = (recorded[-1][2] - recorded[0][2]) / 1e9
    listener = rclpy.create_node("bag_listener", context=ros)
    player = rclpy.create_node("bag_player", context=ros)
    received, clocks = [], []
    listener.create_subscription(Image, "/replayed/image", received.append, QoSProfile(depth=100),
                                 raw=True)  # fmt: skip
    listener.create_subscription(Clock, "/clock", clocks.append, 100)
    try:
        with spinning(ros, (listener, player)):
            # a publisher's first messages can outrun discovery: play once to match, then count
            play(player, bag, rate=50.0, remap={"/camera/image_raw": "/replayed/image"})
            deadline, seen = time.monotonic() + 10, -1
            while (not received or len(received) != seen) and time.monotonic() < deadline:
                seen = len(received)  # until the warm-up's messages have all landed
                time.sleep(0.3)
            received.clear(), clocks.clear()
            start = time.monotonic()
            published = play(player, bag, rate=2.0, clock=True,
                             remap={"/camera/image_raw": "/replayed/image"})  # fmt: skip
            took = time.monotonic() - start
            time.sleep(0.5)
    finally:
        listener.destroy_node()
        player.destroy_node()
    assert published == len(list(read_messages(bag)))
    assert [bytes(m) for m in received] == [m[3] for m in recorded]
    assert span_s / 2 * 0.8 < took < span_s / 2 + 1.0  # half the recorded time
    assert len(clocks) == published
    bag_ns = [c.clock.sec * 10**9 + c.clock.nanosec for c in clocks]
    assert bag_ns == sorted(bag_ns) and bag_ns[0] == min(m[2] for m in read_messages(bag))


def test_loop_plays_again_until_stopped_and_bad_input_is_refused(ros, tmp_path):
    bag = tmp_path / "bag"
    record_some(ros, bag, "mcap", frames=5)
    once = len(list(read_messages(bag)))
    player = rclpy.create_node("bag_looper", context=ros)
    stop = threading.Event()
    result = []
    thread = threading.Thread(target=lambda: result.append(
        play(player, bag, rate=20.0, loop=True, stop=stop)))  # fmt: skip
    thread.start()
    time.sleep(0.6)
    stop.set()
    thread.join(5)
    player.destroy_node()
    assert result and result[0] > once  # it went round at least twice
    with pytest.raises(BagError, match="rate"):
        play(rclpy.create_node("bag_rate", context=ros), bag, rate=0.0)
    with pytest.raises(BagError, match="cannot read"):
        list(read_messages(tmp_path / "no_such_bag"))


def test_record_and_replay_commands(ros, tmp_path, capsys):
    import json

    from adaptive_fusion.cli.main import main

    source = rclpy.create_node("bag_cli_source", context=ros)
    pub = source.create_publisher(DiagnosticArray, "/diagnostics", 10)
    source.create_timer(0.05, lambda: pub.publish(DiagnosticArray()))
    bag = tmp_path / "cli_bag"
    try:
        with spinning(ros, (source,)):
            assert main(["record", str(bag), "--topics", "/diagnostics", "--duration", "1.5",
                         "--storage", "sqlite3", "--json"]) == 0  # fmt: skip
    finally:
        source.destroy_node()
    counts = json.loads(capsys.readouterr().out)
    assert counts["/diagnostics"] >= 10
    assert main(["replay", str(bag), "--rate", "20", "--remap", "diagnostics:=/elsewhere"]) == 0
    assert f"published {counts['/diagnostics']} messages" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="OLD:=NEW"):
        main(["replay", str(bag), "--remap", "nonsense"])


def write_scored_bag(path, shift_m: float = 0.0, frames: int = 6) -> None:
    """Ground truth and detections (the truth moved by shift_m, stamped 5 ms later) as a bag."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer

    from adaptive_fusion.core.boxes import Boxes3D
    from adaptive_fusion.ros.bags import BAG_VERSION
    from adaptive_fusion.ros.messages import boxes_to_detections

    msgtype = "vision_msgs/msg/Detection3DArray"
    rng = np.random.default_rng(1)
    with Writer(path, version=BAG_VERSION) as writer:
        typestore = typestore_for([msgtype])
        truth_c = writer.add_connection("/ground_truth", msgtype, typestore=typestore)
        det_c = writer.add_connection("/detections", msgtype, typestore=typestore)
        for k in range(frames):
            n = 4
            truth = Boxes3D(rng.integers(0, 3, n), rng.uniform(5, 30, (n, 3)).astype(np.float32),
                            np.ones((n, 3), np.float32), np.zeros(n, np.float32),
                            np.ones(n, np.float32))  # fmt: skip
            seen = Boxes3D(truth.labels, truth.centers + np.float32([shift_m, 0, 0]), truth.sizes,
                           truth.yaws, np.full(n, 0.9, np.float32))  # fmt: skip
            stamp = 1_000_000_000 * (k + 1)
            for connection, boxes, offset in ((truth_c, truth, 0), (det_c, seen, 5_000_000)):
                header = Header(frame_id="lidar")
                header.stamp.sec, header.stamp.nanosec = divmod(stamp + offset, 10**9)
                writer.write(connection, stamp + offset,
                             serialize_message(boxes_to_detections(boxes, header)))


@pytest.mark.parametrize("shift_m, expected", [(0.0, 1.0), (0.7, 0.75), (10.0, 0.0)])
def test_evaluate_scores_a_bags_detections_against_its_ground_truth(tmp_path, capsys, shift_m,
                                                                     expected):
    """Boxes 0.7 m off match at the 1, 2 and 4 m thresholds only: mAP 3/4."""
    import json

    from adaptive_fusion.cli.main import main

    bag = tmp_path / f"scored_{shift_m}"
    write_scored_bag(bag, shift_m)
    assert main(["evaluate", "--bag", str(bag), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 6 and report["unpaired_detections"] == 0
    assert report["mAP"] == pytest.approx(expected)
    assert main(["evaluate", "--bag", str(bag), "--truth-topic", "/elsewhere"]) == 2
    assert "no message on /detections has one on /elsewhere" in capsys.readouterr().out
    assert main(["evaluate", "--bag", str(tmp_path / "missing")]) == 2
