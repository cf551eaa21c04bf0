"""Scoring detections that were published, not computed here: a recording's detections against
its ground truth (a rosbag2 from `adaptive-fusion record`, or the demo's live topics), paired by
stamp, with the package's metric (metrics.py)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rclpy.serialization import deserialize_message
from vision_msgs.msg import Detection3DArray

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.lab.evaluation.metrics import DetectionMetrics, evaluate_detections
from adaptive_fusion.ros.bags import BagError, read_messages
from adaptive_fusion.ros.messages import detections_to_boxes
from adaptive_fusion.sync import stamp_ns

MATCH_SLOP_NS = 60_000_000  # detections pair with the ground truth stamped nearest, within this


def nearest_stamp(stamps: Sequence[int], stamp: int, slop_ns: int = MATCH_SLOP_NS) -> int | None:
    """The stamp in sorted `stamps` nearest to `stamp`, if within `slop_ns`."""
    k = bisect_left(stamps, stamp)
    candidates = stamps[max(k - 1, 0) : k + 1]
    if not candidates:
        return None
    nearest = min(candidates, key=lambda s: abs(s - stamp))
    return nearest if abs(nearest - stamp) <= slop_ns else None


@dataclass
class BagScore:
    metrics: DetectionMetrics
    frames: int  # detection messages paired with ground truth
    unpaired: int  # detection messages with no ground truth within the slop


def score_bag(
    path: str | Path, classes: Sequence[str], detections_topic: str = "/detections",
    truth_topic: str = "/ground_truth", slop_ns: int = MATCH_SLOP_NS,
) -> BagScore:
    """mAP of a bag's Detection3DArray messages on `detections_topic` against those on
    `truth_topic`, each detection message paired with the ground truth stamped nearest; BagError
    when none pairs."""
    detections, truth, topics = [], {}, set()
    for topic, _, _, data in read_messages(path):
        topics.add(topic)
        if topic in (detections_topic, truth_topic):
            msg = deserialize_message(data, Detection3DArray)
            if topic == truth_topic:
                truth[stamp_ns(msg)] = detections_to_boxes(msg)
            else:
                detections.append(msg)
    stamps = sorted(truth)
    predictions: list[Boxes3D] = []
    truths: list[Boxes3D] = []
    for msg in detections:
        nearest = nearest_stamp(stamps, stamp_ns(msg), slop_ns)
        if nearest is not None:
            predictions.append(detections_to_boxes(msg))
            truths.append(truth[nearest])
    if not predictions:
        raise BagError(f"{path}: no message on {detections_topic} has one on {truth_topic} within "
                       f"{slop_ns / 1e6:g} ms ({len(detections)} detection and {len(truth)} "
                       f"ground-truth messages; topics: {', '.join(sorted(topics))})")
    metrics = evaluate_detections(predictions, truths, classes)
    return BagScore(metrics, len(predictions), len(detections) - len(predictions))
