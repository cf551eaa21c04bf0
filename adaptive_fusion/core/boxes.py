"""3D boxes in the lidar frame: what the detector outputs, the metrics score and the ROS layer
publishes."""

from dataclasses import dataclass

import numpy as np


@dataclass
class Boxes3D:
    """N boxes in the lidar frame; `scores` is 1 for ground truth."""

    labels: np.ndarray  # (N,) int64
    centers: np.ndarray  # (N, 3) float32
    sizes: np.ndarray  # (N, 3) float32 length, width, height
    yaws: np.ndarray  # (N,) float32
    scores: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, mask: np.ndarray) -> "Boxes3D":
        return Boxes3D(
            self.labels[mask], self.centers[mask], self.sizes[mask], self.yaws[mask],
            self.scores[mask],
        )

    @staticmethod
    def empty() -> "Boxes3D":
        return Boxes3D(
            np.zeros(0, np.int64), np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32),
            np.zeros(0, np.float32), np.zeros(0, np.float32),
        )


def boxes_from_objects(objects) -> Boxes3D:
    """Ground truth (world.frames.Objects) as boxes with score 1."""
    return Boxes3D(
        labels=objects.labels.astype(np.int64), centers=objects.centers, sizes=objects.sizes,
        yaws=objects.yaws, scores=np.ones(len(objects.labels), np.float32),
    )
