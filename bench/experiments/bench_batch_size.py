"""Training cost per sample at several batch sizes, side by side: the trainer's own step
(mid-training, as bench_training_step.py) fed the way config/training/default.yaml feeds it
(samples made between steps, two at a time). It says how many samples, and how many optimiser
steps, a 2-hour recipe can afford at each size. On this 2-core host (3 rounds x 128 samples):
batch 4 82.4 ms a sample, batch 8 57.6, batch 16 58.4. Halving the batch to 8 costs nothing
per sample and doubles the steps; at 4 the fixed cost of a step starts to show.

    .venv/bin/python bench/experiments/bench_batch_size.py \
        [--sizes 8,16] [--rounds 3] [--samples 128]
"""

import argparse
import tempfile
from dataclasses import replace

import numpy as np
from bench_training_step import loader, small_config, time_block

from adaptive_fusion.lab.training.config import load_config
from adaptive_fusion.lab.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/training/default.yaml")
    parser.add_argument("--sizes", default="8,16", help="batch sizes, comma-separated")
    parser.add_argument("--scenes", type=int, default=400,
                        help="training scenes to draw from (rendered into a temporary cache)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=128,
                        help="timed samples per size per round (steps = samples / size)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as out:
        config = small_config(config, out, args.scenes)
        trainers = {
            size: Trainer(replace(config, out_dir=f"{out}/b{size}",
                                  schedule=replace(config.schedule, batch_size=size)),
                          show_progress=False)
            for size in sizes
        }
        per_sample: dict[int, list[float]] = {size: [] for size in sizes}
        for _ in range(args.rounds):
            for size, trainer in trainers.items():
                steps = max(args.samples // size, 2)
                times = time_block(trainer, loader(trainer, 0, threads=2), steps)
                per_sample[size] += [t / size for t in times]
    base = np.median(per_sample[max(sizes)])
    print(f"{config.threads} torch threads, {args.rounds} rounds x {args.samples} samples per size")
    print(f"{'batch':>5} {'ms/sample':>9} {'s/step':>7} {'x batch ' + str(max(sizes)):>10}")
    for size, values in per_sample.items():
        median = np.median(values)
        print(f"{size:>5} {1000 * median:>9.1f} {median * size:>7.3f} {median / base:>10.2f}")


if __name__ == "__main__":
    main()
