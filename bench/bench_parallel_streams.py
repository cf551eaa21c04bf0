"""The detector's modality streams one after another at 2 intra-op threads (as the model runs
them) against side by side on 2 worker threads at 1 intra-op thread each (not built into the
model yet), batch size 1, model forward + decode, the two interleaved.

At batch 1 the blocks' operations are small: the fused attention over 300 tokens runs no faster
on a second intra-op thread and a 300x128 linear layer gains little, while two streams on two
threads overlap fully. The side-by-side runner advances the streams one unit (stem or block) at
a time, the longest-waiting stream first, so three streams keep two workers busy. A worker's
torch.set_num_threads(1) also reaches the thread that started it, so the main thread sets its
count back once both workers are up (a new thread takes the last value set).

    .venv/bin/python bench/bench_parallel_streams.py [--runs 100] [--model PATH]
"""

import argparse
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import numpy as np
import torch

from adaptive_fusion.model.allocation import normalise_allocation
from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, load_checkpoint
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.world.config import WorldConfig
from adaptive_fusion.world.world import World

WORKERS = 2


def start_workers(threads: int) -> ThreadPoolExecutor:
    """WORKERS threads at one intra-op thread each; the caller's count is restored after."""
    ready = threading.Barrier(WORKERS + 1)

    def single_threaded() -> None:
        torch.set_num_threads(1)
        ready.wait()

    pool = ThreadPoolExecutor(WORKERS, initializer=single_threaded)
    for _ in range(WORKERS):
        pool.submit(lambda: None)  # each submit starts a worker while none is idle
    ready.wait()
    torch.set_num_threads(threads)
    return pool


def stream_units(stream, raster, blocks):
    """One modality's stem, then its blocks, one unit per next(); returns (features, tokens)."""
    features, x = stream.stem(raster)
    x = x + stream.embed
    for index in blocks:
        yield
        x = stream.blocks[index](x)
    return features, stream.norm(x)


def advance(units) -> tuple[bool, object]:
    with torch.inference_mode():
        try:
            next(units)
            return False, None
        except StopIteration as stop:
            return True, stop.value


def run_streams_side_by_side(pool, model, rasters, allocation):
    allocation = normalise_allocation(allocation, model.config.modalities, model.config.layers)
    waiting = deque((name, stream_units(stream, rasters[name], allocation[name]))
                    for name, stream in model.streams.items()
                    if name in rasters and name in allocation)
    running, results = {}, {}
    while waiting or running:
        while waiting and len(running) < WORKERS:
            name, units = waiting.popleft()
            running[pool.submit(advance, units)] = (name, units)
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            name, units = running.pop(future)
            finished, value = future.result()
            if finished:
                results[name] = value
            else:
                waiting.append((name, units))
    return {name: results[name] for name in model.streams if name in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--model")
    args = parser.parse_args()
    torch.set_num_threads(WORKERS)
    pool = start_workers(WORKERS)
    model, _ = load_checkpoint(args.model or DEFAULT_MODEL)
    config = model.config
    inputs = prepare_inputs(World(WorldConfig()).render(2_000_000), config)
    batch = {name: torch.from_numpy(r).unsqueeze(0) for name, r in inputs.rasters.items()}

    def one_after_another(allocation):
        return model(batch, allocation)

    def side_by_side(allocation):
        return model.fuse_streams(run_streams_side_by_side(pool, model, batch, allocation), batch)

    runners = {"one after another": one_after_another, "side by side": side_by_side}
    counts = [config.layers, config.layers // 2, config.layers // 4]
    times = {(k, name): [] for k in counts for name in runners}
    with torch.inference_mode():
        full = {m: config.layers for m in config.modalities}
        reference, parallel = one_after_another(full), side_by_side(full)
        difference = max(float((reference[key] - parallel[key]).abs().max())
                         for key in reference if reference[key].dim() > 0)
        for round_ in range(args.runs + 5):
            for k in counts:
                allocation = {m: k for m in config.modalities}
                for name, runner in runners.items():
                    start = time.perf_counter()
                    decode(runner(allocation), inputs.K, inputs.T_cam_lidar, config)
                    if round_ >= 5:  # warm-up
                        times[(k, name)].append(time.perf_counter() - start)
    pool.shutdown()
    print(f"{args.runs} runs per cell, interleaved; largest output difference {difference:.2e}")
    print(f"{'blocks/modality':>15} {'one after another ms':>21} {'side by side ms':>16} "
          f"{'ratio':>6}")
    for k in counts:
        serial, parallel_ms = (np.median(times[(k, name)]) * 1e3 for name in runners)
        print(f"{k:>15} {serial:>21.2f} {parallel_ms:>16.2f} {parallel_ms / serial:>6.2f}")


if __name__ == "__main__":
    main()
