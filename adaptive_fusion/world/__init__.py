"""Synthetic multimodal world (camera, depth, lidar with ground truth) and its dataset files."""

from adaptive_fusion.world.config import WorldConfig
from adaptive_fusion.world.frames import (
    CLASSES,
    MODALITIES,
    Calibration,
    FrameSet,
    LidarModel,
    Objects,
)
from adaptive_fusion.world.world import RENDERER_VERSION, World

__all__ = [
    "CLASSES",
    "MODALITIES",
    "Calibration",
    "FrameSet",
    "LidarModel",
    "Objects",
    "RENDERER_VERSION",
    "World",
    "WorldConfig",
]
