"""Sensor quality measured from the data alone (no labels, no knowledge of any corruption).

`measure(frames)` scores all three modalities; `camera_quality(image)`, `depth_quality(depth)`
and `lidar_quality(points, lidar_model)` take raw arrays, for callers without a FrameSet (the
ROS node). Each returns a ModalityQuality: a score in [0, 1] and its physical measures.
"""

from adaptive_fusion.core.frames import FrameSet
from adaptive_fusion.quality.camera import camera_quality
from adaptive_fusion.quality.depth import depth_quality
from adaptive_fusion.quality.lidar import lidar_quality
from adaptive_fusion.quality.score import ModalityQuality

__all__ = ["ModalityQuality", "camera_quality", "depth_quality", "lidar_quality", "measure"]


def measure(frames: FrameSet) -> dict[str, ModalityQuality]:
    """Quality of every modality of one frame set, keyed by modality name."""
    return {
        "camera": camera_quality(frames.image),
        "depth": depth_quality(frames.depth),
        "lidar": lidar_quality(frames.points, frames.lidar),
    }
