"""transport_probe: publish sensor-sized test messages from their own process, so that the
transport between two processes can be checked and timed (the RMW delivers in-process
messages without the network transports, which hides their limits).

    python -m adaptive_fusion.ros.transport_probe \\
        --stream camera/image_raw=rgb8:1280x720@30 --stream lidar/points=cloud:130000@10

Each message's header stamp is its publish time (system clock) so that a receiver on the same
machine reads the latency off it, and its payload is a pattern of the frame index that
`check_payload` verifies. Prints one JSON line {topic: messages sent} at the end.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header

from adaptive_fusion.ros.conversions import (
    image_to_numpy,
    numpy_to_image,
    numpy_to_pointcloud2,
    pointcloud2_to_array,
)

CLOUD_FIELDS = ("x", "y", "z", "intensity")
STREAM = re.compile(
    r"^(?P<topic>[^=]+)=(?P<kind>rgb8|32FC1|cloud):(?P<size>[0-9x]+)@(?P<rate>[0-9.]+)$"
)


class ProbeError(ValueError):
    """A stream description that does not parse."""


@dataclass(frozen=True)
class Stream:
    topic: str
    kind: str  # "rgb8", "32FC1" or "cloud"
    shape: tuple[int, ...]  # (height, width) of an image, (points,) of a cloud
    rate_hz: float

    @classmethod
    def parse(cls, text: str) -> Stream:
        match = STREAM.match(text)
        if match is None:
            raise ProbeError(
                f"stream {text!r} is not TOPIC=KIND:SIZE@HZ, e.g. camera/image_raw=rgb8:640x480@30 "
                f"or lidar/points=cloud:130000@10"
            )
        kind, size = match["kind"], match["size"]
        if kind == "cloud":
            shape = (int(size),)
        else:
            width, _, height = size.partition("x")
            shape = (int(height), int(width))
        return cls(match["topic"], kind, shape, float(match["rate"]))

    @property
    def msg_type(self):
        return PointCloud2 if self.kind == "cloud" else Image

    def payload(self, index: int) -> np.ndarray:
        """Frame `index`'s array: pixel (r, c) of an image is r + c + index (mod 256 for rgb8),
        point i of a cloud is (i / 100, index, 1, i mod 256)."""
        base = self._base()
        if self.kind == "cloud":
            points = base.copy()
            points[:, 1] = index
            return points
        if self.kind == "rgb8":
            return base + np.uint8(index % 256)  # uint8 arithmetic wraps: mod 256
        return base + np.float32(index)

    @functools.cache  # noqa: B019 - a handful of streams per process, each built once
    def _base(self) -> np.ndarray:
        """The frame-0 pattern, built once: the publisher must keep up with 30 Hz of 2.7 MB."""
        if self.kind == "cloud":
            n = self.shape[0]
            points = np.empty((n, 4), np.float32)
            points[:, 0] = np.arange(n, dtype=np.float32) / 100
            points[:, 2] = 1.0
            points[:, 3] = np.arange(n) % 256
            return points
        rows, cols = np.indices(self.shape)
        if self.kind == "rgb8":
            grey = ((rows + cols) % 256).astype(np.uint8)
            return np.repeat(grey[:, :, None], 3, axis=2)
        return (rows + cols).astype(np.float32)

    def message(self, index: int, header: Header):
        array = self.payload(index)
        if self.kind == "cloud":
            return numpy_to_pointcloud2(array, CLOUD_FIELDS, header)
        return numpy_to_image(array, self.kind, header)


def check_payload(msg, index_hint: int | None = None) -> int:
    """The frame index a probe message carries, after checking its pattern at a few places;
    raises ProbeError when the content is not what the probe sent."""
    if isinstance(msg, PointCloud2):
        points = pointcloud2_to_array(msg, CLOUD_FIELDS)
        index = int(points[0, 1])
        picks = np.array([0, len(points) // 2, len(points) - 1])
        expected = np.stack(
            [picks / 100, np.full(3, index), np.ones(3), picks % 256], axis=1
        ).astype(np.float32)
        got = points[picks]
    else:
        pixels = image_to_numpy(msg)
        plane = pixels[..., 0] if pixels.ndim == 3 else pixels
        index = int(plane[0, 0])
        rows = np.array([0, msg.height // 2, msg.height - 1])
        cols = np.array([msg.width - 1, msg.width // 3, 0])
        expected = rows + cols + index
        if msg.encoding == "rgb8":
            expected = expected % 256
        got = plane[rows, cols]
    if not np.allclose(got, expected, atol=1e-3):
        raise ProbeError(f"{type(msg).__name__} content {got} differs from the probe's {expected}")
    return index


def stamp_now(clock_ns: int, frame_id: str) -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(clock_ns, 1_000_000_000)
    return header


def _qos(reliable: bool) -> QoSProfile:
    if not reliable:
        return qos_profile_sensor_data
    return QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def run_probe(
    streams: list[Stream], duration_s: float, wait_s: float, reliable: bool, context=None
) -> dict:
    """Publish every stream at its rate for `duration_s`, after waiting up to `wait_s` for a
    subscriber on each topic, from a node in `context` (rclpy's default when None). Returns
    {topic: messages sent}."""
    node = rclpy.create_node("transport_probe", context=context)
    publishers = [node.create_publisher(s.msg_type, s.topic, _qos(reliable)) for s in streams]
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(p.get_subscription_count() == 0 for p in publishers):
        time.sleep(0.02)
    sent = dict.fromkeys((s.topic for s in streams), 0)
    start = time.monotonic()
    next_due = [start] * len(streams)
    # one thread pacing every stream: publishing is synchronous, so timers would drift alike
    while time.monotonic() - start < duration_s:
        k = int(np.argmin(next_due))
        delay = next_due[k] - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stream = streams[k]
        msg = stream.message(sent[stream.topic], Header())
        msg.header = stamp_now(time.time_ns(), "probe")  # stamped after building: send time
        publishers[k].publish(msg)
        sent[stream.topic] += 1
        next_due[k] += 1.0 / stream.rate_hz
    time.sleep(0.3)  # let the last samples leave before the participant goes
    node.destroy_node()
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", action="append", required=True, help="TOPIC=KIND:SIZE@HZ")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of publishing")
    parser.add_argument(
        "--wait", type=float, default=10.0, help="seconds to wait for subscribers first"
    )
    parser.add_argument(
        "--reliable", action="store_true", help="reliable QoS (default: best effort)"
    )
    args = parser.parse_args(argv)
    try:
        streams = [Stream.parse(text) for text in args.stream]
    except ProbeError as error:
        parser.error(str(error))
    rclpy.init()
    try:
        sent = run_probe(streams, args.duration, args.wait, args.reliable)
    finally:
        rclpy.shutdown()
    print(json.dumps(sent), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
