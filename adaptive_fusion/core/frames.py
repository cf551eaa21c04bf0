"""The data every part of the package exchanges: one synchronised set of camera, depth and lidar
frames with its calibration, the lidar's beam pattern and the ground truth.

Conventions (shared by the renderer, the dataset files, the detector and the ROS layer):
- Lidar frame (REP 103): x forward, y left, z up; the lidar sits at the origin.
- Camera optical frame: z forward, x right, y down. `Calibration.T_cam_lidar` maps lidar-frame
  points to it.
- Image coordinates span [0, W] x [0, H]: pixel (row i, column j) covers [j, j+1) x [i, i+1), so a
  point projecting to (u, v) lands in pixel (floor(v), floor(u)); boxes2d use the same coordinates.
- Depth is the camera z coordinate (metres along the optical axis), NaN where invalid.
- Ground-truth boxes: centre of the 3D box, sizes (length along the heading, width, height), yaw
  about lidar z measured from lidar x.
"""

from dataclasses import dataclass

import numpy as np

MODALITIES = ("camera", "depth", "lidar")
CLASSES = ("car", "pedestrian", "cyclist")
# The corruption kinds per modality: the simulator renders them, the controller predicts them.
CORRUPTIONS: dict[str, tuple[str, ...]] = {
    "camera": ("noise", "low_light", "motion_blur", "fog", "occlusion", "dead"),
    "depth": ("noise", "holes", "quantization", "dead"),
    "lidar": ("dropout", "beam_loss", "range_noise", "spurious", "dead"),
}


@dataclass
class Calibration:
    """Pinhole intrinsics and the lidar->camera extrinsic."""

    K: np.ndarray  # (3, 3) float64
    width: int
    height: int
    T_cam_lidar: np.ndarray  # (4, 4) float64

    def lidar_to_camera(self, points: np.ndarray) -> np.ndarray:
        """(N, >=3) lidar-frame points -> (N, 3) camera-frame points."""
        xyz = np.asarray(points, dtype=np.float64)[:, :3]
        return xyz @ self.T_cam_lidar[:3, :3].T + self.T_cam_lidar[:3, 3]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, >=3) lidar-frame points -> ((N, 2) pixel coordinates (u, v), (N,) camera depth).

        Points behind the camera get NaN coordinates; depth is returned for all of them."""
        cam = self.lidar_to_camera(points)
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam @ self.K.T)[:, :2] / z[:, None]
        uv[z <= 0] = np.nan
        return uv, z


@dataclass
class LidarModel:
    """The spinning lidar's beam pattern; quality measures compare point density against it."""

    elevations_deg: np.ndarray  # (n_beams,) float, ascending
    azimuth_steps: int
    max_range: float
    min_range: float

    @property
    def n_beams(self) -> int:
        return int(len(self.elevations_deg))

    @property
    def n_rays(self) -> int:
        return self.n_beams * self.azimuth_steps


@dataclass
class Objects:
    """Ground truth for N objects, lidar frame."""

    labels: np.ndarray  # (N,) int64, index into CLASSES
    centers: np.ndarray  # (N, 3) float32, centre of the 3D box
    sizes: np.ndarray  # (N, 3) float32, (length, width, height)
    yaws: np.ndarray  # (N,) float32, about lidar z
    boxes2d: np.ndarray  # (N, 4) float32, (x1, y1, x2, y2) image coordinates
    visibility: np.ndarray  # (N,) float32 in [0, 1], unoccluded fraction of the projected area

    def __len__(self) -> int:
        return int(len(self.labels))

    @classmethod
    def empty(cls) -> "Objects":
        return cls(
            labels=np.zeros(0, np.int64),
            centers=np.zeros((0, 3), np.float32),
            sizes=np.zeros((0, 3), np.float32),
            yaws=np.zeros(0, np.float32),
            boxes2d=np.zeros((0, 4), np.float32),
            visibility=np.zeros(0, np.float32),
        )

    def corners(self) -> np.ndarray:
        """(N, 8, 3) box corners in the lidar frame (bottom four first)."""
        signs = np.array(
            [[sx, sy, sz] for sz in (-1, 1) for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1))],
            dtype=np.float64,
        )
        local = signs[None] * (self.sizes.astype(np.float64)[:, None, :] / 2)
        cos, sin = np.cos(self.yaws.astype(np.float64)), np.sin(self.yaws.astype(np.float64))
        x = local[..., 0] * cos[:, None] - local[..., 1] * sin[:, None]
        y = local[..., 0] * sin[:, None] + local[..., 1] * cos[:, None]
        rotated = np.stack([x, y, local[..., 2]], axis=-1)
        return rotated + self.centers.astype(np.float64)[:, None, :]

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """(N_objects, N_points) bool: which points lie inside which box (grown by margin)."""
        xyz = np.asarray(points, dtype=np.float64)[:, :3]
        rel = xyz[None, :, :] - self.centers.astype(np.float64)[:, None, :]
        cos = np.cos(self.yaws.astype(np.float64))[:, None]
        sin = np.sin(self.yaws.astype(np.float64))[:, None]
        along = rel[..., 0] * cos + rel[..., 1] * sin
        across = -rel[..., 0] * sin + rel[..., 1] * cos
        half = self.sizes.astype(np.float64)[:, None, :] / 2 + margin
        return (
            (np.abs(along) <= half[..., 0])
            & (np.abs(across) <= half[..., 1])
            & (np.abs(rel[..., 2]) <= half[..., 2])
        )


@dataclass
class FrameSet:
    """One synchronised capture of all three sensors with its ground truth."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    depth: np.ndarray  # (H, W) float32 metres, NaN where invalid
    points: np.ndarray  # (N, 4) float32 x, y, z, intensity in the lidar frame
    calib: Calibration
    lidar: LidarModel
    objects: Objects
