"""The arrays one fusion step takes, checked before any model code sees them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adaptive_fusion.core.frames import Calibration, LidarModel


class InputError(ValueError):
    """Sensor data the pipeline cannot use; `kind` names the problem for counters."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


SENSOR_ARRAYS = {"camera": "image", "depth": "depth", "lidar": "points"}  # modality -> field


def present(frame) -> tuple[str, ...]:
    """The modalities whose array a SensorFrame or a FrameSet has (None: missing)."""
    return tuple(name for name, field in SENSOR_ARRAYS.items()
                 if getattr(frame, field) is not None)


@dataclass
class SensorFrame:
    """Newest data of each modality (None when the modality is missing), with the geometry.
    Duck-types the FrameSet fields that model.inputs.prepare_inputs reads."""

    image: np.ndarray | None  # (H, W, 3) uint8 RGB
    depth: np.ndarray | None  # (H, W) float32 metres, NaN invalid
    points: np.ndarray | None  # (N, 4) float32 x, y, z, intensity, lidar frame
    calib: Calibration
    lidar: LidarModel

    def present(self) -> tuple[str, ...]:
        return present(self)


def check_image(image: np.ndarray, calib: Calibration) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(
            "bad_encoding", f"camera image must be (H, W, 3) uint8, got {image.dtype} {image.shape}"
        )
    if image.shape[:2] != (calib.height, calib.width):
        raise InputError(
            "size_mismatch",
            f"camera image is {image.shape[1]}x{image.shape[0]} but camera_info says "
            f"{calib.width}x{calib.height}",
        )


def check_depth(depth: np.ndarray, calib: Calibration) -> None:
    if depth.ndim != 2 or depth.shape != (calib.height, calib.width):
        raise InputError(
            "size_mismatch",
            f"depth image has shape {depth.shape}, expected the camera's "
            f"({calib.height}, {calib.width}) (depth registered to the camera)",
        )


def check_points(points: np.ndarray) -> None:
    if points.ndim != 2 or points.shape[1] != 4:
        raise InputError("bad_cloud", f"lidar points must be (N, 4), got {points.shape}")
    if len(points) == 0:
        raise InputError("empty_cloud", "lidar cloud has no finite point")
    if not np.isfinite(points).all():
        raise InputError("non_finite", "lidar cloud has NaN or infinite values")


def check_frame(frame: SensorFrame) -> None:
    if frame.image is not None:
        check_image(frame.image, frame.calib)
    if frame.depth is not None:
        check_depth(frame.depth, frame.calib)
    if frame.points is not None:
        check_points(frame.points)
