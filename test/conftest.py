"""Test isolation and transport: every test session gets its own ROS_DOMAIN_ID and localhost-only
discovery, so parallel runs on this machine never hear each other, and uses the shipped Fast DDS
profile, as the launch file and the demo do. Fast DDS reads the profile once per process, at the
first participant, so it is set here, before any test creates one."""

import os
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault(
    "FASTDDS_DEFAULT_PROFILES_FILE",
    str(Path(__file__).resolve().parents[1] / "config" / "fastdds_profile.xml"),
)
