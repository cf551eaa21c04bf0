"""What the search's front is shown beside and reported on: today's detector measured the same way
(its full model, and its allocation policies at compute budgets, with validation mAP and measured
pipeline latency), and the front's members scored on test scenes the search never saw."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm import tqdm

from adaptive_fusion.core.frames import FrameSet
from adaptive_fusion.lab.evaluation.metrics import evaluate_detections
from adaptive_fusion.lab.evaluation.runner import evaluation_truth, score_frames
from adaptive_fusion.lab.search.costs import PipelineSetting, measure_pipeline_ms
from adaptive_fusion.lab.search.nsga import as_sensor_frame
from adaptive_fusion.model.architecture import Architecture, SearchSpace
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.policies.registry import make_policy
from adaptive_fusion.runtime.pipeline import FusionPipeline

REFERENCE_POLICIES = {"equal_split": "equal split", "controller": "learned controller"}
EVALUATION_THRESHOLD = 0.05  # the score threshold every mAP of the package is taken at


@torch.inference_mode()
def pipeline_maps(model: AdaptiveFusionDetector, settings: Sequence[PipelineSetting],
                  scenes: Sequence[FrameSet], progress: bool = False) -> list[float]:
    """mAP of FusionPipeline in each setting on `scenes`: the node's own path (quality
    measures, the policy, the budget) at batch 1, one pipeline for all settings."""
    previous = model.architecture
    pipeline = FusionPipeline(model, make_policy("equal_split", model),
                              streams="one_after_another")
    truths = [evaluation_truth(frames, prepare_inputs(frames, model.config), model.config)
              for frames in scenes]
    maps = []
    for setting in tqdm(settings, desc="references", disable=not progress):
        model.use_architecture(setting.architecture)
        pipeline.policy = make_policy(setting.policy, model)
        predictions = [pipeline.run(as_sensor_frame(frames), setting.fraction,
                                    score_threshold=EVALUATION_THRESHOLD).boxes
                       for frames in scenes]
        maps.append(float(evaluate_detections(predictions, truths, model.config.classes).mean_ap))
    model.use_architecture(previous)
    return maps


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
    maps = pipeline_maps(model, settings, scenes, progress)
    frames = [as_sensor_frame(scene) for scene in scenes[:measure_frames]]
    measured = measure_pipeline_ms(model, settings, frames, measure_rounds, threads)
    points = [{"policy": setting.policy, "budget": setting.fraction, "validation_map": map_,
               "measured_ms": latency["median"]}
              for setting, map_, latency in zip(settings, maps, measured, strict=True)]
    references = {f"today's detector, all {sum(model.depths.values())} blocks": points[0]}
    for index, policy in enumerate(policies):
        label = REFERENCE_POLICIES.get(policy, policy.replace("_", " "))
        references[f"{label}, budgets {', '.join(f'{b:g}' for b in budgets)}"] = (
            points[1 + index * len(budgets): 1 + (index + 1) * len(budgets)])
    return references


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
