"""fusion_node with a searched subnet (its `architecture` parameter) over real DDS: sim_sensors
in its own process, the node runs the subnet, and the budget counts the subnet's blocks; a
file outside the model's search space is refused at configure."""

import json

import rclpy
from conftest import sim_fusion_node, start_sim_sensors
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.lifecycle import TransitionCallbackReturn
from test_ros_fusion import wait_for
from vision_msgs.msg import Detection3DArray

from adaptive_fusion.core.frames import MODALITIES
from adaptive_fusion.model.architecture import Architecture, StreamArchitecture
from adaptive_fusion.ros.diagnostics import values_of
from adaptive_fusion.ros.spin import interrupt, spinning

# conftest's model_path: 2 blocks per modality, MLP 64, 2 heads
SUBNET = Architecture({"camera": StreamArchitecture(1, 16, 1, 2),
                       "depth": StreamArchitecture(2, 32, 2, 1),
                       "lidar": StreamArchitecture(2, 64, 1, 2)}, "concat")


def test_fusion_node_runs_the_architecture_file_over_dds(model_path, tmp_path):
    path = SUBNET.save(tmp_path / "subnet.json")
    sim = start_sim_sensors(seed=3)
    context = Context()
    rclpy.init(context=context)
    fusion = sim_fusion_node(context, model_path, architecture=str(path),
                             diagnostics_period=0.2, sensor_timeout=1.0)
    probe = rclpy.create_node("probe", context=context)
    detections, status = [], {}

    def on_diagnostics(msg):
        for entry in msg.status:
            if entry.name.startswith("/fusion_node: "):
                status[entry.name.split(": ", 1)[1]] = values_of(entry)

    probe.create_subscription(Detection3DArray, "detections", detections.append, 10)
    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    try:
        with spinning(context, (fusion, probe)):
            assert fusion.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert fusion.pipeline.model.architecture == SUBNET
            fusion.trigger_activate()
            wait_for(lambda: len(detections) >= 5, 30.0, "5 detection messages")
            expected = {name: str(SUBNET.streams[name].depth) for name in MODALITIES}
            wait_for(lambda: {m: status.get(m, {}).get("layers") for m in MODALITIES}
                     == expected, 5.0, "the subnet's depths as layers")
            assert status["fusion"]["blocks_full"] == "5"
            fusion.trigger_deactivate()
            fusion.trigger_cleanup()
    finally:
        fusion.destroy_node()
        probe.destroy_node()
        rclpy.shutdown(context=context)
        [(output, _)] = interrupt(sim)
        assert "Traceback" not in output, output


def test_fusion_node_refuses_an_architecture_outside_the_model(model_path, tmp_path):
    bad = tmp_path / "deep.json"
    document = SUBNET.to_dict()
    document["streams"]["lidar"]["depth"] = 8  # the model has 2 blocks per modality
    bad.write_text(json.dumps(document))
    context = Context()
    rclpy.init(context=context)
    fusion = sim_fusion_node(context, model_path, architecture=str(bad))
    try:
        assert fusion.trigger_configure() == TransitionCallbackReturn.FAILURE
    finally:
        fusion.destroy_node()
        rclpy.shutdown(context=context)
