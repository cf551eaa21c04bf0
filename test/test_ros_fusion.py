"""fusion_node and sim_sensors over real DDS: sim_sensors runs as its own process (the installed
console script), fusion_node in this process in a background executor, and a probe node
publishes budgets and bad input and reads what comes out. Every assertion is on topics or
parameter services, as a user would see them."""

import math
import time

import numpy as np
import pytest
import rclpy
import torch
from conftest import sim_fusion_node, start_sim_sensors, stop_sim_fusion
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Float32, Header
from vision_msgs.msg import Detection3DArray, LabelInfo
from visualization_msgs.msg import Marker, MarkerArray

from adaptive_fusion.core.frames import CLASSES, MODALITIES
from adaptive_fusion.model.checkpoint import save_checkpoint
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.policies.checkpoint import save_gate
from adaptive_fusion.policies.gate import GateConfig, ModalityGate
from adaptive_fusion.ros.conversions import image_to_numpy, numpy_to_image, numpy_to_pointcloud2
from adaptive_fusion.ros.diagnostics import values_of
from adaptive_fusion.ros.qos import LATCHED_QOS, SENSOR_QOS
from adaptive_fusion.ros.spin import spinning

LAYERS = 4


class Probe:
    """A node that records detections, labels, markers and the latest diagnostics."""

    def __init__(self, context):
        self.node = rclpy.create_node("probe", context=context)
        self.detections: list[Detection3DArray] = []
        self.labels: list[LabelInfo] = []
        self.markers: list[MarkerArray] = []
        self.status: dict[str, dict[str, str]] = {}
        self.truth: list[Detection3DArray] = []
        self.debug: list[Image] = []
        sub = self.node.create_subscription
        sub(Detection3DArray, "detections", self.detections.append, 10)
        sub(Detection3DArray, "ground_truth", self.truth.append, 10)
        sub(LabelInfo, "label_info", self.labels.append, LATCHED_QOS)
        sub(MarkerArray, "detection_markers", self.markers.append, 10)
        sub(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        sub(Image, "/fusion_node/debug_image", self.debug.append, SENSOR_QOS)
        self.budget = self.node.create_publisher(Float32, "compute_budget", LATCHED_QOS)
        self.image = self.node.create_publisher(Image, "camera/image_raw", SENSOR_QOS)
        self.depth = self.node.create_publisher(Image, "depth/image_raw", SENSOR_QOS)
        self.cloud = self.node.create_publisher(PointCloud2, "lidar/points", SENSOR_QOS)
        self.info = self.node.create_publisher(CameraInfo, "camera/camera_info", SENSOR_QOS)
        self.sim_params = AsyncParameterClient(self.node, "sim_sensors")
        self.fusion_params = AsyncParameterClient(self.node, "fusion_node")

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("/fusion_node: "):
                self.status[status.name.split(": ", 1)[1]] = values_of(status)

    def fusion(self, key: str) -> str:
        return self.status.get("fusion", {}).get(key, "")

    def layers(self) -> dict[str, int]:
        return {m: int(self.status.get(m, {}).get("layers", -1)) for m in MODALITIES}

    def errors(self, source: str, kind: str) -> int:
        values = self.status.get(source, {}) if source in MODALITIES else self.status["fusion"]
        key = f"errors.{kind}" if source in MODALITIES else f"errors.{source}.{kind}"
        return int(values.get(key, 0))

    def header(self, offset_s: float = 0.0, frame_id: str = "") -> Header:
        now = self.node.get_clock().now().nanoseconds + int(offset_s * 1e9)
        header = Header(frame_id=frame_id)
        header.stamp.sec, header.stamp.nanosec = divmod(now, 1_000_000_000)
        return header


def wait_for(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def set_params(client: AsyncParameterClient, **values):
    """Set parameters through the node's parameter service; the SetParametersResults."""
    assert client.wait_for_services(timeout_sec=10.0)
    future = client.set_parameters([Parameter(k.replace("__", "."), value=v) for k, v in
                                    values.items()])  # fmt: skip
    wait_for(future.done, 10.0, "the parameter service")
    return future.result().results


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    torch.manual_seed(0)
    model_path = tmp_path_factory.mktemp("model") / "small"
    config = ModelConfig(dim=32, heads=2, layers=LAYERS)
    save_checkpoint(AdaptiveFusionDetector(config), model_path, {})
    gate_path = model_path.parent / "gate"
    save_gate(ModalityGate(GateConfig(depths=(1, 2, 4), channels=(8,), hidden=16), config),
              gate_path, {})
    sim = start_sim_sensors(seed=5)
    context = Context()
    rclpy.init(context=context)
    fusion = sim_fusion_node(context, model_path, gate_path=str(gate_path), score_threshold=0.05,
                             diagnostics_period=0.2, sensor_timeout=1.0,
                             compute_budget=1.0)  # fmt: skip
    probe = Probe(context)
    try:
        with spinning(context, (fusion, probe.node)):
            fusion.trigger_configure()
            fusion.trigger_activate()
            yield fusion, probe
    finally:
        stop_sim_fusion(context, fusion, [probe.node], sim)


def test_detections_arrive_from_simulated_sensors(system):
    fusion, probe = system
    wait_for(lambda: len(probe.detections) >= 10, 30.0, "10 detection messages")
    wait_for(lambda: probe.layers() == dict.fromkeys(MODALITIES, LAYERS), 5.0, "full layers")
    last = probe.detections[-1]
    assert last.header.frame_id == "lidar"
    truth_stamps = {(t.header.stamp.sec, t.header.stamp.nanosec) for t in probe.truth}
    assert len(truth_stamps) >= 5  # ground truth flows beside the sensors
    assert any(len(d.detections) for d in probe.detections)
    for detection in (d for msg in probe.detections for d in msg.detections):
        hypothesis = detection.results[0].hypothesis
        assert hypothesis.class_id in {str(k) for k in range(len(CLASSES))}
        assert 0.05 <= hypothesis.score <= 1.0 and detection.bbox.size.x > 0
    assert probe.labels and [c.class_name for c in probe.labels[-1].class_map] == list(CLASSES)
    assert probe.markers[-1].markers[0].action == Marker.DELETEALL
    assert float(probe.fusion("latency_ms_mean")) > 0
    wait_for(lambda: len(probe.debug) > 0, 5.0, "a debug image")
    picture = image_to_numpy(probe.debug[-1])
    assert picture.shape == (240, 320, 3)
    assert (np.all(picture[-3] == (250, 200, 40), axis=1)).mean() > 0.8  # full layer bars
    assert probe.fusion("live") == "camera depth lidar"


def test_budget_topic_and_parameter_set_the_layers(system):
    fusion, probe = system
    probe.budget.publish(Float32(data=0.25))
    wait_for(lambda: sum(probe.layers().values()) == 3, 5.0, "3 blocks at budget 0.25")
    assert probe.fusion("budget_in_force") == "0.25"
    probe.budget.publish(Float32(data=1.0))
    wait_for(lambda: sum(probe.layers().values()) == 12, 5.0, "12 blocks at budget 1")
    # the parameter and the topic: the stricter wins
    assert all(r.successful for r in set_params(probe.fusion_params, compute_budget=0.5))
    wait_for(lambda: sum(probe.layers().values()) == 6, 5.0, "6 blocks at parameter 0.5")
    assert probe.fusion("budget_binding") == "compute"


def test_corrupted_camera_loses_layers_within_a_second(system):
    fusion, probe = system  # compute_budget 0.5 from the previous test: 6 of 12 blocks
    wait_for(lambda: sum(probe.layers().values()) == 6, 5.0, "6 blocks")
    clean_quality = float(probe.status["camera"]["quality"])
    results = set_params(probe.sim_params, camera__corruption="noise", camera__severity=1.0)
    assert all(r.successful for r in results)
    took = wait_for(lambda: probe.layers()["camera"] == 1, 3.0, "the camera to lose layers")
    assert took < 1.5
    assert float(probe.status["camera"]["quality"]) < 0.5 < clean_quality
    assert probe.layers()["depth"] + probe.layers()["lidar"] == 5
    # the equal split ignores quality (the baseline the quality-weighted policy beats)
    assert all(r.successful for r in set_params(probe.fusion_params, policy="equal_split"))
    wait_for(lambda: probe.layers() == dict.fromkeys(MODALITIES, 2), 3.0, "an equal split")
    set_params(probe.fusion_params, policy="quality_weighted", compute_budget=1.0)
    set_params(probe.sim_params, camera__corruption="none", camera__severity=0.0)
    wait_for(lambda: probe.layers()["camera"] == LAYERS, 3.0, "the camera's layers back")


def test_dynmm_gate_runs_one_path_within_the_budget_and_switches_back(system):
    fusion, probe = system
    assert all(r.successful for r in set_params(probe.fusion_params, policy="dynmm",
                                                compute_budget=0.25))
    wait_for(lambda: probe.fusion("policy") == "dynmm", 3.0, "the gate in force")
    count = len(probe.detections)
    wait_for(lambda: len(probe.detections) >= count + 3, 5.0, "detections under the gate")
    wait_for(lambda: 1 <= sum(probe.layers().values()) <= 3, 3.0, "a quarter in force")
    for _ in range(3):  # the gate's path: at most 3 of 12 blocks, each running sensor 1, 2 or 4
        layers = probe.layers()
        assert 1 <= sum(layers.values()) <= 3 and set(layers.values()) <= {0, 1, 2}
        count = len(probe.detections)
        wait_for(lambda c=count: len(probe.detections) > c, 3.0, "the next frame")
    set_params(probe.fusion_params, policy="quality_weighted", compute_budget=1.0)
    wait_for(lambda: probe.layers() == dict.fromkeys(MODALITIES, LAYERS), 3.0, "full depth")


def test_killed_sensor_is_fused_without_and_taken_back(system):
    fusion, probe = system
    set_params(probe.sim_params, lidar__enabled=False)
    wait_for(lambda: probe.fusion("live") == "camera depth", 3.0, "the lidar to time out")
    wait_for(lambda: probe.layers()["lidar"] == 0, 2.0, "no lidar layers")
    assert probe.status["lidar"]["alive"] == "False"
    count = len(probe.detections)
    wait_for(lambda: len(probe.detections) >= count + 5, 5.0, "detections without the lidar")
    set_params(probe.sim_params, lidar__enabled=True)
    wait_for(lambda: probe.fusion("live") == "camera depth lidar", 3.0, "the lidar back")
    wait_for(lambda: probe.layers()["lidar"] == LAYERS, 2.0, "lidar layers back")


def bad_inputs(probe: Probe) -> dict[tuple[str, str], list]:
    """(source, kind) -> messages that must each be counted under that kind."""
    good_image = numpy_to_image(np.zeros((240, 320, 3), np.uint8), "rgb8", probe.header())
    wrong_step = numpy_to_image(np.zeros((240, 320, 3), np.uint8), "rgb8", probe.header())
    wrong_step.step = 10  # smaller than a row: malformed
    yuv = numpy_to_image(np.zeros((240, 320, 3), np.uint8), "rgb8", probe.header())
    yuv.encoding = "yuv422"
    small = numpy_to_image(np.zeros((80, 100, 3), np.uint8), "rgb8", probe.header())
    small_depth = numpy_to_image(np.ones((80, 100), np.float32), "32FC1", probe.header())
    nan_cloud = np.full((50, 4), np.nan, np.float32)
    nan_cloud[:, 3] = 1.0
    inf_cloud = np.full((50, 4), np.inf, np.float32)
    fields = ("x", "y", "z", "intensity")
    bad_info = CameraInfo(header=probe.header(), width=320, height=240,
                          k=[math.nan, 0.0, 160.0, 0.0, 200.0, 120.0, 0.0, 0.0, 1.0])  # fmt: skip
    future = numpy_to_image(np.ones((240, 320), np.float32), "32FC1", probe.header(100.0))
    past = numpy_to_image(np.ones((240, 320), np.float32), "32FC1", probe.header(-30.0))
    zero = numpy_to_image(np.zeros((240, 320, 3), np.uint8), "rgb8", Header())
    assert good_image.step == 960
    return {
        ("camera", "malformed"): [(probe.image, wrong_step)],
        ("camera", "bad_encoding"): [(probe.image, yuv)],
        ("camera", "size_mismatch"): [(probe.image, small)],
        ("camera", "zero_stamp"): [(probe.image, zero)],
        ("camera", "empty_image"): [(probe.image, Image(header=probe.header(), encoding="bgr8"))],
        ("depth", "size_mismatch"): [(probe.depth, small_depth)],
        ("depth", "future_stamp"): [(probe.depth, future)],
        ("depth", "stamp_backwards"): [(probe.depth, past)],
        ("lidar", "empty_cloud"): [
            (
                probe.cloud,
                numpy_to_pointcloud2(
                    np.zeros((0, 4), np.float32), fields, probe.header(frame_id="lidar")
                ),
            ),
            (probe.cloud, numpy_to_pointcloud2(nan_cloud, fields, probe.header())),
            (probe.cloud, numpy_to_pointcloud2(inf_cloud, fields, probe.header())),
        ],  # fmt: skip
        ("camera_info", "malformed"): [(probe.info, bad_info)],
    }


def storm_messages(probe: Probe, rng: np.random.Generator) -> list[tuple[object, object]]:
    """One round of random malformed messages on every input: images of random encodings,
    sizes, steps and truncated data; clouds of random fields and layouts; camera_info with
    random sizes and intrinsics; budgets of any float."""
    encodings = ("rgb8", "bgr8", "mono8", "32FC1", "16UC1", "yuv422", "", "rgba8")
    sends = []
    for publisher in (probe.image, probe.depth):
        width, height = (int(v) for v in rng.integers(0, 40, 2))
        size = int(rng.integers(0, 5000))
        sends.append((publisher, Image(header=probe.header(float(rng.uniform(-1, 1))),
                                       width=width, height=height,
                                       encoding=str(rng.choice(encodings)),
                                       step=int(rng.integers(0, 200)),
                                       data=rng.integers(0, 256, size, np.uint8).tobytes())))
    fields = [PointField(name=str(rng.choice(["x", "y", "z", "intensity", "q"])),
                         offset=int(rng.integers(0, 20)), datatype=int(rng.integers(0, 10)),
                         count=int(rng.integers(0, 3))) for _ in range(int(rng.integers(0, 5)))]
    width = int(rng.integers(0, 50))
    sends.append((probe.cloud, PointCloud2(
        header=probe.header(frame_id="lidar"), height=1, width=width, fields=fields,
        point_step=int(rng.integers(0, 24)), row_step=int(rng.integers(0, 1000)),
        data=rng.integers(0, 256, int(rng.integers(0, 2000)), np.uint8).tobytes())))
    k = rng.normal(0, 300, 9).tolist()
    sends.append((probe.info, CameraInfo(header=probe.header(), width=int(rng.integers(0, 400)),
                                         height=int(rng.integers(0, 400)), k=k)))
    return sends  # fmt: skip


def test_a_storm_of_malformed_input_is_survived_and_counted(system):
    fusion, probe = system
    wait_for(lambda: probe.fusion("live") == "camera depth lidar", 5.0, "all sensors")
    def bad_total():
        return sum(int(v) for name in (*MODALITIES, "fusion")
                   for k, v in probe.status.get(name, {}).items() if k.startswith("errors."))
    before = bad_total()
    rng = np.random.default_rng(7)
    end = time.monotonic() + 3.0
    rounds = 0
    while time.monotonic() < end:
        for publisher, msg in storm_messages(probe, rng):
            publisher.publish(msg)
        rounds += 1
        time.sleep(0.01)
    # each round sends 4 messages, nearly all malformed (here 824 of 888 counted over 222
    # rounds; best effort may drop some under load). A storm camera_info that happens to be
    # valid is replaced by sim_sensors' next one.
    wait_for(lambda: bad_total() >= before + rounds, 5.0, "the storm counted")
    count = len(probe.detections)
    wait_for(lambda: len(probe.detections) >= count + 5, 10.0, "detections after the storm")
    assert fusion.pipeline is not None and probe.fusion("state") == "active"


def test_bad_input_is_counted_and_skipped(system):
    fusion, probe = system
    wait_for(lambda: probe.fusion("live") == "camera depth lidar", 5.0, "all sensors")
    before = {key: probe.errors(*key) for key in bad_inputs(probe)}
    for _ in range(3):  # best effort on one machine loses almost nothing; three tries to be sure
        cases = bad_inputs(probe)  # fresh stamps: a repeat of an old one is "stamp_backwards"
        for sends in cases.values():
            for publisher, msg in sends:
                publisher.publish(msg)
        time.sleep(0.1)
    # the budget topic keeps one sample (it is state): one bad value at a time
    for value in (math.nan, -1.0, 0.0, 2.0, math.inf):
        count = probe.errors("compute_budget", "invalid_budget")
        probe.budget.publish(Float32(data=value))
        wait_for(lambda n=count: probe.errors("compute_budget", "invalid_budget") > n, 3.0,
                 f"budget {value} counted")  # fmt: skip
    probe.budget.publish(Float32(data=1.0))  # the latched value left behind is a valid one
    for key, sends in cases.items():
        expected = before[key] + len(sends)
        wait_for(lambda key=key, n=expected: probe.errors(*key) >= n, 5.0, f"{key} counted")
    # a cloud a third NaN is used, its NaN points counted
    partly_nan = np.random.default_rng(0).uniform(-20, 20, (300, 4)).astype(np.float32)
    partly_nan[::3, :3] = np.nan
    probe.cloud.publish(numpy_to_pointcloud2(partly_nan, ("x", "y", "z", "intensity"),
                                             probe.header(frame_id="lidar")))  # fmt: skip
    dropped = lambda: int(probe.status.get("lidar", {}).get("nan_points_dropped", 0))  # noqa: E731
    wait_for(lambda: dropped() >= 100, 5.0, "NaN points counted")
    assert float(probe.status["lidar"]["nan_points_share_last"]) == pytest.approx(1 / 3, abs=0.01)
    count = len(probe.detections)
    wait_for(lambda: len(probe.detections) >= count + 5, 5.0, "detections after bad input")
    assert probe.fusion("budget_in_force") == "1"
    assert fusion.pipeline is not None and probe.fusion("state") == "active"


def test_invalid_parameters_are_rejected_with_a_reason(system):
    fusion, probe = system
    for name, value in (
        ("compute_budget", 1.5), ("compute_budget", 0.0), ("latency_budget_ms", -1.0),
        ("sync_queue_size", 0), ("sensor_timeout", 0.0), ("policy", "bogus"),
        ("model_path", "/elsewhere"), ("score_threshold", "high"), ("quality_stride", 0),
    ):  # fmt: skip
        [result] = set_params(probe.fusion_params, **{name: value})
        assert not result.successful and result.reason, (name, value)
    [result] = set_params(probe.fusion_params, policy="bogus")
    assert "quality_weighted" in result.reason
    [result] = set_params(probe.sim_params, camera__corruption="banana")
    assert not result.successful and "fog" in result.reason
    [result] = set_params(probe.sim_params, lidar__severity=2.0)
    assert not result.successful
    assert fusion.get_parameter("compute_budget").value == 1.0
    results = set_params(probe.fusion_params, latency_budget_ms=250.0, sync_slop=0.04)
    assert all(result.successful for result in results)
    wait_for(lambda: probe.fusion("latency_budget_ms") == "250", 3.0, "the new latency budget")
    [result] = set_params(probe.fusion_params, quality_stride=3)
    assert result.successful and fusion.pipeline.quality_stride == 3
    [result] = set_params(probe.fusion_params, quality_stride=1)
    assert result.successful and fusion.pipeline.quality_stride == 1
