"""Spinning a node until Ctrl-C or SIGTERM, and leaving quietly then."""

from __future__ import annotations

import signal
import subprocess
import threading
from contextlib import contextmanager

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

SHUTDOWN_POLL_S = 0.5


def spin_until_shutdown(node, executor=None) -> int:
    """Spin `node` until shutdown; a callback that publishes while the context is being torn
    down by the signal raises RCLError, which is part of stopping, not a failure. Spinning in
    bounded steps, because a SIGTERM landing while the executor starts a wait can leave that
    wait unwoken (seen here about once in ten stops): the loop then notices the shut-down
    context within a step."""
    executor = executor or SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok():
            executor.spin_once(timeout_sec=SHUTDOWN_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if rclpy.ok():
            raise
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


@contextmanager
def spinning(context, nodes):
    """Spin `nodes` on a background thread for the `with` block (for tests, benches and tools
    that drive nodes from the main thread). Single-threaded on purpose: rclpy 9.1.2's
    MultiThreadedExecutor triggers its guard condition from several pool threads at once, and
    about one run in four its spin thread dies early with "cannot use Destroyable because
    destruction was requested" (seen here with sim_sensors and a probe node). The nodes do their
    heavy work off the executor thread anyway (fusion_node's inference worker)."""
    executor = SingleThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield executor
    finally:
        executor.shutdown()
        spinner.join(timeout=10)


def interrupt(*processes: subprocess.Popen, timeout: float = 20.0) -> list[tuple]:
    """Stop child processes the way Ctrl-C does (SIGINT is rclpy's orderly shutdown), all at
    once, and kill any that has not exited after `timeout` s (a loaded machine can stall one).
    Returns each process's (stdout, stderr) as `communicate` gives them."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=timeout))
        except subprocess.TimeoutExpired:
            process.kill()
            outputs.append(process.communicate())
    return outputs
