"""Another process taking a core: what a robot's other software does to fusion_node's latency.
The scenario action `busy_cores` (sim_sensors) and bench_node's loaded rows use it."""

import multiprocessing
import time


def busy_core(seconds: float) -> None:
    """Spin on one core for `seconds` (bounded, so that a forgotten process ends by itself)."""
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1


def start_busy_core(seconds: float) -> multiprocessing.Process:
    """busy_core in a spawned process, started; terminate() and join() it when done."""
    process = multiprocessing.get_context("spawn").Process(target=busy_core, args=(seconds,),
                                                           daemon=True)
    process.start()
    return process
