"""Runs the detector's modality streams side by side on worker threads (inference, batch 1).

At batch size 1 on a CPU the blocks' operations are small: torch's fused attention over 300
tokens runs no faster on a second intra-op thread, and every parallel operation waits for its
slowest thread, which on a shared host is often one that another process holds. Each worker
here runs torch at one intra-op thread, and the streams advance one unit (stem or block) at a
time, the longest-waiting stream first, so three streams keep two workers busy. Outputs are the
same as one stream after another; bench/experiments/bench_parallel_streams.py measures both side
by side.
"""

import threading
from collections import deque
from collections.abc import Generator, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

import torch

Units = Generator[None, None, Any]  # yields between units, returns the stream's result


def drain(units: Units) -> Any:
    """Runs a stream's units in the calling thread; returns its result."""
    while True:
        try:
            next(units)
        except StopIteration as stop:
            return stop.value


class SideBySideStreams:
    """A pool of `workers` threads at one intra-op torch thread each."""

    def __init__(self, workers: int):
        if workers < 2:
            raise ValueError(f"side-by-side streams need at least 2 workers, got {workers}")
        self.workers = workers
        threads = torch.get_num_threads()
        ready = threading.Barrier(workers + 1)

        def single_threaded() -> None:
            torch.set_num_threads(1)
            # torch settles a thread's count at its first query (or parallel op), from the
            # count last set in any thread: query it now, before the caller sets its own back.
            torch.get_num_threads()
            ready.wait()

        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="fusion-stream",
                                        initializer=single_threaded)
        for _ in range(workers):
            self._pool.submit(int)  # a submit starts a worker while none is idle
        ready.wait()
        torch.set_num_threads(threads)

    def run(self, streams: Mapping[str, Units]) -> dict[str, Any]:
        """Each stream's result, in the order given; a stream's exception is raised here."""
        inference = torch.is_inference_mode_enabled()
        waiting, running, results = deque(streams.items()), {}, {}
        try:
            while waiting or running:
                while waiting and len(running) < self.workers:
                    name, units = waiting.popleft()
                    running[self._pool.submit(_advance, units, inference)] = (name, units)
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name, units = running.pop(future)
                    finished, value = future.result()
                    if finished:
                        results[name] = value
                    else:
                        waiting.append((name, units))
        finally:
            wait(running)  # never leave a worker inside a stream when raising
        return {name: results[name] for name in streams}

    def close(self) -> None:
        self._pool.shutdown()


def _advance(units: Units, inference: bool) -> tuple[bool, Any]:
    """One unit of a stream, under the caller's grad mode (thread-local in torch)."""
    with torch.no_grad(), torch.inference_mode(inference):
        try:
            next(units)
            return False, None
        except StopIteration as stop:
            return True, stop.value
