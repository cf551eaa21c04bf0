"""CPU seconds of one controller training step (controller + gated frozen detector, forward and
backward) and of preparing its batch (load, corrupt, rasterise, measure quality), each on one
thread, and the wall time per step they imply on N free cores. CPU time, not wall time, so that
the number holds while other processes share the machine:

    nice -n 19 .venv/bin/python bench/experiments/bench_controller_step.py \
        --config config/controller/default.yaml --detector runs/default/last --steps 6
"""

import argparse
import tempfile
import time

import torch
from torch.utils.data import default_collate

from adaptive_fusion.lab.controller.config import load_controller_config
from adaptive_fusion.lab.controller.data import ControllerDataset
from adaptive_fusion.lab.controller.trainer import ControllerTrainer

PARALLEL_EFFICIENCY = 0.8  # speed-up per extra core of torch's intra-op threads on small batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--detector")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    config = load_controller_config(args.config)
    config.threads = 1
    config.out_dir = tempfile.mkdtemp(prefix="controller-bench-")
    if args.detector:
        config.detector = args.detector
    trainer = ControllerTrainer(config, show_progress=False)
    dataset = ControllerDataset(trainer.train_files, trainer.model_config, seed=0,
                                corruptions=config.data.corruptions,
                                mirror_probability=config.data.mirror_probability)
    dataset.set_epoch(0, corrupt=True)
    size = config.schedule.batch_size
    data_s, step_s = [], []
    for step in range(args.steps + 1):  # the first step warms up and is not counted
        start = time.process_time()
        batch = default_collate([dataset[step * size + i] for i in range(size)])
        data = time.process_time() - start
        start = time.process_time()
        trainer.step(batch)
        if step:
            data_s.append(data)
            step_s.append(time.process_time() - start)
    data, step = sorted(data_s)[len(data_s) // 2], sorted(step_s)[len(step_s) // 2]
    cores = args.cores
    wall = max(step / (1 + PARALLEL_EFFICIENCY * (cores - 1)), (step + data) / cores)
    print(f"{'batch':>6} {'step cpu s':>11} {'data cpu s':>11} {f'wall s ({cores} cores)':>17}")
    print(f"{size:>6} {step:>11.2f} {data:>11.2f} {wall:>17.2f}")
    print(f"steps in 30 min: {int(1800 / wall)}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
