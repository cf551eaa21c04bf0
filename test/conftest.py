"""Test isolation and transport: every test session gets its own ROS_DOMAIN_ID and localhost-only
discovery, so parallel runs on this machine never hear each other, and uses the shipped Fast DDS
profile, as the launch file and the demo do. Fast DDS reads the profile once per process, at the
first participant, so it is set here, before any test creates one."""

import os
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
