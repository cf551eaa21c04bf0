"""The detector's modality streams one after another at 2 intra-op threads against side by side
on 2 worker threads at 1 intra-op thread each (model/streams.py; FusionPipeline's side_by_side,
the node's side_by_side_streams), batch size 1, model forward + decode, the two interleaved in
one run.

    .venv/bin/python bench/bench_parallel_streams.py [--runs 100] [--model PATH]
"""

import argparse
import time

import numpy as np
import torch

from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, load_checkpoint
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.model.streams import SideBySideStreams
from adaptive_fusion.world.config import WorldConfig
from adaptive_fusion.world.world import World

WORKERS = 2
WARM_UP = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--model")
    args = parser.parse_args()
    torch.set_num_threads(WORKERS)
    model, _ = load_checkpoint(args.model or DEFAULT_MODEL)
    config = model.config
    inputs = prepare_inputs(World(WorldConfig()).render(2_000_000), config)
    batch = {name: torch.from_numpy(r).unsqueeze(0) for name, r in inputs.rasters.items()}

    modes = {"one after another": None, "side by side": SideBySideStreams(WORKERS)}
    counts = [config.layers, config.layers // 2, config.layers // 4]
    times = {(k, mode): [] for k in counts for mode in modes}
    outputs = {}
    with torch.inference_mode():
        for round_ in range(args.runs + WARM_UP):
            for k in counts:
                allocation = {m: k for m in config.modalities}
                for mode, runner in modes.items():
                    model.side_by_side = runner
                    start = time.perf_counter()
                    outputs[mode] = model(batch, allocation)
                    decode(outputs[mode], inputs.K, inputs.T_cam_lidar, config)
                    if round_ >= WARM_UP:
                        times[(k, mode)].append(time.perf_counter() - start)
    modes["side by side"].close()
    first, second = outputs.values()
    difference = max(float((first[key] - second[key]).abs().max())
                     for key in first if first[key].dim() > 0)
    print(f"{args.runs} runs per cell, interleaved; largest output difference {difference:.2e}")
    print(f"{'blocks/modality':>15} {'one after another ms':>21} {'side by side ms':>16} "
          f"{'ratio':>6}")
    for k in counts:
        serial, side_by_side = (np.median(times[(k, mode)]) * 1e3 for mode in modes)
        print(f"{k:>15} {serial:>21.2f} {side_by_side:>16.2f} {side_by_side / serial:>6.2f}")


if __name__ == "__main__":
    main()
