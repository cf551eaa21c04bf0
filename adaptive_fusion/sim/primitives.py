"""Solid primitives the world is built from: yaw-rotated boxes and vertical cylinders, with their
material (colour, lidar reflectivity) and the labelled object they belong to (-1: distractor)."""

from dataclasses import dataclass, field

import numpy as np

BOX, CYLINDER = 0, 1

_CORNER_SIGNS = np.array(
    [[sx, sy, sz] for sz in (-1, 1) for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1))],
    dtype=np.float64,
)


@dataclass
class Primitives:
    """P primitives as parallel arrays. Boxes: centre, half sizes along (heading, side, up), yaw.
    Cylinders: centre, half sizes (radius, radius, half height); yaw unused."""

    kind: np.ndarray  # (P,) int8
    center: np.ndarray  # (P, 3) float64
    half: np.ndarray  # (P, 3) float64
    yaw: np.ndarray  # (P,) float64
    albedo: np.ndarray  # (P, 3) float32 RGB in [0, 1]
    reflectivity: np.ndarray  # (P,) float32 lidar reflectivity in [0, 1]
    owner: np.ndarray  # (P,) int64 object index, -1 for distractors

    def __post_init__(self):
        # float32 copies for the per-pixel normal computation
        self.cos_yaw = np.cos(self.yaw).astype(np.float32)
        self.sin_yaw = np.sin(self.yaw).astype(np.float32)
        self.center32 = self.center.astype(np.float32)
        self.inv_half = (1.0 / self.half).astype(np.float32)

    def __len__(self) -> int:
        return int(len(self.kind))

    def corners(self) -> np.ndarray:
        """(P, 8, 3) corners of every primitive's bounding box (bottom four first)."""
        local = _CORNER_SIGNS[None] * self.half[:, None, :]
        c, s = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        x = local[..., 0] * c - local[..., 1] * s
        y = local[..., 0] * s + local[..., 1] * c
        return np.stack([x, y, local[..., 2]], axis=-1) + self.center[:, None, :]

    def min_horizontal_distance(self, point: np.ndarray) -> np.ndarray:
        """(P,) smallest horizontal distance from point to each footprint (0 if inside)."""
        rel = point[:2] - self.center[:, :2]
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]], 1)
        box = np.hypot(*np.maximum(np.abs(local) - self.half[:, :2], 0.0).T)
        cylinder = np.maximum(np.hypot(rel[:, 0], rel[:, 1]) - self.half[:, 0], 0.0)
        return np.where(self.kind == CYLINDER, cylinder, box)


@dataclass
class PrimitiveList:
    """Builder: append primitives one by one, then freeze into arrays."""

    rows: list = field(default_factory=list)

    def box(self, center, size, yaw, albedo, reflectivity, owner=-1):
        half = np.asarray(size, dtype=np.float64) / 2
        self.rows.append((BOX, center, half, yaw, albedo, reflectivity, owner))

    def cylinder(self, center, radius, height, albedo, reflectivity, owner=-1):
        half = np.array([radius, radius, height / 2])
        self.rows.append((CYLINDER, center, half, 0.0, albedo, reflectivity, owner))

    def build(self) -> Primitives:
        if not self.rows:
            raise ValueError("a scene needs at least one primitive")
        kind, center, half, yaw, albedo, refl, owner = zip(*self.rows, strict=True)
        return Primitives(
            kind=np.array(kind, np.int8),
            center=np.array(center, np.float64).reshape(-1, 3),
            half=np.array(half, np.float64).reshape(-1, 3),
            yaw=np.array(yaw, np.float64),
            albedo=np.clip(np.array(albedo, np.float32).reshape(-1, 3), 0, 1),
            reflectivity=np.clip(np.array(refl, np.float32), 0, 1),
            owner=np.array(owner, np.int64),
        )
