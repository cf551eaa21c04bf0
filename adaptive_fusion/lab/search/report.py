"""What the search's front is shown beside and reported on: today's detector measured the same way
(its full model, and its allocation policies at compute budgets, with validation mAP and measured
pipeline latency), and the front's members scored on test scenes the search never saw."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm import tqdm

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.core.frames import FrameSet
from adaptive_fusion.lab.evaluation.metrics import evaluate_detections
from adaptive_fusion.lab.evaluation.runner import evaluation_truth, score_frames
from adaptive_fusion.lab.search.costs import PipelineSetting, frames_in_turn, measure_pipeline_ms
from adaptive_fusion.lab.search.nsga import as_sensor_frame
from adaptive_fusion.model.architecture import Architecture, SearchSpace
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import prepare_inputs

REFERENCE_POLICIES = {"equal_split": "equal split", "controller": "learned controller"}
EVALUATION_THRESHOLD = 0.05  # the score threshold every mAP of the package is taken at


@torch.inference_mode()
def pipeline_detections(model: AdaptiveFusionDetector, settings: Sequence[PipelineSetting],
                        scenes: Sequence[FrameSet], threads: int, progress: str | None = None,
                        ) -> tuple[list[list[Boxes3D]], list[list[float]]]:
    """Per setting, per scene: FusionPipeline's detections (the node's own path: quality
    measures, the policy, the budget, at batch 1; kept from the evaluation's score threshold)
    and the frame's total ms, the settings taking turns scene by scene (frames_in_turn)."""
    previous = model.architecture
    boxes = [[] for _ in settings]
    times = [[] for _ in settings]
    for index, result in frames_in_turn(model, settings, [as_sensor_frame(s) for s in scenes],
                                        1, threads, progress,
                                        score_threshold=EVALUATION_THRESHOLD):
        boxes[index].append(result.boxes)
        times[index].append(result.timings_ms["total"])
    model.use_architecture(previous)
    return boxes, times


def mean_ap(model: AdaptiveFusionDetector, scenes: Sequence[FrameSet],
            detections: Sequence[Boxes3D]) -> float:
    """The package's mAP of `detections` against the scenes' ground truth."""
    truths = [evaluation_truth(frames, prepare_inputs(frames, model.config), model.config)
              for frames in scenes]
    return float(evaluate_detections(detections, truths, model.config.classes).mean_ap)


def reference_points(model: AdaptiveFusionDetector, scenes: Sequence[FrameSet],
                     budgets: Sequence[float], measure_frames: int, measure_rounds: int,
                     threads: int, policies: Sequence[str] = tuple(REFERENCE_POLICIES),
                     progress: bool = False) -> dict:
    """`model` (today's detector) as the front's references: its full architecture, and each
    policy at each budget, with validation mAP on `scenes` and the end-to-end latency measured
    as the front's members are (the first `measure_frames` scenes, `measure_rounds` rounds,
    taking turns). By label: a point, or a list of points, one per budget."""
    full = SearchSpace.of(model.config).full()
    settings = [PipelineSetting(full),
                *(PipelineSetting(full, policy, budget)
                  for policy in policies for budget in budgets)]
    detections, _ = pipeline_detections(model, settings, scenes, threads,
                                        "references" if progress else None)
    maps = [mean_ap(model, scenes, boxes) for boxes in detections]
    frames = [as_sensor_frame(scene) for scene in scenes[:measure_frames]]
    measured = measure_pipeline_ms(model, settings, frames, measure_rounds, threads)
    points = [{"policy": setting.policy, "budget": setting.fraction, "validation_map": map_,
               "measured_ms": latency["median"]}
              for setting, map_, latency in zip(settings, maps, measured, strict=True)]
    references = {today_label(model): points[0]}
    for index, policy in enumerate(policies):
        label = REFERENCE_POLICIES.get(policy, policy.replace("_", " "))
        references[f"{label}, budgets {', '.join(f'{b:g}' for b in budgets)}"] = (
            points[1 + index * len(budgets): 1 + (index + 1) * len(budgets)])
    return references


def today_label(model: AdaptiveFusionDetector) -> str:
    """The label of today's detector's full model among the references."""
    return f"today's detector, all {sum(model.depths.values())} blocks"


def score_members_on_test(model: AdaptiveFusionDetector, members: Sequence[dict],
                          scenes: Sequence[FrameSet], progress: bool = False) -> None:
    """Sets each member's test_map: its mAP on the test `scenes`, with the supernet's shared
    weights, as validation_map was taken."""
    previous = model.architecture
    for member in tqdm(members, desc="test mAP", disable=not progress):
        model.use_architecture(Architecture.from_dict(member["architecture"]))
        with torch.inference_mode():
            member["test_map"] = float(score_frames(model, scenes).mean_ap)
    model.use_architecture(previous)
