"""Run a detector over frame sets and score it: predictions at a given layer allocation, the
ground truth the head can represent, mAP, FLOPs and measured latency of that allocation."""

import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..model.coding import Boxes3D, assignable, boxes_from_objects, decode
from ..model.detector import AdaptiveFusionDetector
from ..model.inputs import ModelInputs, prepare_inputs
from ..world.frames import FrameSet
from .metrics import DetectionMetrics, evaluate_detections


def evaluation_truth(frames: FrameSet, inputs: ModelInputs, config) -> Boxes3D:
    """Ground truth boxes whose centre projects into the image within max_depth: the boxes a
    camera-grid detector can report (the rest are outside its field of view)."""
    boxes = boxes_from_objects(frames.objects)
    return boxes.select(assignable(boxes.centers, inputs.K, inputs.T_cam_lidar, config))


def batch_of_one(inputs: ModelInputs, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    return {name: torch.from_numpy(r).unsqueeze(0).to(device) for name, r in inputs.rasters.items()}


@torch.inference_mode()
def detect(
    model: AdaptiveFusionDetector, inputs: ModelInputs,
    allocation: Mapping[str, Sequence[int]] | None = None, score_threshold: float = 0.05,
) -> Boxes3D:
    outputs = model(batch_of_one(inputs, model), allocation)
    return decode(outputs, inputs.K, inputs.T_cam_lidar, model.config,
                  score_threshold=score_threshold)


def score_frames(
    model: AdaptiveFusionDetector, frame_sets: Iterable[FrameSet],
    allocation: Mapping[str, Sequence[int]] | None = None,
) -> DetectionMetrics:
    """mAP of the model at this allocation over the frame sets (batch size 1, as deployed)."""
    predictions, truths = [], []
    for frames in frame_sets:
        inputs = prepare_inputs(frames, model.config)
        predictions.append(detect(model, inputs, allocation))
        truths.append(evaluation_truth(frames, inputs, model.config))
    return evaluate_detections(predictions, truths, model.config.classes)


@torch.inference_mode()
def count_flops(
    model: AdaptiveFusionDetector, inputs: ModelInputs,
    allocation: Mapping[str, Sequence[int]] | None = None,
) -> int:
    """Forward FLOPs (tokenizers, blocks, fusion, head) counted by torch's FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        model(batch_of_one(inputs, model), allocation)
    return int(counter.get_total_flops())


@torch.inference_mode()
def measure_latency(
    model: AdaptiveFusionDetector, inputs: ModelInputs,
    allocation: Mapping[str, Sequence[int]] | None = None, runs: int = 50, warmup: int = 5,
) -> dict[str, float]:
    """Wall time of model forward + decode at batch size 1 (median and p95, milliseconds)."""
    batch = batch_of_one(inputs, model)
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        outputs = model(batch, allocation)
        decode(outputs, inputs.K, inputs.T_cam_lidar, model.config)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}
