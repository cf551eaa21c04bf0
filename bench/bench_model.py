"""Latency and FLOPs of the detector against the number of blocks run (batch size 1).

Measures model forward + decode (tokenizers, blocks, fusion, head, decoding and NMS) per
allocation, interleaving the allocations round-robin so that load from other processes hits all
of them alike; reports median and p95 over many runs, the ratio to full depth, and FLOPs counted
by torch's FlopCounterMode, attention included (model/flops.py). Input preparation (resize,
lidar projection) is timed separately.
Hosts differ (the same model and code measured from 23 to 60 ms at full depth on different
days), so the first line also measures the host: a float32 matmul's GFLOP/s at 1 thread and at
the bench's threads, alternated, which says how fast its cores are and how well the second one
adds to the first.

    .venv/bin/python bench/bench_model.py [--runs 200] [--threads 2] [--model PATH]
"""

import argparse
import os
import time

import numpy as np
import torch

from adaptive_fusion.lab.evaluation.runner import allocation_flops
from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, load_checkpoint
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.sim.config import WorldConfig
from adaptive_fusion.sim.world import World


def build_model(path: str | None) -> tuple[AdaptiveFusionDetector, str]:
    if path or DEFAULT_MODEL.is_file():
        model, _ = load_checkpoint(path or DEFAULT_MODEL)
        return model, str(path or DEFAULT_MODEL)
    torch.manual_seed(0)
    return AdaptiveFusionDetector(ModelConfig()).eval(), "random init, default sizes"


def host_matmul_gflops(threads: int, size: int = 512, runs: int = 60) -> dict[int, float]:
    """GFLOP/s of a float32 size^3 matmul at 1 thread and at `threads`, alternated."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    times: dict[int, list[float]] = {1: [], threads: []}
    for _ in range(runs):
        for count in times:
            torch.set_num_threads(count)
            start = time.perf_counter()
            a @ b
            times[count].append(time.perf_counter() - start)
    torch.set_num_threads(threads)
    return {count: 2 * size**3 / np.median(t) / 1e9 for count, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model")
    args = parser.parse_args()
    gflops = host_matmul_gflops(args.threads)
    model, source = build_model(args.model)
    config = model.config
    frames = World(WorldConfig()).render(2_000_000)

    prep_times = []
    for _ in range(args.runs // 4):
        start = time.perf_counter()
        inputs = prepare_inputs(frames, config)
        prep_times.append(time.perf_counter() - start)
    batch = {name: torch.from_numpy(r).unsqueeze(0) for name, r in inputs.rasters.items()}

    counts = sorted({config.layers, 3 * config.layers // 4, config.layers // 2,
                     config.layers // 4, 1}, reverse=True)
    allocations = {k: {m: k for m in config.modalities} for k in counts}
    times: dict[int, list[float]] = {k: [] for k in counts}
    with torch.inference_mode():
        for _ in range(10):  # warm-up
            for allocation in allocations.values():
                decode(model(batch, allocation), inputs.K, inputs.T_cam_lidar, config)
        for _ in range(args.runs):
            for k, allocation in allocations.items():
                start = time.perf_counter()
                decode(model(batch, allocation), inputs.K, inputs.T_cam_lidar, config)
                times[k].append(time.perf_counter() - start)
    flops = {k: allocation_flops(model, inputs, a) for k, a in allocations.items()}

    full = config.layers
    full_ms = np.median(times[full]) * 1e3
    print(f"model: {source}; {args.threads} threads; {args.runs} runs per row; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"host: float32 matmul {gflops[1]:.0f} GFLOP/s at 1 thread, "
          f"{gflops[args.threads]:.0f} at {args.threads} "
          f"({gflops[args.threads] / gflops[1]:.2f}x)")
    print(f"input preparation (resize, depth pooling, lidar projection): "
          f"median {np.median(prep_times) * 1e3:.2f} ms, p95 "
          f"{np.percentile(prep_times, 95) * 1e3:.2f} ms")
    print(f"{'blocks/modality':>15} {'fraction':>8} {'median ms':>10} {'p95 ms':>8} "
          f"{'latency %':>9} {'GFLOPs':>7} {'FLOPs %':>7}")
    for k in counts:
        median = np.median(times[k]) * 1e3
        p95 = np.percentile(times[k], 95) * 1e3
        print(f"{k:>15} {k / full:>8.3f} {median:>10.2f} {p95:>8.2f} "
              f"{100 * median / full_ms:>9.1f} {flops[k] / 1e9:>7.3f} "
              f"{100 * flops[k] / flops[full]:>7.1f}")


if __name__ == "__main__":
    main()
