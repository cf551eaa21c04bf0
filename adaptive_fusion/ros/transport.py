"""Large sensor messages between processes: where the shipped Fast DDS profile is, how a process
(or its children) uses it, and which fix to name for the RMW in use.

Fast DDS reads FASTDDS_DEFAULT_PROFILES_FILE once per process, when the first participant is
created (the first `rclpy.init`), so `use_profile` must run before that; for child processes,
pass `profile_environment()` as their environment. A profile the user already set is kept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PACKAGE = "adaptive_fusion"
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
PROFILE_FILE = "fastdds_profile.xml"
FAST_DDS_RMWS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
# Fast DDS's built-in shared-memory segment: samples above it leave SHM for UDP fragments
DEFAULT_SHM_SEGMENT_BYTES = 512 * 1024
SOURCE_CONFIG = Path(__file__).resolve().parents[2] / "config"


def profile_path() -> Path:
    """The shipped profile: the installed copy (share/adaptive_fusion/config, found through the
    ament index after `colcon build`), else the source tree's."""
    candidates = []
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)) / "config" / PROFILE_FILE)
        except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset
            pass
    except ImportError:
        pass
    candidates.append(SOURCE_CONFIG / PROFILE_FILE)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{PROFILE_FILE} not found; looked in {', '.join(str(p) for p in candidates)}"
    )


def rmw_implementation(env: Mapping[str, str] | None = None) -> str:
    """The RMW a process started with `env` uses: RMW_IMPLEMENTATION, else rclpy's default."""
    env = os.environ if env is None else env
    chosen = env.get("RMW_IMPLEMENTATION")
    if chosen:
        return chosen
    from rclpy.utilities import get_rmw_implementation_identifier

    return get_rmw_implementation_identifier()


def uses_fast_dds(env: Mapping[str, str] | None = None) -> bool:
    return rmw_implementation(env) in FAST_DDS_RMWS


def profile_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of `base` (default os.environ) whose Fast DDS participants use the shipped
    profile, unless `base` already names a profile of its own."""
    env = dict(os.environ if base is None else base)
    if not env.get(PROFILE_VARIABLE):
        env[PROFILE_VARIABLE] = str(profile_path())
    return env


def use_profile() -> str:
    """Make this process use the shipped profile (a user's own profile wins). Call before the
    first rclpy.init: Fast DDS loads the file once. Returns the profile in effect."""
    os.environ[PROFILE_VARIABLE] = profile_environment()[PROFILE_VARIABLE]
    return os.environ[PROFILE_VARIABLE]


def profile_in_effect(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return env.get(PROFILE_VARIABLE) or None


def large_message_fix(env: Mapping[str, str] | None = None) -> str:
    """What to do when matched publishers' samples never arrive, for the RMW in use."""
    rmw = rmw_implementation(env)
    if rmw in FAST_DDS_RMWS:
        try:
            shipped = str(profile_path())
        except FileNotFoundError:
            shipped = f"share/{PACKAGE}/config/{PROFILE_FILE}"
        current = profile_in_effect(env)
        here = (
            f"this process uses {current}; make sure the publisher's process does too"
            if current
            else "this process uses none"
        )
        return (
            f"samples over {DEFAULT_SHM_SEGMENT_BYTES // 1024} KiB (a 640x480 image, a lidar "
            f"sweep) are lost between processes with Fast DDS's default transports: export "
            f"{PROFILE_VARIABLE}={shipped} (or source scripts/ros_env.sh) in the publisher's "
            f"and this node's environment and restart both ({here})"
        )
    if rmw == "rmw_cyclonedds_cpp":
        return (
            "large samples need larger socket buffers with Cyclone DDS: set CYCLONEDDS_URI with "
            "SocketReceiveBufferSize (and net.core.rmem_max) or shared memory, see the README"
        )
    if rmw == "rmw_zenoh_cpp":
        return "enable shared memory in the Zenoh session config of rmw_zenoh, see the README"
    return f"check the transport configuration of {rmw} for large messages"
