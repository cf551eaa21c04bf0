"""Incoming sensor messages -> checked arrays. Every problem is an InputError whose `kind`
names it for the node's counters (malformed, bad_encoding, empty_cloud, future_stamp, ...)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from adaptive_fusion.ros.conversions import (
    MessageFormatError,
    depth_to_metres,
    image_to_numpy,
    pointcloud2_to_xyzi,
)
from adaptive_fusion.runtime.frame import InputError, check_points
from adaptive_fusion.sync import stamp_ns

TO_RGB = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
}


@dataclass
class Decoded:
    """A message's header with its payload as an array; the synchronizer reads the header."""

    header: object
    array: np.ndarray


def decode_camera(msg) -> np.ndarray:
    if msg.encoding not in TO_RGB:
        raise InputError(
            "bad_encoding",
            f"camera encoding {msg.encoding!r} not supported; use one of {', '.join(TO_RGB)}",
        )
    _check_not_empty("camera", msg)
    pixels = _convert(image_to_numpy, msg)
    code = TO_RGB[msg.encoding]
    return np.ascontiguousarray(pixels) if code is None else cv2.cvtColor(pixels, code)


def decode_depth(msg) -> np.ndarray:
    _check_not_empty("depth", msg)
    return _convert(depth_to_metres, msg)


def _check_not_empty(modality: str, msg) -> None:
    if msg.width == 0 or msg.height == 0:
        raise InputError("empty_image", f"{modality} image is {msg.width}x{msg.height}")


def decode_lidar(msg) -> tuple[np.ndarray, int]:
    """The cloud's finite points, and how many were dropped as NaN or infinite (organised clouds
    mark missing returns so; a driver fault can too, so the node counts them)."""
    points, _ = _convert(pointcloud2_to_xyzi, msg)  # non-finite points dropped
    check_points(points)  # nothing left is an empty cloud
    return points, msg.width * msg.height - len(points)


def decode(modality: str, msg) -> tuple[np.ndarray, int]:
    """A sensor message's array and the number of its points dropped as not finite (0 for
    images: their invalid pixels are data, NaN depth means no measurement)."""
    if modality == "lidar":
        return decode_lidar(msg)
    return (decode_camera if modality == "camera" else decode_depth)(msg), 0


def _convert(function, msg):
    try:
        return function(msg)
    except MessageFormatError as error:
        raise InputError("malformed", str(error)) from error


class StampGuard:
    """Rejects stamps of zero, too far in the future of the node's clock, or not after the
    previous accepted stamp of the same input (a bag loop, a driver reset, a reordered
    message)."""

    def __init__(self, max_future_s: float):
        self.max_future_s = max_future_s
        self.last: int | None = None

    def check(self, msg, now_ns: int) -> int:
        stamp = stamp_ns(msg)
        if not stamp:
            raise InputError("zero_stamp", "header.stamp is zero (driver not setting stamps?)")
        if stamp > now_ns + self.max_future_s * 1e9:
            raise InputError(
                "future_stamp",
                f"stamp is {(stamp - now_ns) * 1e-9:.3f} s ahead of the node's clock "
                f"(max_future_stamp {self.max_future_s} s; sim time vs wall time?)",
            )
        if self.last is not None and stamp <= self.last:
            raise InputError(
                "stamp_backwards",
                f"stamp went back by {(self.last - stamp) * 1e-9:.3f} s (bag loop or reordering)",
            )
        return stamp

    def accept(self, stamp: int) -> None:
        self.last = stamp
