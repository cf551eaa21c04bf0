"""The package's topic names, in one table for fusion_node, sim_sensors, the doctor, the launch
file and the tests. Relative names resolve in the node's namespace; remap them as usual."""

INPUTS = {
    "camera": "camera/image_raw",
    "camera_info": "camera/camera_info",
    "depth": "depth/image_raw",
    "lidar": "lidar/points",
    "compute_budget": "compute_budget",
}
OUTPUTS = {
    "detections": "detections",
    "markers": "detection_markers",
    "debug_image": "~/debug_image",
    "label_info": "label_info",
    "diagnostics": "/diagnostics",
}
GROUND_TRUTH = "ground_truth"  # published by sim_sensors


def recorded_topics() -> list[str]:
    """What `adaptive-fusion record` and `demo --record` write by default: the inputs, the
    outputs (fusion_node's debug image under its default node name) and the ground truth."""
    outputs = [t if t != "~/debug_image" else "fusion_node/debug_image" for t in OUTPUTS.values()]
    return [*INPUTS.values(), *outputs, GROUND_TRUTH]
