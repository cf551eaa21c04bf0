"""Boxes between the package's lidar frame and nuScenes' global frame.

The package's lidar frame is REP 103: x forward, y left, z up (core/frames.py), boxes as centre,
(length, width, height) and yaw from x. nuScenes' LIDAR_TOP is x right, y forward, z up; its
annotations are boxes in the global frame: centre, size (width, length, height) and the rotation
quaternion (w, x, y, z) of the box's x axis, its heading. A sensor reaches the global frame
through its calibrated_sensor record (sensor -> ego) and the ego pose at its timestamp
(ego -> global). On nuScenes data the package's lidar frame is LIDAR_TOP turned a quarter turn
about z so that x points forward; the devkit's Box does the rotations.
"""

from dataclasses import dataclass

import numpy as np
from nuscenes.eval.common.utils import quaternion_yaw
from nuscenes.utils.data_classes import Box
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion

from adaptive_fusion.core.boxes import Boxes3D

# The package's lidar frame -> LIDAR_TOP: our x (forward) is its y, our y (left) its -x.
LIDAR_TOP_FROM_PACKAGE = Quaternion(axis=[0.0, 0.0, 1.0], angle=np.pi / 2)


@dataclass(frozen=True)
class Pose:
    """A rigid transform child -> parent as nuScenes records it (calibrated_sensor: sensor ->
    ego; ego_pose: ego -> global)."""

    rotation: Quaternion
    translation: np.ndarray  # (3,) float64

    @classmethod
    def from_record(cls, record: dict) -> "Pose":
        return cls(Quaternion(record["rotation"]), np.asarray(record["translation"], np.float64))

    def to_record(self) -> dict:
        return {"rotation": [float(v) for v in self.rotation.elements],
                "translation": [float(v) for v in self.translation]}

    def matrix(self) -> np.ndarray:
        return transform_matrix(self.translation, self.rotation)


@dataclass(frozen=True)
class LidarPlacement:
    """Where a LIDAR_TOP sweep was taken: its calibration and the ego pose at its timestamp."""

    lidar_to_ego: Pose
    ego_to_global: Pose

    def global_from_package(self) -> np.ndarray:
        """(4, 4): package lidar-frame points -> global."""
        package_to_lidar_top = transform_matrix(np.zeros(3), LIDAR_TOP_FROM_PACKAGE)
        return self.ego_to_global.matrix() @ self.lidar_to_ego.matrix() @ package_to_lidar_top

    def to_global(self, boxes: Boxes3D) -> list[Box]:
        """Package boxes -> devkit Boxes in the global frame (label and score kept)."""
        result = []
        for k in range(len(boxes)):
            length, width, height = boxes.sizes[k].astype(np.float64)
            box = Box(boxes.centers[k].astype(np.float64), [width, length, height],
                      Quaternion(axis=[0.0, 0.0, 1.0], angle=float(boxes.yaws[k])),
                      label=int(boxes.labels[k]), score=float(boxes.scores[k]))
            box.rotate(LIDAR_TOP_FROM_PACKAGE)
            for pose in (self.lidar_to_ego, self.ego_to_global):
                box.rotate(pose.rotation)
                box.translate(pose.translation)
            result.append(box)
        return result

    def to_package(self, boxes: list[Box]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Global devkit Boxes -> (centres (N, 3), sizes (N, 3) length-width-height, yaws (N,))
        in the package's lidar frame; the heading is the box's x axis projected on the ground
        plane, as the devkit measures yaw."""
        centres, sizes, yaws = [], [], []
        for box in boxes:
            box = box.copy()
            for pose in (self.ego_to_global, self.lidar_to_ego):
                box.translate(-pose.translation)
                box.rotate(pose.rotation.inverse)
            box.rotate(LIDAR_TOP_FROM_PACKAGE.inverse)
            width, length, height = box.wlh
            centres.append(box.center)
            sizes.append([length, width, height])
            yaws.append(quaternion_yaw(box.orientation))
        return (np.asarray(centres, np.float64).reshape(-1, 3),
                np.asarray(sizes, np.float64).reshape(-1, 3), np.asarray(yaws, np.float64))
