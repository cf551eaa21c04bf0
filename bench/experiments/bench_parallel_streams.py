"""The detector's modality streams one after another at 2 intra-op threads, side by side on 2
worker threads at 1 intra-op thread each (model/streams.py), and "auto", which picks one of the
two per frame from its own measurements (runtime/scheduling.py: FusionPipeline's default, the
node's stream_scheduling), batch size 1, model forward + decode, the three interleaved in one
run, on an idle host and with another process busy on one core.

    .venv/bin/python bench/experiments/bench_parallel_streams.py [--runs 100] [--model PATH]

"auto / best" is auto's median over the better fixed mode's at that row: about 1 when the
scheduler finds the faster mode and pays little for re-measuring the other.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/load.py
from load import start_busy_core  # noqa: E402

from adaptive_fusion.model.allocation import normalise_allocation
from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, load_checkpoint
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.model.streams import SideBySideStreams
from adaptive_fusion.runtime.scheduling import StreamScheduler, frame_kind
from adaptive_fusion.sim.config import WorldConfig
from adaptive_fusion.sim.world import World

WORKERS = 2
WARM_UP = 5
MODES = ("one_after_another", "side_by_side", "auto")
SECONDS_PER_FRAME = 0.15  # bounds the busy process's life: a generous frame time


def measure(model, inputs, batch, counts, runs: int) -> tuple[dict, dict, dict]:
    """Medians (ms) per (blocks per modality, mode), the share of auto's frames run side by
    side per count, and the last outputs per fixed mode."""
    config = model.config
    runner, scheduler = SideBySideStreams(WORKERS), StreamScheduler()
    times = {(k, mode): [] for k in counts for mode in MODES}
    auto_side = {k: [] for k in counts}
    outputs = {}
    with torch.inference_mode():
        for round_ in range(runs + WARM_UP):
            for k in counts:
                allocation = normalise_allocation({m: k for m in config.modalities},
                                                  config.modalities, config.layers)
                kind = frame_kind(allocation)
                for mode in MODES:
                    run = scheduler.choose(*kind) if mode == "auto" else mode
                    model.side_by_side = runner if run == "side_by_side" else None
                    start = time.perf_counter()
                    outputs[mode] = model(batch, allocation)
                    forward = time.perf_counter() - start
                    decode(outputs[mode], inputs.K, inputs.T_cam_lidar, config)
                    elapsed = time.perf_counter() - start
                    if mode == "auto":
                        scheduler.record(*kind, run, forward)
                    if round_ >= WARM_UP:
                        times[(k, mode)].append(elapsed)
                        if mode == "auto":
                            auto_side[k].append(run == "side_by_side")
    runner.close()
    model.side_by_side = None
    medians = {key: np.median(values) * 1e3 for key, values in times.items()}
    return medians, {k: np.mean(v) for k, v in auto_side.items()}, outputs


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
    counts = [config.layers, config.layers // 2, config.layers // 4]

    print(f"{args.runs} runs per cell, the modes interleaved; medians in ms, model forward + "
          f"decode")
    print(f"{'host':>13} {'blocks/modality':>15} {'one after another':>17} "
          f"{'side by side':>12} {'auto':>6} {'side/one':>8} {'auto/best':>9} "
          f"{'auto side by side':>17}")
    for label in ("idle", "one core busy"):
        busy = None
        if label != "idle":
            busy = start_busy_core(SECONDS_PER_FRAME * 3 * len(counts) * (args.runs + WARM_UP))
            time.sleep(1.0)
        try:
            medians, auto_side, outputs = measure(model, inputs, batch, counts, args.runs)
        finally:
            if busy is not None:
                busy.terminate()
                busy.join()
        for k in counts:
            one, side, auto = (medians[(k, mode)] for mode in MODES)
            print(f"{label:>13} {k:>15} {one:>17.2f} {side:>12.2f} {auto:>6.2f} "
                  f"{side / one:>8.2f} {auto / min(one, side):>9.2f} "
                  f"{100 * auto_side[k]:>16.0f}%")
    first, second = outputs["one_after_another"], outputs["side_by_side"]
    difference = max(float((first[key] - second[key]).abs().max())
                     for key in first if first[key].dim() > 0)
    print(f"largest output difference between the modes: {difference:.2e}")


if __name__ == "__main__":
    main()
