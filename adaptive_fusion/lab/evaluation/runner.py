"""Run a detector over frame sets and score it: predictions at a given layer allocation, the
ground truth the head can represent, mAP, FLOPs and measured latency of that allocation."""

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from adaptive_fusion.core.boxes import Boxes3D, boxes_from_objects
from adaptive_fusion.core.frames import FrameSet
from adaptive_fusion.lab.evaluation.metrics import DetectionMetrics, evaluate_detections
from adaptive_fusion.model.coding import assignable, decode
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.flops import count_flops
from adaptive_fusion.model.inputs import ModelInputs, prepare_inputs


def evaluated_objects(frames: FrameSet, inputs: ModelInputs, config) -> np.ndarray:
    """Which of frames.objects count as ground truth: those whose centre projects into the image
    within max_depth, the boxes a camera-grid detector can report (the rest are outside its field
    of view). Index other per-object fields (visibility, 2D boxes) with it."""
    return assignable(frames.objects.centers, inputs.K, inputs.T_cam_lidar, config)


def evaluation_truth(frames: FrameSet, inputs: ModelInputs, config) -> Boxes3D:
    """The ground truth boxes of evaluated_objects."""
    return boxes_from_objects(frames.objects).select(evaluated_objects(frames, inputs, config))


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


def lidar_points_in_boxes(points: np.ndarray | None, boxes: Boxes3D) -> np.ndarray:
    """(N,) count of the (M, 3+) lidar-frame points inside each of N yawed boxes (none for a
    missing cloud)."""
    if points is None or not len(boxes) or not len(points):
        return np.zeros(len(boxes), np.int64)
    offset = points[None, :, :3].astype(np.float64) - boxes.centers[:, None, :]
    cos, sin = np.cos(boxes.yaws)[:, None], np.sin(boxes.yaws)[:, None]
    along = cos * offset[..., 0] + sin * offset[..., 1]
    across = -sin * offset[..., 0] + cos * offset[..., 1]
    half = boxes.sizes[:, None, :] / 2
    inside = ((np.abs(along) <= half[..., 0]) & (np.abs(across) <= half[..., 1])
              & (np.abs(offset[..., 2]) <= half[..., 2]))
    return inside.sum(axis=1)


@dataclass
class DetectedFrames:
    """Predictions and ground truth of a run over frame sets, with what a breakdown of the
    score needs per frame: the visibility of each ground truth box, the camera centre (the
    detector's viewpoint) in the lidar frame, and the lidar returns inside each ground truth box
    in the cloud the detector got."""

    predictions: list[Boxes3D] = field(default_factory=list)
    truths: list[Boxes3D] = field(default_factory=list)
    visibility: list[np.ndarray] = field(default_factory=list)
    viewpoints: list[np.ndarray] = field(default_factory=list)
    lidar_returns: list[np.ndarray] = field(default_factory=list)


def detect_frames(
    model: AdaptiveFusionDetector, frame_sets: Iterable[FrameSet],
    allocation: Mapping[str, Sequence[int]] | None = None,
) -> DetectedFrames:
    """The model's predictions at this allocation over the frame sets (batch size 1, as
    deployed), next to their ground truth."""
    run = DetectedFrames()
    for frames in frame_sets:
        inputs = prepare_inputs(frames, model.config)
        evaluated = evaluated_objects(frames, inputs, model.config)
        truth = boxes_from_objects(frames.objects).select(evaluated)
        run.predictions.append(detect(model, inputs, allocation))
        run.truths.append(truth)
        run.visibility.append(frames.objects.visibility[evaluated])
        run.lidar_returns.append(lidar_points_in_boxes(frames.points, truth))
        R, t = inputs.T_cam_lidar[:3, :3], inputs.T_cam_lidar[:3, 3]
        run.viewpoints.append(-R.T @ t)
    return run


def score_frames(
    model: AdaptiveFusionDetector, frame_sets: Iterable[FrameSet],
    allocation: Mapping[str, Sequence[int]] | None = None,
) -> DetectionMetrics:
    """mAP of the model at this allocation over the frame sets (batch size 1, as deployed)."""
    run = detect_frames(model, frame_sets, allocation)
    return evaluate_detections(run.predictions, run.truths, model.config.classes)


@torch.inference_mode()
def allocation_flops(
    model: AdaptiveFusionDetector, inputs: ModelInputs,
    allocation: Mapping[str, Sequence[int]] | None = None,
) -> int:
    """Forward FLOPs (tokenizers, blocks, fusion, head), attention included (model/flops.py)."""
    return count_flops(lambda: model(batch_of_one(inputs, model), allocation))


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
