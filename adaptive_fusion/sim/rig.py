"""The sensor rig: calibration, beam pattern, and each sensor's rays as a regular grid.

Both sensors are grids of rays from one origin (camera: rows x columns of pixels; lidar: beams x
azimuth steps), so the ray caster only tests a primitive against the rectangle of rays that can
reach it; `RayGrid.windows` finds that rectangle.
"""

from dataclasses import dataclass

import numpy as np

from adaptive_fusion.core.frames import Calibration, LidarModel
from adaptive_fusion.sim.config import WorldConfig

# lidar (x fwd, y left, z up) -> camera optical (x right, y down, z fwd)
LIDAR_TO_OPTICAL = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
CAMERA_NEAR = 0.05  # metres; nothing is rendered closer to the camera


def make_calibration(config: WorldConfig) -> Calibration:
    w, h = config.camera_width, config.camera_height
    f = (w / 2) / np.tan(np.radians(config.camera_hfov_deg) / 2)
    K = np.array([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = LIDAR_TO_OPTICAL
    T[:3, 3] = -LIDAR_TO_OPTICAL @ np.asarray(config.camera_position, dtype=np.float64)
    return Calibration(K=K, width=w, height=h, T_cam_lidar=T)


def make_lidar_model(config: WorldConfig) -> LidarModel:
    elevations = np.linspace(
        config.lidar_elevation_min_deg, config.lidar_elevation_max_deg, config.lidar_beams
    )
    return LidarModel(
        elevations_deg=elevations,
        azimuth_steps=config.lidar_azimuth_steps,
        max_range=config.lidar_max_range,
        min_range=config.lidar_min_range,
    )


def fusion_node_parameters(config: WorldConfig) -> dict[str, object]:
    """The rig as fusion_node's parameters (the node has no default for them: a robot must give
    its own). config/sim_rig.yaml holds the same for the default WorldConfig."""
    return {
        "camera_from_lidar": make_calibration(config).T_cam_lidar.reshape(-1).tolist(),
        "lidar_beams": config.lidar_beams,
        "lidar_elevation_min_deg": config.lidar_elevation_min_deg,
        "lidar_elevation_max_deg": config.lidar_elevation_max_deg,
        "lidar_azimuth_steps": config.lidar_azimuth_steps,
        "lidar_min_range": config.lidar_min_range,
        "lidar_max_range": config.lidar_max_range,
    }


def lidar_azimuths(lidar: LidarModel) -> np.ndarray:
    """Azimuth (radians, from lidar x towards y) of each column: column c is centred on
    -pi + (c + 0.5) * step."""
    step = 2 * np.pi / lidar.azimuth_steps
    return -np.pi + (np.arange(lidar.azimuth_steps) + 0.5) * step


Window = tuple[slice, slice]


@dataclass
class RayGrid:
    """Rays from one origin (lidar frame) laid out as a (rows, cols) grid."""

    origin: np.ndarray  # (3,) float64
    dirs: np.ndarray  # (rows, cols, 3) float32


class CameraGrid(RayGrid):
    """Camera rays scaled so that the ray parameter t is the camera z depth."""

    def __init__(self, calib: Calibration):
        self.calib = calib
        R_lidar_cam = calib.T_cam_lidar[:3, :3].T
        u = np.arange(calib.width) + 0.5
        v = np.arange(calib.height) + 0.5
        uu, vv = np.meshgrid(u, v)
        pix = np.stack([uu, vv, np.ones_like(uu)], axis=-1)
        rays_cam = pix @ np.linalg.inv(calib.K).T
        origin = -R_lidar_cam @ calib.T_cam_lidar[:3, 3]
        super().__init__(origin=origin, dirs=(rays_cam @ R_lidar_cam.T).astype(np.float32))

    def windows(self, corners: np.ndarray) -> list[list[Window]]:
        """Per convex solid given by its 8 corners (P, 8, 3) in the lidar frame, the pixel
        rectangle covering its projection, clipped at the near plane."""
        cam = corners @ self.calib.T_cam_lidar[:3, :3].T + self.calib.T_cam_lidar[:3, 3]
        in_front = cam[..., 2] >= CAMERA_NEAR
        lo = np.full((len(cam), 2), np.inf)
        hi = np.full((len(cam), 2), -np.inf)
        full = in_front.all(axis=1)
        if full.any():
            uv = (cam[full] @ self.calib.K.T)[..., :2] / cam[full][..., 2:3]
            lo[full], hi[full] = uv.min(axis=1), uv.max(axis=1)
        for i in np.flatnonzero(in_front.any(axis=1) & ~full):
            clipped = clip_hull_near(cam[i], BOX_EDGES, CAMERA_NEAR)
            uv = (clipped @ self.calib.K.T)[:, :2] / clipped[:, 2:3]
            lo[i], hi[i] = uv.min(axis=0), uv.max(axis=0)
        size = np.array([self.calib.width, self.calib.height])
        with np.errstate(invalid="ignore"):
            start = np.clip(np.floor(np.nan_to_num(lo, posinf=1e9, neginf=-1e9)), 0, size)
            stop = np.clip(np.ceil(np.nan_to_num(hi, posinf=1e9, neginf=-1e9)), 0, size)
        start, stop = start.astype(int), stop.astype(int)
        return [
            [(slice(r0, r1), slice(c0, c1))] if c0 < c1 and r0 < r1 else []
            for (c0, r0), (c1, r1) in zip(start.tolist(), stop.tolist(), strict=True)
        ]


class LidarGrid(RayGrid):
    """Unit lidar rays, rows = beams (ascending elevation), columns = azimuth steps."""

    def __init__(self, lidar: LidarModel):
        self.lidar = lidar
        self.elevations = np.radians(np.asarray(lidar.elevations_deg, dtype=np.float64))
        az = lidar_azimuths(lidar)
        el = self.elevations[:, None]
        dirs = np.stack(
            [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el) * np.ones_like(az)],
            axis=-1,
        )
        super().__init__(origin=np.zeros(3), dirs=dirs.astype(np.float32))

    def windows(self, corners: np.ndarray, footprint_min_dist: np.ndarray) -> list[list[Window]]:
        """Per vertical prism given by its 8 corners (P, 8, 3), the beam x azimuth rectangles
        (split at the +-pi seam) covering it; footprint_min_dist (P,) is each prism's smallest
        horizontal distance to the lidar, which bounds its elevation extent (corners do not)."""
        dist = np.hypot(corners[..., 0], corners[..., 1])
        z0, z1 = corners[..., 2].min(axis=1), corners[..., 2].max(axis=1)
        near, far = np.maximum(footprint_min_dist, 1e-3), dist.max(axis=1)
        el_hi = np.arctan2(z1, np.where(z1 > 0, near, far))
        el_lo = np.arctan2(z0, np.where(z0 < 0, near, far))
        r0 = np.searchsorted(self.elevations, el_lo, side="left")
        r1 = np.searchsorted(self.elevations, el_hi, side="right")
        az = np.arctan2(corners[..., 1], corners[..., 0])
        centre = np.arctan2(corners[..., 1].mean(axis=1), corners[..., 0].mean(axis=1))
        rel = (az - centre[:, None] + np.pi) % (2 * np.pi) - np.pi
        n = self.lidar.azimuth_steps
        step = 2 * np.pi / n
        c0 = np.floor((centre + rel.min(axis=1) + np.pi) / step - 0.5).astype(int)
        c1 = np.ceil((centre + rel.max(axis=1) + np.pi) / step - 0.5).astype(int) + 1
        surround = (footprint_min_dist <= 0) | (c1 - c0 >= n)  # the lidar is inside the footprint
        c0, c1 = np.where(surround, 0, c0), np.where(surround, n, c1)
        reachable = (dist.min(axis=1) <= self.lidar.max_range) & (r0 < r1)
        windows: list[list[Window]] = []
        for ok, a, b, lo, hi in zip(
            reachable, r0.tolist(), r1.tolist(), c0.tolist(), c1.tolist(), strict=True
        ):
            rows = slice(a, b)
            if not ok:
                windows.append([])
            elif lo < 0:
                windows.append([(rows, slice(lo + n, n)), (rows, slice(0, hi))])
            elif hi > n:
                windows.append([(rows, slice(lo, n)), (rows, slice(0, hi - n))])
            else:
                windows.append([(rows, slice(lo, hi))])
        return windows


# the 12 edges of a box whose corners are ordered bottom 4 then top 4 (see Objects.corners)
BOX_EDGES = np.array(
    [[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]]
)


def clip_hull_near(cam: np.ndarray, edges: np.ndarray, near: float) -> np.ndarray:
    """Points whose projection bounds a convex solid's projection once clipped at z = near: the
    corners in front plus the points where edges cross the near plane."""
    front = cam[:, 2] >= near
    if front.all():
        return cam
    a, b = cam[edges[:, 0]], cam[edges[:, 1]]
    crossing = (a[:, 2] >= near) != (b[:, 2] >= near)
    a, b = a[crossing], b[crossing]
    s = (near - a[:, 2]) / (b[:, 2] - a[:, 2])
    cut = a + s[:, None] * (b - a)
    return np.concatenate([cam[front], cut])
