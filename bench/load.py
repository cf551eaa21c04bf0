"""Load for benchmarks that compare behaviour on a shared host."""

import multiprocessing
import time


def busy_core(seconds: float) -> None:
    """Another process taking one core (bounded in time)."""
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1


def start_busy_core(seconds: float) -> multiprocessing.Process:
    """busy_core in a spawned process, started; terminate() and join() it when done."""
    process = multiprocessing.get_context("spawn").Process(target=busy_core, args=(seconds,))
    process.start()
    return process
