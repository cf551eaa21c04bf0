"""Test isolation and transport: every test session gets its own ROS_DOMAIN_ID and localhost-only
discovery, so parallel runs on this machine never hear each other, and uses the shipped Fast DDS
profile, as the launch file and the demo do. Fast DDS reads the profile once per process, at the
first participant, so it is set here, before any test creates one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adaptive_fusion.model.checkpoint import save_checkpoint
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault(
    "FASTDDS_DEFAULT_PROFILES_FILE",
    str(Path(__file__).resolve().parents[1] / "config" / "fastdds_profile.xml"),
)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small randomly initialised detector checkpoint for the node tests: they check plumbing,
    not accuracy, and it loads and runs in milliseconds."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "small"
    save_checkpoint(AdaptiveFusionDetector(ModelConfig(dim=32, heads=2, layers=2)), path, {})
    return path


def start_sim_sensors(seed: int) -> subprocess.Popen:
    """sim_sensors as its own process (the installed console script), camera and lidar at 10 Hz."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "sim_sensors"), "--ros-args", "-p", f"seed:={seed}",
         "-p", "camera_rate:=10.0", "-p", "lidar_rate:=10.0"],
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def sim_fusion_node(context, model_path, **parameters):
    """fusion_node on the simulated rig with a small model, one thread and the rule policy
    quality_weighted (the allocation depends on the frames alone), plus `parameters`."""
    from rclpy.parameter import Parameter

    from adaptive_fusion.ros.fusion_node import FusionNode
    from adaptive_fusion.sim import WorldConfig
    from adaptive_fusion.sim.rig import fusion_node_parameters

    values = {**fusion_node_parameters(WorldConfig()), "model_path": str(model_path),
              "threads": 1, "policy": "quality_weighted", **parameters}  # fmt: skip
    overrides = [Parameter(name, value=value) for name, value in values.items()]
    return FusionNode(context=context, parameter_overrides=overrides)


def stop_sim_fusion(context, fusion, others, sim: subprocess.Popen) -> None:
    """Undo sim_fusion_node and start_sim_sensors: fusion_node deactivated, cleaned up and
    destroyed, the `others` nodes destroyed, the context shut down, sim_sensors interrupted,
    which must end without a traceback."""
    import rclpy

    from adaptive_fusion.ros.spin import interrupt

    fusion.trigger_deactivate()
    fusion.trigger_cleanup()
    fusion.destroy_node()
    for node in others:
        node.destroy_node()
    rclpy.shutdown(context=context)
    [(output, _)] = interrupt(sim)
    assert "Traceback" not in output, output
