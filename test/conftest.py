"""Test isolation: every test session gets its own ROS_DOMAIN_ID and localhost-only discovery,
so parallel runs on this machine never hear each other."""

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
