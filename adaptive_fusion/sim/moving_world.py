"""A world that moves: one seeded scene whose labelled objects glide back and forth along their
heading, rendered at any time t and corrupted per modality, for the simulated sensors.

Motion is a sine along each object's yaw (amplitude per class, own phase), so it is smooth,
bounded (objects stay on the road they were placed on) and the same for a given seed and t.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from adaptive_fusion.core.frames import CORRUPTIONS, Objects
from adaptive_fusion.sim import World
from adaptive_fusion.sim.corruptions import (
    corrupt_camera,
    corrupt_depth,
    corrupt_lidar,
    ray_distance,
)
from adaptive_fusion.sim.scene import Scene

CLEAN = "none"  # corruption kind meaning "no corruption"
MOTION_AMPLITUDE_M = np.array([4.0, 0.8, 2.0])  # car, pedestrian, cyclist: half the travel
MOTION_PERIOD_S = 8.0


def corruption_kinds(modality: str) -> tuple[str, ...]:
    return (CLEAN, *CORRUPTIONS[modality])


@dataclasses.dataclass
class CameraCapture:
    image: np.ndarray
    depth: np.ndarray
    objects: Objects


class MovingWorld:
    def __init__(self, world: World, seed: int, motion_scale: float = 1.0):
        self.world = world
        self.seed = seed
        self.base = world.scene(seed)
        phases = np.random.default_rng([seed, 7]).uniform(0, 2 * np.pi, len(self.base.labels))
        self._phases = phases
        self._amplitudes = MOTION_AMPLITUDE_M[self.base.labels] * motion_scale

    def scene_at(self, t: float) -> Scene:
        base = self.base
        travel = self._amplitudes * np.sin(2 * np.pi * t / MOTION_PERIOD_S + self._phases)
        shift = np.zeros((len(base.labels), 3))
        shift[:, 0] = travel * np.cos(base.yaws)
        shift[:, 1] = travel * np.sin(base.yaws)
        owner = base.prims.owner
        prim_shift = np.where((owner >= 0)[:, None], shift[np.maximum(owner, 0)], 0.0)
        prims = dataclasses.replace(base.prims, center=base.prims.center + prim_shift)
        return dataclasses.replace(base, prims=prims, centers=base.centers + shift)

    def _rng(self, frame: int, sensor: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, frame, sensor])

    def camera(self, t: float, frame: int, corruption: Mapping[str, tuple[str, float]]):
        """Camera image, registered depth and ground truth at time t, corrupted per spec."""
        scene = self.scene_at(t)
        render = self.world.render_camera(scene, self._rng(frame, 0))
        objects = self.world.ground_truth(scene, render)
        image, depth = render.image, render.depth
        kind, severity = corruption.get("camera", (CLEAN, 0.0))
        if kind != CLEAN and severity > 0:
            distance = ray_distance(depth, self.world.calib.K)
            image = corrupt_camera(image, kind, severity, self._rng(frame, 1), distance)
        kind, severity = corruption.get("depth", (CLEAN, 0.0))
        if kind != CLEAN and severity > 0:
            depth = corrupt_depth(depth, kind, severity, self._rng(frame, 2))
        return CameraCapture(image=image, depth=depth, objects=objects)

    def lidar(self, t: float, frame: int, corruption: Mapping[str, tuple[str, float]]):
        """(N, 4) lidar sweep at time t, corrupted per spec."""
        points = self.world.render_lidar(self.scene_at(t), self._rng(frame, 3))
        kind, severity = corruption.get("lidar", (CLEAN, 0.0))
        if kind != CLEAN and severity > 0:
            points = corrupt_lidar(points, kind, severity, self._rng(frame, 4), self.world.lidar)
        return points
