"""How the allocation answers faults it never trained on: real-world kinds outside the world's
corruption family, which only the quality measures (and the rasters) can tell it about.

Runs FusionPipeline with the shipped detector under the shipped controller and the equal split
(and the DynMM gate with --policies) on test scenes, clean and under each fault at full
severity, at budgets 0.25 and 0.5, and prints per condition: the measured quality, the blocks
each sensor got and the mAP. The faults are sim/corruptions.REAL_WORLD_FAULTS (JPEG at quality
5, a colour cast, mixed depth pixels, a lost depth band, a 120-degree lidar gap, saturated
intensities, ghost returns below the road) and the world's motion blur, which every controller's
training holds out; which of the real-world kinds a controller or gate trained on is in its
config (data.corruptions).

    .venv/bin/python bench/bench_held_out.py [--scenes 32] [--policies controller,equal_split,dynmm]
        [--controller PATH] [--gate PATH] [--json FILE]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adaptive_fusion.lab.evaluation.metrics import evaluate_detections
from adaptive_fusion.lab.evaluation.report import TEST_FIRST_SEED
from adaptive_fusion.lab.evaluation.runner import evaluation_truth
from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, load_checkpoint
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.policies.registry import POLICIES, make_policy
from adaptive_fusion.runtime.frame import SensorFrame
from adaptive_fusion.runtime.pipeline import FusionPipeline
from adaptive_fusion.sim import World
from adaptive_fusion.sim.corruptions import REAL_WORLD_FAULTS, corrupt

BUDGETS = (0.25, 0.5)
DEFAULT_POLICIES = ("controller", "equal_split")


def held_out(frames, kind: str, seed: int):
    """The frame set under one held-out fault at full severity ("clean": unchanged); a lidar
    gap of 120 degrees."""
    if kind == "clean":
        return frames
    modality, fault = kind.split(":")
    severity = 2 / 3 if fault == "sector_gap" else 1.0
    return corrupt(frames, {modality: (fault, severity)}, seed)


KINDS = ("clean", "camera:motion_blur",
         *(f"{m}:{k}" for m, kinds in REAL_WORLD_FAULTS.items() for k in kinds))


def run(pipelines, scenes, kinds, config) -> dict:
    report = {}
    for kind in tqdm(kinds, desc="conditions"):
        faulted = [held_out(frames, kind, seed) for seed, frames in enumerate(scenes)]
        truths = [evaluation_truth(f, prepare_inputs(f, config), config) for f in faulted]
        entry = {}
        for name, pipeline in pipelines.items():
            for budget in BUDGETS:
                boxes, blocks, quality = [], [], []
                for frames in faulted:
                    sensor = SensorFrame(frames.image, frames.depth, frames.points,
                                         frames.calib, frames.lidar)
                    result = pipeline.run(sensor, budget, score_threshold=0.05)
                    boxes.append(result.boxes)
                    blocks.append(result.layers(config.modalities))
                    quality.append(result.quality)
                metrics = evaluate_detections(boxes, truths, config.classes)
                entry[f"{name}@{budget}"] = {
                    "mAP": float(metrics.mean_ap),
                    "blocks": {m: float(np.mean([b[m] for b in blocks]))
                               for m in config.modalities},
                    "quality": {m: float(np.mean([q.get(m, 0.0) for q in quality]))
                                for m in config.modalities},
                }
        report[kind] = entry
    return report


def print_report(report: dict, modalities, policies) -> None:
    print(f"{'condition':<20} {'quality c/d/l':>15} | " + " | ".join(
        f"{f'{p}@{b}':>26}" for p in policies for b in BUDGETS))
    print(f"{'':<20} {'':>15} | " + " | ".join(
        f"{'mAP  blocks c/d/l':>26}" for _ in policies for _ in BUDGETS))
    for kind, entry in report.items():
        quality = entry[f"{policies[0]}@{BUDGETS[0]}"]["quality"]
        cells = []
        for p in policies:
            for b in BUDGETS:
                e = entry[f"{p}@{b}"]
                split = "/".join(f"{e['blocks'][m]:.1f}" for m in modalities)
                cells.append(f"{e['mAP']:.3f}  {split:>15}")
        q = "/".join(f"{quality[m]:.2f}" for m in modalities)
        print(f"{kind:<20} {q:>15} | " + " | ".join(f"{c:>26}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                        help=f"comma-separated, of {', '.join(POLICIES)}")
    parser.add_argument("--controller", help="controller checkpoint (default: the packaged one)")
    parser.add_argument("--gate", help="DynMM gate checkpoint (default: the packaged one)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    policies = tuple(args.policies.split(","))
    unknown = set(policies) - set(POLICIES)
    if unknown:
        parser.error(f"unknown policies {sorted(unknown)}; choose from {POLICIES}")
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(DEFAULT_MODEL)
    checkpoints = {"controller": args.controller, "dynmm": args.gate}
    pipelines = {name: FusionPipeline(model, make_policy(name, model, checkpoints.get(name)),
                                      streams="one_after_another") for name in policies}
    world = World()
    scenes = [world.render(TEST_FIRST_SEED + i)
              for i in tqdm(range(args.scenes), desc="rendering")]
    report = run(pipelines, scenes, KINDS, model.config)
    print_report(report, model.config.modalities, policies)
    if args.json:
        args.json.write_text(json.dumps({"scenes": args.scenes, "conditions": report}, indent=1))
        print(f"json: {args.json}")


if __name__ == "__main__":
    main()
