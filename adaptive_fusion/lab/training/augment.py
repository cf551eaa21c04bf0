"""Training-time augmentation of frame sets: a horizontal mirror of the whole scene and random
corruptions from the world's corruption models at random severities."""

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from adaptive_fusion.core.frames import CORRUPTIONS, Calibration, FrameSet, Objects
from adaptive_fusion.sim.corruptions import REAL_WORLD_FAULTS, corrupt

MIRROR_CAMERA = np.diag([-1.0, 1.0, 1.0, 1.0])  # camera x -> -x: image columns reversed
MIRROR_LIDAR = np.diag([1.0, -1.0, 1.0, 1.0])  # lidar y -> -y: the world mirrored left-right


def mirror(frames: FrameSet) -> FrameSet:
    """The scene mirrored across the lidar x-z plane, seen by the mirrored camera.

    Points and boxes get y -> -y and yaw -> -yaw; images are flipped left-right; the calibration
    becomes T' = Mc T Ml with cx' = W - cx, which projects every mirrored point to the flipped
    pixel, so the result is again a consistent frame set (exactly, for any calibration). A frame
    set without a depth camera (nuScenes) stays without one."""
    calib = frames.calib
    K = calib.K.copy()
    K[0, 2] = calib.width - K[0, 2]
    T = MIRROR_CAMERA @ calib.T_cam_lidar @ MIRROR_LIDAR
    points = frames.points.copy()
    points[:, 1] *= -1
    objects = frames.objects
    centers = objects.centers.copy()
    centers[:, 1] *= -1
    boxes2d = objects.boxes2d.copy()
    boxes2d[:, [0, 2]] = calib.width - objects.boxes2d[:, [2, 0]]
    return dataclasses.replace(
        frames,
        image=np.ascontiguousarray(frames.image[:, ::-1]),
        depth=None if frames.depth is None else np.ascontiguousarray(frames.depth[:, ::-1]),
        points=points,
        calib=Calibration(K=K, width=calib.width, height=calib.height, T_cam_lidar=T),
        objects=Objects(
            labels=objects.labels, centers=centers, sizes=objects.sizes,
            yaws=-objects.yaws, boxes2d=boxes2d, visibility=objects.visibility,
        ),
    )


@dataclass
class CorruptionSampler:
    """Draws a corruption spec: each modality independently corrupted with `probability`, by a
    kind drawn uniformly (minus `held_out`, kept for evaluation) at a severity ~ U[min, 1];
    scene fog with `fog_probability`. With `real_world` the kinds include the real sensor faults
    outside the world's family (sim/corruptions.REAL_WORLD_FAULTS)."""

    probability: float = 0.3
    fog_probability: float = 0.05
    min_severity: float = 0.1
    held_out: list[str] = field(default_factory=list)  # "modality:kind"
    real_world: bool = False

    def kinds(self, modality: str) -> list[str]:
        kinds = [*CORRUPTIONS[modality], *(REAL_WORLD_FAULTS[modality] if self.real_world else ())]
        return [k for k in kinds if f"{modality}:{k}" not in self.held_out]

    def sample(self, rng: np.random.Generator) -> dict:
        spec: dict = {}
        for modality in CORRUPTIONS:
            if rng.random() < self.probability:
                kinds = self.kinds(modality)
                spec[modality] = (kinds[rng.integers(len(kinds))], self.severity(rng))
        if rng.random() < self.fog_probability:
            spec["scene"] = ("fog", self.severity(rng))
        return spec

    def severity(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.min_severity, 1.0))

    def apply(self, frames: FrameSet, rng: np.random.Generator) -> FrameSet:
        return self.apply_with_spec(frames, rng)[0]

    def apply_with_spec(self, frames: FrameSet, rng: np.random.Generator) -> tuple[FrameSet, dict]:
        """`apply`, also returning the spec it drew (the labels a layer controller learns to
        recognise corruption from). A frame set without a depth camera (nuScenes) has its depth
        corruption left out after the draw, so that the other draws are a full frame set's."""
        spec = self.sample(rng)
        if frames.depth is None:
            spec.pop("depth", None)
        return (corrupt(frames, spec, int(rng.integers(2**31))) if spec else frames), spec
