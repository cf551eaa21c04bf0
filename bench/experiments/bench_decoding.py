"""What decoding gives the detector: mAP and decode time of the shipped decoding against the
3x3 peak suppression on the image grid that CenterNet (and this package up to v5) used, and
without its parts.

The model runs once per scene (full depth, batch size 1); each decoding then reads the same
head maps, so the rows differ only in decoding. "3x3 peaks" keeps a cell only where its heatmap
is the maximum of its 3x3 neighbourhood, as that rule did; "one depth per cell" drops the
second depth hypothesis (coding.SECOND_DEPTH_GAP); "no cross-class demotion" keeps the whole
score of a box outranked by a nearby box of another class (coding.CROSS_CLASS_FACTOR). Decode
times are interleaved per scene.

    .venv/bin/python bench/experiments/bench_decoding.py \
        [--scenes 150] [--first-seed 1000000] [--model PATH]
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from adaptive_fusion.lab.evaluation.metrics import evaluate_detections
from adaptive_fusion.lab.evaluation.runner import batch_of_one, evaluation_truth
from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, load_checkpoint
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.sim.world import World


def peaks_only(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The head maps with every heatmap cell that is not a 3x3 maximum pushed to -inf."""
    heat = outputs["heatmap"]
    peak = heat == F.max_pool2d(heat, 3, stride=1, padding=1)
    return {**outputs, "heatmap": heat.masked_fill(~peak, float("-inf"))}


def one_depth(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value for name, value in outputs.items() if name != "depth_choice"}


# name: (what is done to the head maps, decode's keyword arguments)
VARIANTS = {
    "3x3 peaks, one depth per cell": (lambda o: one_depth(peaks_only(o)), {}),
    "3x3 peaks": (peaks_only, {}),
    "every cell, one depth per cell": (one_depth, {}),
    "no cross-class demotion": (lambda o: o, {"cross_class_factor": 1.0}),
    "every cell (shipped)": (lambda o: o, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=150)
    parser.add_argument("--first-seed", type=int, default=1_000_000,
                        help="default: the validation seeds of config/training/default.yaml")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(args.model)
    config, world = model.config, World()
    predictions = {name: [] for name in VARIANTS}
    times = {name: [] for name in VARIANTS}
    truths = []
    seeds = range(args.first_seed, args.first_seed + args.scenes)
    for seed in tqdm(seeds, desc="scenes"):
        frames = world.render(seed)
        inputs = prepare_inputs(frames, config)
        truths.append(evaluation_truth(frames, inputs, config))
        with torch.inference_mode():
            outputs = model(batch_of_one(inputs, model))
        for name, (variant, options) in VARIANTS.items():
            maps = variant(outputs)
            start = time.perf_counter()
            predictions[name].append(decode(maps, inputs.K, inputs.T_cam_lidar, config, **options))
            times[name].append(time.perf_counter() - start)
    print(f"model: {args.model}; {args.scenes} scenes from seed {args.first_seed}; "
          f"{args.threads} threads")
    print(f"{'decoding':<32} {'mAP':>6} {'AP 0.5 m':>8} {'AP 4 m':>7} {'decode ms':>9}")
    for name in VARIANTS:
        metrics = evaluate_detections(predictions[name], truths, config.classes)
        print(f"{name:<32} {metrics.mean_ap:>6.3f} {metrics.threshold_ap[0.5]:>8.3f} "
              f"{metrics.threshold_ap[4.0]:>7.3f} {np.median(times[name]) * 1e3:>9.2f}")


if __name__ == "__main__":
    main()
