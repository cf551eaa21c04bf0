"""The adaptive-depth fusion detector: build or load it, prepare a FrameSet, run it at any layer
allocation, decode boxes.

    model, meta = load_checkpoint()               # the shipped default model
    inputs = prepare_inputs(frames, model.config)
    outputs = model(batch_of_rasters, {"camera": 2, "depth": 1, "lidar": 8})
    boxes = decode(outputs, inputs.K, inputs.T_cam_lidar, model.config)
"""

from .allocation import Allocation, AllocationError, parse_allocation
from .checkpoint import DEFAULT_MODEL, CheckpointError, load_checkpoint, save_checkpoint
from .coding import Boxes3D, decode
from .config import ModelConfig
from .detector import AdaptiveFusionDetector
from .inputs import ModelInputs, prepare_inputs

__all__ = [
    "DEFAULT_MODEL", "AdaptiveFusionDetector", "Allocation", "AllocationError", "Boxes3D",
    "CheckpointError", "ModelConfig", "ModelInputs", "decode", "load_checkpoint",
    "parse_allocation", "prepare_inputs", "save_checkpoint",
]
