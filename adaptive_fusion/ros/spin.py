"""Spinning a node until Ctrl-C or SIGTERM, and leaving quietly then."""

from __future__ import annotations

import signal
import subprocess
import threading
from contextlib import contextmanager

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

SHUTDOWN_POLL_S = 0.5


def init_for_main(args=None) -> None:
    """rclpy.init for a process that spins with spin_until_shutdown, without rclpy's signal
    handlers: Ctrl-C and SIGTERM raise KeyboardInterrupt on the main thread instead, so the spin
    loop ends between callbacks and tears down in order (inference worker, node, context).
    rclpy's handlers shut the context down from their own thread, which can land while a
    callback is publishing: with a 2 MB point cloud in flight that crashed the publishing
    process (SIGSEGV) once in the large-input test."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def spin_until_shutdown(node, executor=None) -> int:
    """Spin `node` until Ctrl-C, SIGTERM or an external shutdown; a callback that publishes
    while the context is being torn down raises RCLError, which is part of stopping, not a
    failure. Spinning in bounded steps, so that a signal is acted on within a step even when
    no callback wakes the wait (and, with rclpy's own handlers, because a SIGTERM landing while
    the executor starts a wait could leave that wait unwoken, about once in ten stops)."""
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
