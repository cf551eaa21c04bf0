"""The round trip a user makes with a recording: simulated sensors and fusion_node run live while
`Recorder` writes the inputs and the detections to MCAP; a fresh fusion_node (same model and
parameters) is then fed the bag by `play`, and its detections match the recorded ones frame by
frame, by the sensors' stamp."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import torch
from rclpy.context import Context
from rclpy.parameter import Parameter
from vision_msgs.msg import Detection3DArray

from adaptive_fusion.model.checkpoint import save_checkpoint
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.ros.bags import Recorder, play, read_messages
from adaptive_fusion.ros.fusion_node import FusionNode
from adaptive_fusion.ros.spin import interrupt, spinning
from adaptive_fusion.ros.topics import INPUTS
from adaptive_fusion.sim import WorldConfig
from adaptive_fusion.sim.rig import fusion_node_parameters

SIM = Path(sys.executable).parent / "sim_sensors"
DETECTIONS = "/detections"
RECORDED = "/recorded/detections"


def wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "small"
    save_checkpoint(AdaptiveFusionDetector(ModelConfig(dim=32, heads=2, layers=2)), path, {})
    return path


def fusion_node(context, model_path) -> FusionNode:
    # A full budget and a rule policy: the allocation, hence the detections, depend on the
    # frame set alone, not on the measured timing of the run.
    return FusionNode(context=context, parameter_overrides=[
        *(Parameter(k, value=v) for k, v in fusion_node_parameters(WorldConfig()).items()),
        Parameter("model_path", value=str(model_path)), Parameter("threads", value=1),
        Parameter("policy", value="quality_weighted"), Parameter("compute_budget", value=1.0),
        Parameter("score_threshold", value=0.05), Parameter("sensor_timeout", value=2.0)])


def by_stamp(messages) -> dict[int, Detection3DArray]:
    return {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec: m for m in messages}


def boxes(message: Detection3DArray) -> np.ndarray:
    return np.array([[d.bbox.center.position.x, d.bbox.center.position.y,
                      d.bbox.center.position.z, d.bbox.size.x, d.bbox.size.y, d.bbox.size.z,
                      d.results[0].hypothesis.score] for d in message.detections]).reshape(-1, 7)


def test_a_recorded_run_replayed_into_fusion_node_gives_the_same_detections(model_path,
                                                                           tmp_path):
    bag = tmp_path / "run"
    # every input but the budget topic, which nothing publishes in this run
    topics = [f"/{t}" for name, t in INPUTS.items() if name != "compute_budget"] + [DETECTIONS]
    sim = subprocess.Popen(
        [str(SIM), "--ros-args", "-p", "seed:=7", "-p", "camera_rate:=10.0",
         "-p", "lidar_rate:=10.0"],
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    context = Context()
    rclpy.init(context=context)
    try:
        live = fusion_node(context, model_path)
        recorder_node = rclpy.create_node("roundtrip_recorder", context=context)
        with spinning(context, (live, recorder_node)):
            recorder = Recorder(recorder_node, topics, bag)
            live.trigger_configure()
            live.trigger_activate()
            wait_for(lambda: recorder.counts.get(DETECTIONS, 0) >= 12, 60.0,
                     "12 detection arrays recorded")
            recorder.close()
        live.trigger_deactivate()
        live.destroy_node()
        recorder_node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        interrupt(sim)
    recorded = {}
    for topic, _, _, _ in read_messages(bag):
        recorded[topic] = recorded.get(topic, 0) + 1
    assert set(recorded) == set(topics) and recorded[DETECTIONS] >= 12

    context = Context()
    rclpy.init(context=context)
    try:
        replayed = fusion_node(context, model_path)
        listener = rclpy.create_node("roundtrip_listener", context=context)
        got = {DETECTIONS: [], RECORDED: []}
        for topic, received in got.items():
            listener.create_subscription(Detection3DArray, topic, received.append, 100)
        with spinning(context, (replayed, listener)):
            replayed.trigger_configure()
            replayed.trigger_activate()
            time.sleep(1.0)  # discovery between the player, the node and the listener
            player = rclpy.create_node("roundtrip_player", context=context)
            play(player, bag, remap={DETECTIONS: RECORDED})
            wait_for(lambda: len(got[DETECTIONS]) >= len(got[RECORDED]) - 2, 15.0,
                     "the replayed frames' detections")
            time.sleep(0.5)
            player.destroy_node()
        replayed.trigger_deactivate()
        replayed.destroy_node()
        listener.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    before, after = by_stamp(got[RECORDED]), by_stamp(got[DETECTIONS])
    common = sorted(set(before) & set(after))
    assert len(common) >= 8, (len(before), len(after))
    assert any(len(before[stamp].detections) for stamp in common)
    for stamp in common:
        np.testing.assert_allclose(boxes(after[stamp]), boxes(before[stamp]), atol=1e-4,
                                   err_msg=f"frame {stamp}")
