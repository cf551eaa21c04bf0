"""What a robot gets for a budget: FusionPipeline's time per frame and per stage, by budget.

Runs the pipeline as fusion_node does (quality, input preparation, the allocation policy, the
detector with only the allocated blocks, decoding) on test scenes, the budgets interleaved
round-robin so that load from other processes hits all of them alike, and prints one table:
median ms per stage and budget, the share of the full pipeline each budget takes, the share of
it spent outside the blocks, and the blocks' GFLOP/s (attention counted, model/flops.py) against
the host's float32 matmul speed measured in the same run.

    .venv/bin/python bench/bench_pipeline.py [--scenes 12] [--rounds 4] [--threads 2]
        [--architecture FILE]   # a searched subnet (adaptive-fusion search); budgets are of it
        [--quality-stride N]    # also fusion_node's quality_stride N beside 1, in turn
                                # (means then, not medians: frames differ by design)
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
    parser.add_argument("--quality-stride", type=int, default=1)
    args = parser.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    if budgets[0] != 1.0:
        raise SystemExit("--budgets must start with 1 (the reference)")

    torch.set_num_threads(args.threads)
    gflops = host_matmul_gflops(args.threads)
    model, _ = load_checkpoint(args.model)
    if args.architecture:
        model.use_architecture(Architecture.load(args.architecture, model.config))
    # With --quality-stride N > 1 a pipeline measuring quality every frame runs beside it, the
    # two in turn on the same frames, so that both meet the same load.
    strides = sorted({1, args.quality_stride})
    pipelines = {stride: FusionPipeline(model, make_policy(args.policy, model),
                                        streams="one_after_another", quality_stride=stride)
                 for stride in strides}
    world = World()
    frames = []
    for seed in range(TEST_FIRST_SEED, TEST_FIRST_SEED + args.scenes):
        scene = world.render(seed)
        frames.append(SensorFrame(scene.image, scene.depth, scene.points, scene.calib,
                                  scene.lidar))
    for pipeline in pipelines.values():
        pipeline.warm_up(frames[0])

    times = {(k, b): {stage: [] for stage in STAGES} for k in strides for b in budgets}
    blocks_run = {(k, b): [] for k in strides for b in budgets}
    for _ in tqdm(range(args.rounds), desc="rounds"):
        for frame in frames:
            for budget in budgets:
                for stride, pipeline in pipelines.items():
                    result = pipeline.run(frame, budget)
                    t = dict(result.timings_ms)
                    t["model_outside_blocks"] = t["model"] - t["blocks"]
                    for stage in STAGES:
                        times[stride, budget][stage].append(t[stage])
                    blocks_run[stride, budget].append(
                        sum(result.layers(model.config.modalities).values()))

    # A quality stride makes frames differ by design (one sensor measured in turn): means then
    # for every pipeline of the run, medians otherwise.
    summary = np.median if strides == [1] else np.mean
    table = {key: {s: float(summary(v)) for s, v in stages.items()}
             for key, stages in times.items()}
    print(f"model: {args.model}; architecture {args.architecture or 'full'}; "
          f"policy {args.policy}; {args.threads} threads; {args.scenes} "
          f"test scenes x {args.rounds} rounds; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs; {summary.__name__}s per stage")
    print(f"host: float32 matmul {gflops[1]:.0f} GFLOP/s at 1 thread, {gflops[args.threads]:.0f} "
          f"at {args.threads}")
    header = (f"{'stride':>6} {'budget':>6} {'blocks':>6} "
              + " ".join(f"{s[:13]:>13}" for s in STAGES) + f" {'% of full':>9} {'outside %':>9}")
    print(header)
    for stride in strides:
        full = table[stride, 1.0]
        for b in budgets:
            m = table[stride, b]
            outside = m["total"] - m["blocks"]
            print(f"{stride:>6} {b:>6.3f} {np.median(blocks_run[stride, b]):>6.0f} "
                  + " ".join(f"{m[s]:>13.2f}" for s in STAGES)
                  + f" {100 * m['total'] / full['total']:>9.1f}"
                  + f" {100 * outside / full['total']:>9.1f}")
    if len(strides) > 1:
        print(f"quality stride {args.quality_stride} against 1, total per frame: " + ", ".join(
            f"{table[args.quality_stride, b]['total'] / table[1, b]['total']:.2f} at {b:g}"
            for b in budgets))
    block_rate = block_gflop(model) / (table[1, 1.0]["blocks"] / 1e3)
    print(f"blocks at full depth: {block_rate:.0f} GFLOP/s, "
          f"{100 * block_rate / gflops[args.threads]:.0f}% of the host's "
          f"{args.threads}-thread matmul")


if __name__ == "__main__":
    main()
