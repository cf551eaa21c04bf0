"""Detections, ground truth, labels and RViz markers as ROS messages.

Class ids follow vision_msgs' convention: `class_id` is the class index as a string, and the
LabelInfo message (latched, beside the detections) maps indices to names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from std_msgs.msg import ColorRGBA, Header
from vision_msgs.msg import (
    BoundingBox3D,
    Detection3D,
    Detection3DArray,
    LabelInfo,
    ObjectHypothesisWithPose,
    VisionClass,
)
from visualization_msgs.msg import Marker, MarkerArray

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.core.frames import Objects

CLASS_COLOURS = ((0.1, 0.6, 1.0), (1.0, 0.3, 0.2), (0.2, 0.9, 0.3))  # car, pedestrian, cyclist


def yaw_quaternion(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=float(np.sin(yaw / 2)), w=float(np.cos(yaw / 2)))


def box_pose(center, yaw: float) -> Pose:
    x, y, z = (float(v) for v in center)
    return Pose(position=Point(x=x, y=y, z=z), orientation=yaw_quaternion(float(yaw)))


def boxes_to_detections(boxes: Boxes3D, header: Header) -> Detection3DArray:
    detections = []
    for k in range(len(boxes)):
        pose = box_pose(boxes.centers[k], boxes.yaws[k])
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = str(int(boxes.labels[k]))
        hypothesis.hypothesis.score = float(boxes.scores[k])
        hypothesis.pose.pose = pose
        length, width, height = (float(v) for v in boxes.sizes[k])
        detections.append(
            Detection3D(
                header=header,
                results=[hypothesis],
                bbox=BoundingBox3D(center=pose, size=Vector3(x=length, y=width, z=height)),
                id=str(k),
            )
        )
    return Detection3DArray(header=header, detections=detections)


def objects_to_boxes(objects: Objects) -> Boxes3D:
    return Boxes3D(
        labels=objects.labels,
        centers=objects.centers,
        sizes=objects.sizes,
        yaws=objects.yaws,
        scores=np.ones(len(objects), np.float32),
    )


def detections_to_boxes(msg: Detection3DArray) -> Boxes3D:
    """Back from a Detection3DArray (first hypothesis of each detection)."""
    if not msg.detections:
        return Boxes3D.empty()
    rows = []
    for detection in msg.detections:
        hypothesis = detection.results[0].hypothesis
        centre, size = detection.bbox.center.position, detection.bbox.size
        q = detection.bbox.center.orientation
        yaw = 2 * np.arctan2(q.z, q.w)
        rows.append(
            (
                int(hypothesis.class_id),
                centre.x,
                centre.y,
                centre.z,
                size.x,
                size.y,
                size.z,
                yaw,
                hypothesis.score,
            )
        )
    table = np.array(rows, np.float64)
    return Boxes3D(
        labels=table[:, 0].astype(np.int64),
        centers=table[:, 1:4].astype(np.float32),
        sizes=table[:, 4:7].astype(np.float32),
        yaws=table[:, 7].astype(np.float32),
        scores=table[:, 8].astype(np.float32),
    )


def label_info(classes: Sequence[str], threshold: float, header: Header) -> LabelInfo:
    return LabelInfo(
        header=header,
        class_map=[VisionClass(class_id=k, class_name=name) for k, name in enumerate(classes)],
        threshold=float(threshold),
    )


def boxes_to_markers(
    boxes: Boxes3D, header: Header, classes: Sequence[str], namespace: str = "detections"
) -> MarkerArray:
    """DELETEALL first (so boxes of the previous frame vanish), then a CUBE and a label per box."""
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for k in range(len(boxes)):
        r, g, b = CLASS_COLOURS[int(boxes.labels[k]) % len(CLASS_COLOURS)]
        pose = box_pose(boxes.centers[k], boxes.yaws[k])
        length, width, height = (float(v) for v in boxes.sizes[k])
        markers.append(
            Marker(
                header=header,
                ns=namespace,
                id=2 * k,
                type=Marker.CUBE,
                action=Marker.ADD,
                pose=pose,
                scale=Vector3(x=length, y=width, z=height),
                color=ColorRGBA(r=r, g=g, b=b, a=0.4),
            )
        )
        text_pose = box_pose(boxes.centers[k] + np.array([0, 0, height / 2 + 0.4]), 0.0)
        markers.append(
            Marker(
                header=header,
                ns=namespace + "_labels",
                id=2 * k + 1,
                type=Marker.TEXT_VIEW_FACING,
                action=Marker.ADD,
                pose=text_pose,
                scale=Vector3(x=0.0, y=0.0, z=0.6),
                color=ColorRGBA(r=r, g=g, b=b, a=1.0),
                text=f"{classes[int(boxes.labels[k])]} {float(boxes.scores[k]):.2f}",
            )
        )
    return MarkerArray(markers=markers)
