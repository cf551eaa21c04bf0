"""The lidar->camera extrinsic: looked up on TF where tf2_ros is installed (a robot's URDF and
robot_state_publisher put it there), else the `camera_from_lidar` parameter. tf2_ros comes with
a ROS 2 distribution, not from PyPI, so the import is optional."""

from __future__ import annotations

import numpy as np
import rclpy.time
from scipy.spatial.transform import Rotation

try:
    import tf2_ros
except ImportError:  # a PyPI-only install: the parameter is the only source
    tf2_ros = None

PARAMETER = "parameter camera_from_lidar"


def tf_in_use(use_tf: bool) -> bool:
    """Whether the extrinsic comes from TF (whatever the cloud's frame) or from the parameter
    (configured for one lidar frame)."""
    return use_tf and tf2_ros is not None


def transform_to_matrix(transform) -> np.ndarray:
    """A geometry_msgs/Transform as the 4x4 matrix applying it to points."""
    q, t = transform.rotation, transform.translation
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    matrix[:3, 3] = (t.x, t.y, t.z)
    return matrix


class Extrinsics:
    """camera_from_lidar(camera_frame, lidar_frame) -> (4x4 matrix or None, problem or ""). With
    TF in use, a transform TF does not have (yet) gives the parameter's matrix (None where the
    parameter is not set) and the reason."""

    def __init__(self, node, fallback: np.ndarray | None, use_tf: bool):
        self.fallback = fallback
        self._buffer = None
        if tf_in_use(use_tf):
            self._buffer = tf2_ros.Buffer()
            self._listener = tf2_ros.TransformListener(self._buffer, node)
        self.source = "tf" if self._buffer is not None else PARAMETER

    def camera_from_lidar(
        self, camera_frame: str, lidar_frame: str
    ) -> tuple[np.ndarray | None, str]:
        if self._buffer is None:
            return self.fallback, "" if self.fallback is not None else "camera_from_lidar not set"
        if not camera_frame or not lidar_frame:
            return self.fallback, "no frame_id to look up on TF (camera_info or cloud without one)"
        try:
            stamped = self._buffer.lookup_transform(camera_frame, lidar_frame, rclpy.time.Time())
        except tf2_ros.TransformException as error:
            return self.fallback, f"TF has no {lidar_frame} -> {camera_frame} transform: {error}"
        return transform_to_matrix(stamped.transform), ""
