"""Latency and FLOPs of the detector against the number of blocks run (batch size 1).

Measures model forward + decode (tokenizers, blocks, fusion, head, decoding and NMS) per
allocation, interleaving the allocations round-robin so that load from other processes hits all
of them alike; reports median and p95 over many runs, the ratio to full depth, and FLOPs counted
by torch's FlopCounterMode. Input preparation (resize, lidar projection) is timed separately.

    .venv/bin/python bench/bench_model.py [--runs 200] [--threads 2] [--model PATH]
"""

import argparse
import os
import time

import numpy as np
import torch

from adaptive_fusion.evaluation.runner import count_flops
from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, load_checkpoint
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.world.config import WorldConfig
from adaptive_fusion.world.world import World


def build_model(path: str | None) -> tuple[AdaptiveFusionDetector, str]:
    if path or DEFAULT_MODEL.is_file():
        model, _ = load_checkpoint(path or DEFAULT_MODEL)
        return model, str(path or DEFAULT_MODEL)
    torch.manual_seed(0)
    return AdaptiveFusionDetector(ModelConfig()).eval(), "random init, default sizes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
    flops = {k: count_flops(model, inputs, a) for k, a in allocations.items()}

    full = config.layers
    full_ms = np.median(times[full]) * 1e3
    print(f"model: {source}; {args.threads} threads; {args.runs} runs per row; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
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
