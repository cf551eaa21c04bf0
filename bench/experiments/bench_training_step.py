"""Where a training step's time goes: the detector's step alone on a batch already in memory,
against the same step fed by batches made in one loader process beside it (at normal or the
lowest CPU priority), or in the training process between steps, one sample at a time or two
at once (training/data.epoch_batches; config/training/default.yaml's choice is the last).
Training runs torch on every core, and a loader process beside it takes cycles from those
threads; this measures what each way costs.

The step is the trainer's own (mid-training: epoch 3, corruptions on, LayerDrop at its full
rate). The cases run interleaved in rounds, so the ratios are measured side by side; each block's
first step (a new loader's first batch) is not timed.

    .venv/bin/python bench/experiments/bench_training_step.py \
        [--config config/training/default.yaml]
        [--scenes 400] [--rounds 4] [--steps 12]
"""

import argparse
import os
import tempfile
from dataclasses import replace
from itertools import islice
from time import perf_counter

import numpy as np
from torch.utils.data import DataLoader

from adaptive_fusion.lab.training.config import load_config
from adaptive_fusion.lab.training.data import epoch_batches
from adaptive_fusion.lab.training.trainer import Progress, Trainer

EPOCH = 3


def lowest_priority(_worker: int) -> None:
    os.nice(19)


def loader(trainer: Trainer, workers: int, threads: int = 1, init=None):
    """The trainer's batches of EPOCH, made by `workers` processes started by `init`, or with
    none by `threads` threads."""
    base = trainer.epoch_loader(EPOCH)
    if workers:
        return DataLoader(base.dataset, batch_size=base.batch_size, sampler=base.sampler,
                          num_workers=workers, worker_init_fn=init)
    return epoch_batches(base.dataset, base.sampler, base.batch_size, 0, threads)


def small_config(config, out: str, scenes: int):
    """`config` on its first `scenes` training scenes and one validation scene, rendered into a
    cache under `out` and checkpointing there: a bench's trainer, cheap to set up."""
    train, val = config.data.train_seeds[0], config.data.val_seeds[0]
    data = replace(config.data, cache_dir=f"{out}/cache",
                   train_seeds=[train, train + scenes], val_seeds=[val, val + 1])
    return replace(config, out_dir=out, data=data)


def time_block(trainer: Trainer, batches, steps: int) -> list[float]:
    """Seconds per step over `steps` steps after the first, each from the wait for its batch to
    the end of its optimiser step."""
    trainer.progress = Progress(epoch=EPOCH, step=EPOCH * trainer.steps_per_epoch)
    times = []
    start = perf_counter()
    for i, batch in enumerate(islice(batches, steps + 1)):
        trainer.step(batch)
        now = perf_counter()
        if i:
            times.append(now - start)
        start = now
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/training/default.yaml")
    parser.add_argument("--scenes", type=int, default=400,
                        help="training scenes to draw from (rendered into a temporary cache)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per case per round")
    args = parser.parse_args()
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as out:
        config = small_config(config, out, args.scenes)
        trainer = Trainer(config, show_progress=False)
        in_memory = next(iter(loader(trainer, 0)))
        cases = {
            "batch in memory (model only)": lambda: [in_memory] * (args.steps + 1),
            "1 loader process": lambda: loader(trainer, 1),
            "1 loader process at nice 19": lambda: loader(trainer, 1, init=lowest_priority),
            "between steps, 1 thread": lambda: loader(trainer, 0, threads=1),
            "between steps, 2 threads": lambda: loader(trainer, 0, threads=2),
        }
        times = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, batches in cases.items():
                times[name] += time_block(trainer, batches(), args.steps)
    base = np.median(times["batch in memory (model only)"])
    print(f"{config.threads} torch threads, batch {config.schedule.batch_size}, "
          f"{args.rounds} rounds x {args.steps} steps per case")
    print(f"{'case':<32} {'s/step':>7} {'p90':>6} {'x model only':>12}")
    for name, values in times.items():
        print(f"{name:<32} {np.median(values):>7.3f} {np.percentile(values, 90):>6.3f} "
              f"{np.median(values) / base:>12.2f}")


if __name__ == "__main__":
    main()
