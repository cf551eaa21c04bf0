"""Record ROS topics to a rosbag2 (MCAP by default, or sqlite3) that ros2 bag and Foxglove read.

Records the package's topics unless --topics names others: the sensor inputs, the budget, the
detections, markers, label info, /diagnostics, the ground truth and fusion_node's debug image.
Each topic is recorded from its first publisher on; messages are stored as delivered (CDR).
"""

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="bag folder to create (must not exist)")
    parser.add_argument("--topics", help="comma list of topics (default: the package's)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to record")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")


def run(args: argparse.Namespace) -> int:
    if args.duration <= 0:
        raise SystemExit("--duration must be > 0")
    from adaptive_fusion.ros import transport
    from adaptive_fusion.ros.topics import recorded_topics

    topics = [t for t in (args.topics or "").split(",") if t] or recorded_topics()
    transport.use_profile()  # large images and clouds between processes
    counts = record(topics, args.out, args.duration, args.storage)
    print(json.dumps(counts, indent=2) if args.json else
          "\n".join(f"{n:8d}  {t}" for t, n in counts.items()) + f"\nbag: {args.out}")
    return 0


def record(topics: list[str], out: str, duration: float, storage: str) -> dict[str, int]:
    import time

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from adaptive_fusion.ros.bags import Recorder

    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("adaptive_fusion_recorder", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    recorder = Recorder(node, topics, out, storage)
    try:
        end = time.monotonic() + duration
        while (left := end - time.monotonic()) > 0:
            executor.spin_once(timeout_sec=min(left, 0.05))
    finally:
        recorder.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    return recorder.counts
