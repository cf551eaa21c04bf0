"""fusion_node end to end over DDS: last sensor message published -> detections received, at
several compute budgets, beside the pipeline's own time on the same frames (the difference is
what the node adds: transport both ways, decoding, synchronizing, the hand-over to the worker,
publishing), the same at real sensor sizes (640x480 and 1280x720 camera and depth, a 64-beam
lidar), then a latency budget with and without another process busy on one core.

    .venv/bin/python bench/bench_node.py [--model PATH] [--frames 30] [--threads 2]
        [--streams auto|one_after_another|side_by_side]

Frames are fed closed-loop (the next set is published once the detections for the previous one
arrived), so each latency is one frame's, without queueing behind the previous one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
import torch  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from vision_msgs.msg import Detection3DArray  # noqa: E402

from adaptive_fusion.model.checkpoint import (  # noqa: E402
    DEFAULT_MODEL,
    load_checkpoint,
    save_checkpoint,
)
from adaptive_fusion.model.config import ModelConfig  # noqa: E402
from adaptive_fusion.model.detector import AdaptiveFusionDetector  # noqa: E402
from adaptive_fusion.policies.registry import make_policy  # noqa: E402
from adaptive_fusion.ros.conversions import numpy_to_image, numpy_to_pointcloud2  # noqa: E402
from adaptive_fusion.ros.fusion_node import FusionNode  # noqa: E402
from adaptive_fusion.ros.qos import SENSOR_QOS  # noqa: E402
from adaptive_fusion.ros.spin import spinning  # noqa: E402
from adaptive_fusion.runtime import FusionPipeline, SensorFrame  # noqa: E402
from adaptive_fusion.runtime.scheduling import STREAM_SCHEDULING  # noqa: E402
from adaptive_fusion.sim import World, WorldConfig  # noqa: E402
from adaptive_fusion.sim.load import start_busy_core  # noqa: E402
from adaptive_fusion.sim.rig import fusion_node_parameters  # noqa: E402
from adaptive_fusion.sim.sensors_node import camera_info_msg  # noqa: E402

# a Velodyne HDL-64E: 64 beams from +2 to -24.9 degrees, 2048 points per beam and turn (~120k)
HDL64 = dict(lidar_beams=64, lidar_elevation_min_deg=-24.9, lidar_elevation_max_deg=2.0,
             lidar_azimuth_steps=2048)  # fmt: skip
REAL_SIZES = ((640, 480), (1280, 720))


class Feeder:
    """Publishes one synchronized camera/depth/lidar set at a time and waits for its detections."""

    def __init__(self, context, world: World, seeds):
        self.node = rclpy.create_node("bench_feeder", context=context)
        self.use(world, seeds)
        self.image = self.node.create_publisher(Image, "camera/image_raw", SENSOR_QOS)
        self.depth = self.node.create_publisher(Image, "depth/image_raw", SENSOR_QOS)
        self.cloud = self.node.create_publisher(PointCloud2, "lidar/points", SENSOR_QOS)
        self.camera_info = self.node.create_publisher(CameraInfo, "camera/camera_info", SENSOR_QOS)
        self.arrived: dict[int, float] = {}
        self.event = threading.Event()
        self.node.create_subscription(Detection3DArray, "detections", self._on_detections, 10)

    def use(self, world: World, seeds) -> None:
        """Feed frames of `world` (its camera_info goes with every set)."""
        self.frames = [world.render(seed) for seed in seeds]
        self.info = camera_info_msg(world, Header())

    def _on_detections(self, msg: Detection3DArray) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self.arrived[stamp] = time.perf_counter()
        self.event.set()

    def one(self, index: int, timeout: float = 10.0) -> float | None:
        """Publish frame `index` stamped now; ms from its last message out to detections in."""
        frames = self.frames[index % len(self.frames)]
        header = Header(frame_id="camera_optical_frame")
        header.stamp = self.node.get_clock().now().to_msg()
        stamp = header.stamp.sec * 10**9 + header.stamp.nanosec
        lidar_header = Header(stamp=header.stamp, frame_id="lidar")
        messages = (
            numpy_to_image(frames.image, "rgb8", header),
            numpy_to_image(frames.depth, "32FC1", header),
            numpy_to_pointcloud2(frames.points, ("x", "y", "z", "intensity"), lidar_header),
        )
        self.info.header = header
        self.camera_info.publish(self.info)
        self.event.clear()
        for publisher, msg in zip((self.image, self.depth, self.cloud), messages, strict=True):
            publisher.publish(msg)
        sent = time.perf_counter()
        deadline = sent + timeout
        while stamp not in self.arrived and time.perf_counter() < deadline:
            self.event.wait(0.05)
        return None if stamp not in self.arrived else 1e3 * (self.arrived[stamp] - sent)


def pipeline_ms(pipeline: FusionPipeline, frames, budget: float, latency_ms: float = 0.0):
    times, blocks = [], []
    for frame in frames:
        sensor = SensorFrame(frame.image, frame.depth, frame.points, frame.calib, frame.lidar)
        result = pipeline.run(sensor, budget, latency_ms)
        times.append(result.timings_ms["total"])
        blocks.append(result.budget.total_blocks)
    return np.array(times), np.array(blocks)


def node_and_pipeline(feeder: Feeder, pipeline: FusionPipeline, budget: float, count: int):
    """End-to-end ms through the node and the pipeline's own ms on the feeder's frames, the
    blocks run, and the median difference (what the node adds)."""
    e2e = [feeder.one(k) for k in range(count)]
    frames = (feeder.frames * count)[:count]
    alone, blocks = pipeline_ms(pipeline, frames, budget)
    overhead = np.nanmedian([e for e in e2e if e is not None]) - np.median(alone)
    return e2e, alone, blocks, overhead


def percentiles(values) -> str:
    values = np.asarray([v for v in values if v is not None])
    if not len(values):
        return "    -       -"
    return f"{np.percentile(values, 50):7.1f} {np.percentile(values, 95):7.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the packaged one, "
                        "else a random-init model of the default architecture)")  # fmt: skip
    parser.add_argument("--frames", type=int, default=30, help="sets per row")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--streams", choices=STREAM_SCHEDULING, default="auto",
                        help="the node's stream_scheduling (and the pipeline's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model_path = args.model
    if model_path is None and DEFAULT_MODEL.is_file():
        model_path = str(DEFAULT_MODEL)
    if model_path is None:
        torch.manual_seed(0)
        config = ModelConfig(layers=8)  # the architecture of config/training/default.yaml
        model_path = str(Path(tempfile.mkdtemp()) / "random_default")
        save_checkpoint(AdaptiveFusionDetector(config), model_path, {})
        print("no packaged model: a random-init model of the default architecture (timing only)")
    world = World()
    frames = [world.render(seed) for seed in range(5)]

    context = Context()
    rclpy.init(context=context)
    node = FusionNode(
        context=context,
        parameter_overrides=[
            *(Parameter(k, value=v) for k, v in fusion_node_parameters(WorldConfig()).items()),
            Parameter("model_path", value=model_path),
            Parameter("threads", value=args.threads),
            Parameter("stream_scheduling", value=args.streams),
            Parameter("sensor_timeout", value=30.0),
        ],
    )
    feeder = Feeder(context, world, range(5))
    with spinning(context, (node, feeder.node)):
        measure(node, feeder, model_path, frames, args)
    node.trigger_deactivate()
    node.trigger_cleanup()
    rclpy.shutdown(context=context)
    return 0


def measure(node, feeder, model_path, frames, args) -> None:
    """Print the two tables, with the node spinning."""
    node.trigger_configure()
    node.trigger_activate()
    for k in range(5):  # discovery and warm-up
        feeder.one(k)
    model, _ = load_checkpoint(model_path)
    layers = model.config.layers
    pipeline = FusionPipeline(model, make_policy("quality_weighted", model),
                              streams=args.streams)
    pipeline_ms(pipeline, frames[:2], 1.0)  # warm-up

    print(f"\nend to end over DDS, {args.frames} sets per row, torch threads {args.threads}, "
          f"streams {args.streams}")
    print("budget  blocks | e2e p50   p95 | pipeline p50  p95 | node overhead p50 (ms)")
    for budget in (1.0, 0.5, 0.25):
        node.set_parameters([Parameter("compute_budget", value=budget)])
        e2e, alone, blocks, overhead = node_and_pipeline(feeder, pipeline, budget, args.frames)
        print(f"{budget:6.2f}  {int(np.median(blocks)):3d}/{3 * layers:<3d}| {percentiles(e2e)} "
              f"|      {percentiles(alone)} | {overhead:8.1f}")  # fmt: skip

    node.set_parameters([Parameter("compute_budget", value=1.0)])
    print("\nreal sizes, budget 1, 64-beam lidar (the model sees 320x240: the node resizes)")
    print("camera     points | e2e p50   p95 | pipeline p50  p95 | node overhead p50 (ms)")
    for width, height in REAL_SIZES:
        world = World(WorldConfig(camera_width=width, camera_height=height, **HDL64))
        feeder.use(world, range(3))
        for k in range(3):  # the node takes the new camera_info; warm-up
            feeder.one(k)
        e2e, alone, _, overhead = node_and_pipeline(feeder, pipeline, 1.0, args.frames)
        points = int(np.median([len(f.points) for f in feeder.frames]))
        print(f"{width:4d}x{height:<4d} {points:7d} | {percentiles(e2e)} |      "
              f"{percentiles(alone)} | {overhead:8.1f}")  # fmt: skip
    feeder.use(World(), range(5))
    feeder.one(0)

    full, _ = pipeline_ms(pipeline, frames * 2, 1.0)
    deadline = round(0.6 * float(np.median(full)), 1)
    print(f"\nlatency budget {deadline} ms (60% of the full model's pipeline time), node e2e")
    print("load          blocks p50 | e2e p50   p95 | pipeline p95 | met (pipeline <= deadline)")
    node.set_parameters([Parameter("latency_budget_ms", value=deadline)])
    for load in (False, True):
        hog = None
        if load:
            hog = start_busy_core(4.0 + 0.5 * args.frames)
            time.sleep(1.0)
        for k in range(10):  # let the measured block costs follow the new load
            feeder.one(k)
        e2e, totals, blocks = [], [], []
        for k in range(args.frames):
            e2e.append(feeder.one(k))
            result = node.last_result
            totals.append(result.timings_ms["total"])
            blocks.append(result.budget.total_blocks)
        if hog is not None:
            hog.terminate()
            hog.join()
        met = np.mean(np.array(totals) <= deadline)
        label = "one core busy" if load else "idle"
        print(f"{label:13s} {int(np.median(blocks)):6d}     | {percentiles(e2e)} | "
              f"{np.percentile(totals, 95):12.1f} | {100 * met:5.1f}%")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
