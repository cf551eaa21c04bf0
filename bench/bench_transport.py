"""Transport latency of real sensor sizes: median and p95 from publish to the subscriber's
callback, between two processes with the shipped Fast DDS profile, beside the same in one
process (where the RMW skips the network transports), so that fusion_node's own overhead can be
read against the transport's. The last columns run the 640x480 and 1280x720 rgb8 images
between two processes that both lack the profile: the 512 KiB cliff.

    .venv/bin/python bench/bench_transport.py
    .venv/bin/python bench/bench_transport.py --seconds 4 --json out.json

Publisher: adaptive_fusion.ros.transport_probe (stamps each message at publish time, system
clock); subscriber: sensor-data QoS, latency = arrival time - stamp, content checked. Images
at 30 Hz, the 64-beam 130k-point cloud at 10 Hz.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adaptive_fusion.ros import transport  # noqa: E402

SIZES = (
    "camera/image_raw=rgb8:640x480@30",
    "camera/image_raw=rgb8:1280x720@30",
    "depth/image_raw=32FC1:640x480@30",
    "depth/image_raw=32FC1:1280x720@30",
    "lidar/points=cloud:130000@10",  # 64 beams x 2048 azimuth steps
)
CLIFF_SIZES = SIZES[:2]
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))


def receive(stream_text: str, seconds: float, publish) -> dict:
    """Subscribe to the stream, run `publish(context)` (returns when done) and collect the
    latencies of what arrives."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data

    from adaptive_fusion.ros.transport_probe import Stream, check_payload

    stream = Stream.parse(stream_text)
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("bench_receiver", context=context)
    latencies_ms, nbytes = [], [0]

    def on_message(msg):
        latencies_ms.append((time.time_ns() - _stamp_ns(msg)) / 1e6)
        check_payload(msg)
        nbytes[0] = len(msg.data)

    node.create_subscription(stream.msg_type, stream.topic, on_message, qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    result = {}
    publisher = threading.Thread(target=lambda: result.update(sent=publish(context)))
    publisher.start()
    while publisher.is_alive():
        executor.spin_once(timeout_sec=0.01)
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.01)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)
    lat = np.array(latencies_ms)
    return {
        "stream": stream_text,
        "bytes": nbytes[0],
        "sent": result["sent"],
        "received": len(lat),
        "median_ms": float(np.median(lat)) if len(lat) else None,
        "p95_ms": float(np.percentile(lat, 95)) if len(lat) else None,
    }


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def cross_process(stream_text: str, seconds: float, env: dict) -> dict:
    def publish(context):
        command = [sys.executable, "-m", "adaptive_fusion.ros.transport_probe",
                   "--stream", stream_text, "--duration", str(seconds)]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        return next(iter(json.loads(done.stdout).values()))

    return receive(stream_text, seconds, publish)


def in_process(stream_text: str, seconds: float) -> dict:
    from adaptive_fusion.ros.transport_probe import Stream, run_probe

    def publish(context):
        sent = run_probe([Stream.parse(stream_text)], seconds, 10.0, False, context)
        return next(iter(sent.values()))

    return receive(stream_text, seconds, publish)


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="publishing time per row")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--no-profile", action="store_true",
                        help="(internal) the cliff rows: this process and the publisher "
                        "without the profile")  # fmt: skip
    args = parser.parse_args()
    bare_env = {k: v for k, v in os.environ.items() if k != transport.PROFILE_VARIABLE}
    if args.no_profile:
        os.environ.pop(transport.PROFILE_VARIABLE, None)
        rows = [cross_process(text, args.seconds, bare_env) for text in CLIFF_SIZES]
        print(json.dumps(rows))
        return 0

    profile = transport.use_profile()
    env = transport.profile_environment()
    print(f"{transport.rmw_implementation()}, profile {profile}, {args.seconds:g} s per row")
    bare = subprocess.run(
        [sys.executable, __file__, "--no-profile", "--seconds", str(args.seconds)],
        env=bare_env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    cliff = {row["stream"]: row for row in json.loads(bare.stdout.splitlines()[-1])}
    rows = []
    header = ("message", "bytes", "in-process ms", "cross-process ms", "delivered",
              "no profile: delivered")  # fmt: skip
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for text in SIZES:
        inside = in_process(text, args.seconds)
        across = cross_process(text, args.seconds, env)
        without = cliff.get(text)
        rows.append({"stream": text, "in_process": inside, "cross_process": across,
                     "no_profile": without})  # fmt: skip
        name = text.split("=", 1)[1].rsplit("@", 1)[0]
        print(" | ".join((
            f"{name} @{text.rsplit('@', 1)[1]} Hz",
            str(across["bytes"] or inside["bytes"]),
            f"{_ms(inside['median_ms'])} (p95 {_ms(inside['p95_ms'])})",
            f"{_ms(across['median_ms'])} (p95 {_ms(across['p95_ms'])})",
            f"{across['received']}/{across['sent']}",
            "-" if without is None else f"{without['received']}/{without['sent']}",
        )), flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
