"""The best mAP the detection head's box coding can reach, before any learning.

Ground truth is encoded into the head's per-cell maps exactly as in training, decoded back as if
the network had predicted it perfectly, and scored with the evaluation's mAP. What is lost is lost
to the coding itself: two boxes in one cell (the nearer keeps it), BEV NMS between close
neighbours. Prints
one row per cell size, e.g. to see what a finer head grid would buy.

    .venv/bin/python bench/experiments/bench_coding_ceiling.py --cells 16,8 --scenes 60
"""

import argparse

import torch
from tqdm import tqdm

from adaptive_fusion.core.boxes import boxes_from_objects
from adaptive_fusion.lab.evaluation.metrics import evaluate_detections
from adaptive_fusion.lab.evaluation.runner import evaluation_truth
from adaptive_fusion.lab.training.data import model_boxes2d
from adaptive_fusion.model.coding import decode, encode_targets
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import REGRESSION_CHANNELS
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.sim import World, WorldConfig

FIRST_SEED = 1_000_000  # the validation seeds of config/training/default.yaml
PROBABILITY_CLAMP = 1e-4  # keeps the logit of a perfect heatmap finite


def perfect_outputs(targets: dict) -> dict[str, torch.Tensor]:
    """Head outputs that reproduce the training targets exactly, the heatmap as its peaks
    (decoding takes every cell: the splat's slopes carry no regression targets)."""
    heat = torch.from_numpy(targets["heatmap"] == 1.0)[None].float()
    heat = heat.clamp(PROBABILITY_CLAMP, 1 - PROBABILITY_CLAMP)
    outputs = {"heatmap": torch.log(heat / (1 - heat))}
    regression = torch.from_numpy(targets["regression"])[None]
    parts = regression.split(list(REGRESSION_CHANNELS.values()), dim=1)
    outputs.update(zip(REGRESSION_CHANNELS, parts, strict=True))
    return outputs


def ceiling(cell: int, scenes: int, world: World) -> dict:
    config = ModelConfig(head_stride=cell)
    predictions, truths, lost = [], [], 0
    for seed in tqdm(range(FIRST_SEED, FIRST_SEED + scenes), desc=f"{cell} px cells", leave=False):
        frames = world.render(seed)
        inputs = prepare_inputs(frames, config)
        targets = encode_targets(
            boxes_from_objects(frames.objects), model_boxes2d(frames, config),
            inputs.K, inputs.T_cam_lidar, config,
        )
        predictions.append(decode(perfect_outputs(targets), inputs.K, inputs.T_cam_lidar, config))
        truth = evaluation_truth(frames, inputs, config)
        truths.append(truth)
        lost += len(truth) - int((targets["mask"] == 1).sum())  # boxes that lost their cell
    metrics = evaluate_detections(predictions, truths, config.classes)
    boxes = sum(len(t) for t in truths)
    return {"cell": cell, "mAP": metrics.mean_ap, "boxes": boxes, "no cell": lost,
            **{f"AP {name}": ap for name, ap in metrics.class_ap.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="16,8", help="cell sizes in pixels, comma-separated")
    parser.add_argument("--scenes", type=int, default=60)
    args = parser.parse_args()
    world = World(WorldConfig())
    rows = [ceiling(int(c), args.scenes, world) for c in args.cells.split(",")]
    header = list(rows[0])
    print(" | ".join(f"{h:>12}" for h in header))
    for row in rows:
        print(" | ".join(f"{row[h]:>12.3f}" if isinstance(row[h], float) else f"{row[h]:>12}"
                         for h in header))


if __name__ == "__main__":
    main()
