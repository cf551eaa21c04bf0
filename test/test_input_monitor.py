"""InputMonitor's checks on real sensor_msgs messages with a controlled clock: each cause of
silence gives its finding (with the fix), a healthy feed gives none, and log lines are
throttled per input and kind. The same checks over real DDS are in test_doctor.py."""

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from adaptive_fusion.ros import transport
from adaptive_fusion.ros.diagnostics import ERROR, OK, values_of
from adaptive_fusion.ros.input_monitor import (
    CLOUD,
    DEPTH,
    IMAGE,
    INFO,
    OTHER,
    RELIABLE,
    TRANSIENT_LOCAL,
    InputMonitor,
    InputSpec,
    MonitorConfig,
    PublisherInfo,
)

WALL = 1_700_000_000 * 10**9
SPECS = [
    InputSpec("camera", "camera/image_raw", IMAGE, synchronized=True),
    InputSpec("camera_info", "camera/camera_info", INFO),
    InputSpec("depth", "depth/image_raw", DEPTH, synchronized=True),
    InputSpec("lidar", "lidar/points", CLOUD, synchronized=True, expected_frame="lidar"),
    InputSpec("compute_budget", "compute_budget", OTHER, RELIABLE, TRANSIENT_LOCAL, False),
]


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def stamped(msg, stamp_ns: int, frame_id: str):
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = frame_id
    return msg


def image(stamp_ns, frame="camera", width=64, height=48):
    return stamped(Image(width=width, height=height, encoding="rgb8"), stamp_ns, frame)


def info(stamp_ns, frame="camera", width=64, height=48):
    return stamped(CameraInfo(width=width, height=height), stamp_ns, frame)


def cloud(stamp_ns, frame="lidar"):
    return stamped(PointCloud2(width=100, height=1), stamp_ns, frame)


def feed(monitor, clock, seconds, offsets=None, frames=None, sizes=None, now_shift=0, step=1):
    """10 Hz of every sensor for `seconds`; stamps = node clock + offset (per input), each
    stamp counting `step` periods (negative: going back)."""
    offsets = {"camera": 0.0, "depth": 0.0, "lidar": 0.0, **(offsets or {})}
    frames = {"camera": "camera", "depth": "camera", "lidar": "lidar", **(frames or {})}
    sizes = {"camera": (64, 48), "depth": (64, 48), **(sizes or {})}
    for k in range(int(seconds * 10)):
        clock.t += 0.1
        now = WALL + int(clock.t * 1e9)
        stamp = {m: now + int(o * 1e9) for m, o in offsets.items()}
        if step != 1:
            stamp = {m: WALL + int((100 + step * k * 0.1 + o) * 1e9) for m, o in offsets.items()}
        monitor.on_message("camera", image(stamp["camera"], frames["camera"], *sizes["camera"]),
                           now + now_shift)  # fmt: skip
        monitor.on_message("camera_info", info(stamp["camera"]), now + now_shift)
        monitor.on_message("depth", image(stamp["depth"], frames["depth"], *sizes["depth"]),
                           now + now_shift)  # fmt: skip
        monitor.on_message("lidar", cloud(stamp["lidar"], frames["lidar"]), now + now_shift)
    return WALL + int(clock.t * 1e9) + now_shift


@pytest.fixture
def setup():
    clock = Clock()
    return InputMonitor(SPECS, MonitorConfig(slop_s=0.05), "fusion_node", mono=clock), clock


def kinds(report):
    return sorted((f.input, f.kind) for f in report.findings)


def test_healthy_feed_has_no_finding_and_ok_statuses(setup):
    monitor, clock = setup
    now = feed(monitor, clock, 4)
    monitor.on_set_emitted()
    report = monitor.check(now)
    assert report.findings == [] and report.log_lines == [] and report.worst == OK
    by_name = {s.name: s for s in report.statuses}
    camera = values_of(by_name["fusion_node: input camera"])
    assert by_name["fusion_node: input camera"].level == OK
    assert float(camera["rate_hz"]) == pytest.approx(10.0)
    assert camera["frame_id"] == "camera" and camera["findings"] == "none"
    assert by_name["fusion_node: synchronizer"].level == OK


def test_incompatible_qos_from_the_graph_names_the_policy_and_the_fix(setup):
    monitor, clock = setup
    volatile = PublisherInfo("/budget_tool", "reliable", "volatile", "keep_last", 1)
    monitor.on_publishers("compute_budget", [volatile])
    report = monitor.check(feed(monitor, clock, 1))
    (finding,) = [f for f in report.findings if f.input == "compute_budget"]
    assert finding.kind == "incompatible_qos" and finding.level == ERROR
    assert "/budget_tool" in finding.message and "durability" in finding.message
    assert "transient_local" in finding.fix
    monitor.on_publishers("compute_budget", [])
    monitor.on_incompatible_qos("compute_budget", "RELIABILITY", 1)  # the rclpy event
    assert "reliability" in monitor.check(0).findings[0].message


def test_matched_publisher_without_samples_names_the_transport_profile(setup):
    monitor, clock = setup
    monitor.on_matched("camera", 1)
    monitor.on_message_lost("camera", 40)
    clock.t += 3.5
    report = monitor.check(WALL)
    camera = [f for f in report.findings if f.input == "camera"]
    assert [f.kind for f in camera] == ["no_samples"]
    assert "1 publisher(s) matched" in camera[0].message and "40 reported lost" in camera[0].message
    assert transport.PROFILE_VARIABLE in camera[0].fix
    assert ("depth", "no_publisher") in kinds(report)  # nobody publishes depth at all
    assert ("compute_budget", "no_publisher") not in kinds(report)  # optional input


def test_a_publisher_that_stops_is_told_apart_from_samples_lost_in_transit(setup):
    monitor, clock = setup
    for name in ("camera", "depth", "lidar"):
        monitor.on_matched(name, 1)
    now = feed(monitor, clock, 1)  # samples flowed, none lost
    monitor.on_message_lost("lidar", 12)  # the lidar's keep getting lost after its last one
    clock.t += 3.5
    report = monitor.check(now + int(3.5e9))
    by_input = {f.input: f for f in report.findings}
    camera = by_input["camera"]
    assert camera.kind == "publisher_stopped" and "10 samples" in camera.message
    assert "driver" in camera.fix and transport.PROFILE_VARIABLE not in camera.fix
    assert by_input["lidar"].kind == "no_samples"  # losses after the last sample: transport
    assert transport.PROFILE_VARIABLE in by_input["lidar"].fix


def test_a_publisher_that_left_the_graph_is_named(setup):
    monitor, clock = setup
    monitor.on_matched("camera", 1)
    now = feed(monitor, clock, 1)
    monitor.on_matched("camera", 0)  # the driver exited
    clock.t += 3.5
    (camera,) = [f for f in monitor.check(now + int(3.5e9)).findings if f.input == "camera"]
    assert camera.kind == "publisher_left" and "left" in camera.message


def test_samples_lost_in_transit_while_some_arrive(setup):
    monitor, clock = setup
    monitor.on_matched("camera", 1)
    now = feed(monitor, clock, 1)
    monitor.check(now)
    now = feed(monitor, clock, 1)  # 10 delivered since the last check
    monitor.on_message_lost("camera", 25)
    assert ("camera", "samples_lost") in kinds(monitor.check(now))


def test_no_set_reports_the_stamp_offset_against_the_slop(setup):
    monitor, clock = setup
    monitor.config.slop_s = 0.02
    now = feed(monitor, clock, 4, offsets={"lidar": -0.25})
    (finding,) = monitor.check(now).findings
    assert finding.kind == "no_sync"
    assert "lidar -0.250 s (nearest-stamp gap 0.050 s)" in finding.message
    assert "depth +0.000 s" in finding.message and "sync_slop 0.02 s" in finding.message
    assert "one clock" in finding.fix and "above 0.050 s" in finding.fix
    monitor.on_set_emitted()
    assert monitor.check(now).findings == []


@pytest.mark.parametrize(
    ("now_shift", "cause"),
    [
        (-WALL + 5 * 10**9, "this node runs on sim time"),
        (3 * 10**9, "is not this node's"),
    ],
)
def test_stamps_far_from_the_clock(setup, now_shift, cause):
    monitor, clock = setup
    now = feed(monitor, clock, 1, now_shift=now_shift)
    found = [f for f in monitor.check(now).findings if f.kind == "clock_offset"]
    assert {f.input for f in found} == {"camera", "camera_info", "depth", "lidar"}
    assert cause in found[0].message


def test_future_and_backwards_stamps(setup):
    monitor, clock = setup
    now = feed(monitor, clock, 1, offsets={"camera": 1.0})  # 1 s ahead, under clock_offset_s
    assert ("camera", "stamp_future") in kinds(monitor.check(now))
    monitor2 = InputMonitor(SPECS, mono=clock)
    now = feed(monitor2, clock, 1, step=-1)
    backwards = [f for f in monitor2.check(now).findings if f.kind == "stamp_backwards"]
    assert {f.input for f in backwards} >= {"camera", "lidar"}
    assert "last by 0.1 s" in backwards[0].message


def test_a_stamp_in_the_future_is_no_reference_for_going_back(setup):
    monitor, clock = setup
    now = feed(monitor, clock, 1)
    monitor.on_message("camera", image(now + 100 * 10**9), now)  # one stamp 100 s ahead
    now = feed(monitor, clock, 1)
    found = kinds(monitor.check(now))
    assert ("camera", "stamp_future") in found and ("camera", "stamp_backwards") not in found


def test_frames_and_sizes_that_disagree_with_camera_info_and_configuration(setup):
    monitor, clock = setup
    now = feed(monitor, clock, 1, frames={"depth": "depth_optical", "lidar": "velodyne"},
               sizes={"camera": (1280, 720)})  # fmt: skip
    report = monitor.check(now)
    found = {(f.input, f.kind): f for f in report.findings}
    assert set(found) == {
        ("camera", "size_mismatch"),
        ("depth", "frame_mismatch"),
        ("lidar", "frame_mismatch"),
    }
    assert "1280x720 but camera_info says 64x48" in found["camera", "size_mismatch"].message
    assert "'velodyne'" in found["lidar", "frame_mismatch"].message


def test_log_lines_are_throttled_per_input_and_kind(setup):
    monitor, clock = setup
    monitor.config.throttle_s = 5.0
    now = feed(monitor, clock, 1, frames={"lidar": "velodyne"})
    monitor.on_set_emitted()
    first = monitor.check(now).log_lines
    assert len(first) == 1 and first[0].startswith("lidar: [frame_mismatch]") and "Fix:" in first[0]
    now = feed(monitor, clock, 1, frames={"lidar": "velodyne"})
    assert monitor.check(now).log_lines == []
    now = feed(monitor, clock, 4.5, frames={"lidar": "velodyne"})
    monitor.on_set_emitted()
    assert len(monitor.check(now).log_lines) == 1


def test_offsets_are_medians_of_nearest_stamp_differences(setup):
    monitor, clock = setup
    feed(monitor, clock, 2, offsets={"depth": 0.03, "lidar": -0.02})
    offsets, gaps = monitor.offsets_s(), monitor.gaps_s()
    assert offsets["camera"] == 0.0 and "camera" not in gaps
    assert offsets["depth"] == pytest.approx(0.03, abs=1e-6) == gaps["depth"]
    assert offsets["lidar"] == pytest.approx(-0.02, abs=1e-6) == -gaps["lidar"]
    assert np.isnan(InputMonitor(SPECS).median_age_s("camera"))
