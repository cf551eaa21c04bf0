"""What a robot gets for a budget: FusionPipeline's time per frame and per stage, by budget.

Runs the pipeline as fusion_node does (quality, input preparation, the allocation policy, the
detector with only the allocated blocks, decoding) on test scenes, the budgets interleaved
round-robin so that load from other processes hits all of them alike, and prints one table:
median ms per stage and budget, the share of the full pipeline each budget takes, the share of
it spent outside the blocks, and the blocks' GFLOP/s (attention counted, model/flops.py) against
the host's float32 matmul speed measured in the same run.

    .venv/bin/python bench/bench_pipeline.py [--scenes 12] [--rounds 4] [--threads 2]
        [--architecture FILE]   # a searched subnet (adaptive-fusion search); budgets are of it
"""

import argparse
import os

import numpy as np
import torch
from bench_model import host_matmul_gflops
from tqdm import tqdm

from adaptive_fusion.model.architecture import Architecture
from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, load_checkpoint
from adaptive_fusion.model.detector import pool_tokens
from adaptive_fusion.model.flops import count_flops
from adaptive_fusion.policies.registry import POLICIES, make_policy
from adaptive_fusion.runtime.frame import SensorFrame
from adaptive_fusion.runtime.pipeline import FusionPipeline
from adaptive_fusion.sim.world import World

TEST_FIRST_SEED = 2_000_000
STAGES = ("quality", "prepare", "allocate", "model_outside_blocks", "blocks", "decode", "total")


@torch.inference_mode()
def block_gflop(model) -> float:
    """GFLOPs of every block of the subnet in use at full allocation: each modality's block
    shape (width, heads, token grid) counted once, times its depth."""
    config = model.config
    total = 0
    for name, shape in model.architecture.streams.items():
        tokens = pool_tokens(torch.zeros(1, config.tokens, config.dim), config.grid,
                             shape.token_pool)
        block = model.streams[name].blocks[0]
        total += shape.depth * count_flops(
            lambda b=block, x=tokens, s=shape: b(x, s.heads, s.mlp_hidden))
    return total / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--policy", choices=POLICIES, default="controller")
    parser.add_argument("--budgets", default="1,0.5,0.25,0.125")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--architecture", help="architecture JSON of the subnet to run")
    args = parser.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    if budgets[0] != 1.0:
        raise SystemExit("--budgets must start with 1 (the reference)")

    torch.set_num_threads(args.threads)
    gflops = host_matmul_gflops(args.threads)
    model, _ = load_checkpoint(args.model)
    if args.architecture:
        model.use_architecture(Architecture.load(args.architecture, model.config))
    pipeline = FusionPipeline(model, make_policy(args.policy, model),
                              streams="one_after_another")
    world = World()
    frames = []
    for seed in range(TEST_FIRST_SEED, TEST_FIRST_SEED + args.scenes):
        scene = world.render(seed)
        frames.append(SensorFrame(scene.image, scene.depth, scene.points, scene.calib,
                                  scene.lidar))
    pipeline.warm_up(frames[0])

    times = {b: {stage: [] for stage in STAGES} for b in budgets}
    blocks_run = {b: [] for b in budgets}
    for _ in tqdm(range(args.rounds), desc="rounds"):
        for frame in frames:
            for budget in budgets:
                result = pipeline.run(frame, budget)
                t = dict(result.timings_ms)
                t["model_outside_blocks"] = t["model"] - t["blocks"]
                for stage in STAGES:
                    times[budget][stage].append(t[stage])
                blocks_run[budget].append(sum(result.layers(model.config.modalities).values()))

    median = {b: {s: float(np.median(v)) for s, v in times[b].items()} for b in budgets}
    full = median[1.0]
    block_rate = block_gflop(model) / (full["blocks"] / 1e3)
    print(f"model: {args.model}; architecture {args.architecture or 'full'}; "
          f"policy {args.policy}; {args.threads} threads; {args.scenes} "
          f"test scenes x {args.rounds} rounds; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs")
    print(f"host: float32 matmul {gflops[1]:.0f} GFLOP/s at 1 thread, {gflops[args.threads]:.0f} "
          f"at {args.threads}")
    header = (f"{'budget':>6} {'blocks':>6} " + " ".join(f"{s[:13]:>13}" for s in STAGES)
              + f" {'% of full':>9} {'outside %':>9}")
    print(header)
    for b in budgets:
        m = median[b]
        outside = m["total"] - m["blocks"]
        print(f"{b:>6.3f} {np.median(blocks_run[b]):>6.0f} "
              + " ".join(f"{m[s]:>13.2f}" for s in STAGES)
              + f" {100 * m['total'] / full['total']:>9.1f} {100 * outside / full['total']:>9.1f}")
    print(f"blocks at full depth: {block_rate:.0f} GFLOP/s, "
          f"{100 * block_rate / gflops[args.threads]:.0f}% of the host's "
          f"{args.threads}-thread matmul")


if __name__ == "__main__":
    main()
