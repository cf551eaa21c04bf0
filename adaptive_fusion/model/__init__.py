"""The adaptive-depth fusion detector: build or load it, prepare a FrameSet, run it at any layer
allocation, decode boxes.

    model, meta = load_checkpoint()               # the shipped default model
    inputs = prepare_inputs(frames, model.config)
    outputs = model(batch_of_rasters, {"camera": 2, "depth": 1, "lidar": 8})
    boxes = decode(outputs, inputs.K, inputs.T_cam_lidar, model.config)
"""

from adaptive_fusion.model.allocation import Allocation, AllocationError, parse_allocation
from adaptive_fusion.model.checkpoint import (
    DEFAULT_MODEL,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import ModelInputs, prepare_inputs

__all__ = [
    "DEFAULT_MODEL", "AdaptiveFusionDetector", "Allocation", "AllocationError",
    "CheckpointError", "ModelConfig", "ModelInputs", "decode", "load_checkpoint",
    "parse_allocation", "prepare_inputs", "save_checkpoint",
]
