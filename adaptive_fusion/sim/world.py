"""The synthetic world: one random scene per seed, rendered to camera, depth and lidar from a single
ray cast per sensor, with ground truth."""

from dataclasses import dataclass

import cv2
import numpy as np

from adaptive_fusion.core.frames import FrameSet, Objects
from adaptive_fusion.sim.config import WorldConfig
from adaptive_fusion.sim.raycast import NOTHING, Hits, cast, ground_hits
from adaptive_fusion.sim.rig import (
    CameraGrid,
    LidarGrid,
    make_calibration,
    make_lidar_model,
)
from adaptive_fusion.sim.scene import Scene, sample_scene
from adaptive_fusion.sim.shading import CameraShader, lidar_intensity, noise_texture

RENDERER_VERSION = 2  # bumped whenever the same seed renders differently (for caches)
CAMERA_FAR = 2000.0  # metres; beyond this the ground counts as sky
WEAK_RETURN_RANGE = 10.0  # metres, reference range of lidar_weak_return_power
NOISE_BANK_SEED = 11
NOISE_BANK_SLACK = 1 << 18


@dataclass
class CameraRender:
    image: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32, NaN invalid
    hits: Hits
    silhouettes: list  # (owner, window, mask) outlines of labelled objects' primitives


class World:
    """`World(WorldConfig()).render(seed)` -> FrameSet. The stages (scene, camera, lidar, ground
    truth) are public so that the bench can time each."""

    def __init__(self, config: WorldConfig | None = None):
        self.config = config or WorldConfig()
        self.calib = make_calibration(self.config)
        self.lidar = make_lidar_model(self.config)
        self.camera_grid = CameraGrid(self.calib)
        self.lidar_grid = LidarGrid(self.lidar)
        ground_z = -self.config.lidar_height
        self._camera_ground = ground_hits(self.camera_grid, ground_z, CAMERA_FAR)
        self._lidar_ground = ground_hits(self.lidar_grid, ground_z, self.lidar.max_range)
        self._shader = CameraShader(self.camera_grid, self._camera_ground, noise_texture())
        self._vignette = self._vignetting_gain()
        # sensor noise is drawn as a random window into a fixed bank: as random per frame as
        # fresh draws for any measure, and it saves a tenth of the render time
        bank = np.random.default_rng(NOISE_BANK_SEED)
        self._noise_bank = bank.standard_normal(
            3 * self.calib.width * self.calib.height + NOISE_BANK_SLACK, dtype=np.float32
        )

    def render(self, seed: int) -> FrameSet:
        scene_rng, camera_rng, lidar_rng = self.rngs(seed)
        scene = sample_scene(scene_rng, self.config)
        camera = self.render_camera(scene, camera_rng)
        return FrameSet(
            image=camera.image,
            depth=camera.depth,
            points=self.render_lidar(scene, lidar_rng),
            calib=self.calib,
            lidar=self.lidar,
            objects=self.ground_truth(scene, camera),
        )

    @staticmethod
    def rngs(seed: int) -> list[np.random.Generator]:
        """Independent generators for the scene, the camera and the lidar."""
        return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]

    def scene(self, seed: int) -> Scene:
        return sample_scene(self.rngs(seed)[0], self.config)

    def render_camera(self, scene: Scene, rng: np.random.Generator) -> CameraRender:
        """Camera image and the registered depth image, from one cast."""
        cfg, grid = self.config, self.camera_grid
        windows = grid.windows(scene.prims.corners())
        silhouettes: list = []
        hits = cast(grid, scene.prims, windows, self._camera_ground, silhouettes)
        colour = self._shader.shade(hits, scene)
        colour *= self._vignette[..., None]
        if cfg.image_blur_sigma > 0:
            colour = cv2.GaussianBlur(colour, (0, 0), cfg.image_blur_sigma)
        colour *= 255.0
        if cfg.image_noise_sigma > 0:
            colour += self._noise(rng, colour.shape) * cfg.image_noise_sigma
        image = np.clip(colour + 0.5, 0, 255).astype(np.uint8)
        depth = hits.t.copy()
        if cfg.depth_noise_rel > 0:
            depth *= 1 + self._noise(rng, depth.shape) * cfg.depth_noise_rel
        invalid = (hits.ids == NOTHING) | (depth < cfg.depth_min) | (depth > cfg.depth_max)
        if cfg.depth_baseline > 0:
            invalid |= emitter_shadow(hits.t, self.calib.K[0, 0] * cfg.depth_baseline)
        depth[invalid] = np.nan
        return CameraRender(image=image, depth=depth, hits=hits, silhouettes=silhouettes)

    def render_lidar(self, scene: Scene, rng: np.random.Generator) -> np.ndarray:
        """(N, 4) float32 x, y, z, intensity: returns in beam-major, azimuth order."""
        grid, prims = self.lidar_grid, scene.prims
        windows = grid.windows(prims.corners(), prims.min_horizontal_distance(grid.origin))
        hits = cast(grid, prims, windows, self._lidar_ground)
        t, ids = hits.t.ravel(), hits.ids.ravel()
        valid = (ids != NOTHING) & (t >= self.lidar.min_range) & (t <= self.lidar.max_range)
        t, ids = t[valid], ids[valid]
        dirs = grid.dirs.reshape(-1, 3)[valid]
        intensity = lidar_intensity(dirs, t, ids, scene)
        if self.config.lidar_weak_return_power > 0:
            power = intensity * (WEAK_RETURN_RANGE / t) ** 2
            detected = rng.random(len(t)) < -np.expm1(-power / self.config.lidar_weak_return_power)
            t, dirs, intensity = t[detected], dirs[detected], intensity[detected]
        if self.config.lidar_range_noise > 0:
            t = t + self._noise(rng, t.shape) * self.config.lidar_range_noise
        points = np.empty((len(t), 4), np.float32)
        points[:, :3] = t[:, None] * dirs
        points[:, 3] = np.clip(intensity, 0, 1)
        return points

    def ground_truth(self, scene: Scene, camera: CameraRender) -> Objects:
        """Labelled objects with enough unoccluded pixels; 2D boxes from those pixels, visibility =
        unoccluded / outline pixels (inside the image: truncation is not occlusion)."""
        n = len(scene.labels)
        if n == 0:
            return Objects.empty()
        ids = camera.hits.ids
        owner_img = np.where(ids >= 0, scene.prims.owner[np.maximum(ids, 0)], -1)
        outline_area = np.zeros(n, np.int64)
        boxes = np.zeros((n, 4), np.float32)
        for k, (rows, cols) in _union_windows(camera.silhouettes, n).items():
            outline = np.zeros((rows.stop - rows.start, cols.stop - cols.start), bool)
            for owner, (rs, cs), mask in camera.silhouettes:
                if owner == k:
                    outline[
                        rs.start - rows.start : rs.stop - rows.start,
                        cs.start - cols.start : cs.stop - cols.start,
                    ] |= mask
            outline_area[k] = outline.sum()
            mine = owner_img[rows, cols] == k
            r_any, c_any = np.flatnonzero(mine.any(axis=1)), np.flatnonzero(mine.any(axis=0))
            if len(r_any):
                boxes[k] = (
                    cols.start + c_any[0],
                    rows.start + r_any[0],
                    cols.start + c_any[-1] + 1,
                    rows.start + r_any[-1] + 1,
                )
        visible = np.bincount(owner_img[owner_img >= 0], minlength=n)[:n]
        keep = visible >= max(self.config.min_visible_pixels, 1)
        visibility = visible / np.maximum(outline_area, 1)
        return Objects(
            labels=scene.labels[keep].astype(np.int64),
            centers=scene.centers[keep].astype(np.float32),
            sizes=scene.sizes[keep].astype(np.float32),
            yaws=scene.yaws[keep].astype(np.float32),
            boxes2d=boxes[keep],
            visibility=np.clip(visibility[keep], 0, 1).astype(np.float32),
        )

    def _noise(self, rng: np.random.Generator, shape: tuple) -> np.ndarray:
        start = int(rng.integers(NOISE_BANK_SLACK))
        return self._noise_bank[start : start + int(np.prod(shape))].reshape(shape)

    def _vignetting_gain(self) -> np.ndarray:
        h, w = self.calib.height, self.calib.width
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx + 0.5 - w / 2) ** 2 + (yy + 0.5 - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        return (1 - self.config.vignetting * r2).astype(np.float32)


def emitter_shadow(z: np.ndarray, baseline_px: float) -> np.ndarray:
    """(H, W) bool: pixels the depth camera's emitter, `baseline` to the right of its sensor,
    cannot light (baseline_px = focal length x baseline). A pixel at column u with disparity
    d = baseline_px / z is seen by the emitter at u - d; it is shadowed when a pixel to its right
    lands at or left of that, i.e. a nearer surface sits between them (the band of missing depth
    beside every near edge of a real structured-light/ToF/stereo depth image)."""
    disparity = baseline_px / np.where(np.isfinite(z), z, np.inf)
    landing = np.arange(z.shape[1], dtype=np.float32) - disparity
    right_min = np.minimum.accumulate(landing[:, ::-1], axis=1)[:, ::-1]
    shadowed = np.zeros(z.shape, bool)
    shadowed[:, :-1] = landing[:, :-1] > right_min[:, 1:]
    return shadowed


def _union_windows(silhouettes: list, n: int) -> dict[int, tuple[slice, slice]]:
    """Per labelled object, the rectangle covering all its primitives' windows."""
    bounds: dict[int, list[int]] = {}
    for owner, (rs, cs), _ in silhouettes:
        b = bounds.setdefault(owner, [rs.start, rs.stop, cs.start, cs.stop])
        b[0], b[1] = min(b[0], rs.start), max(b[1], rs.stop)
        b[2], b[3] = min(b[2], cs.start), max(b[3], cs.stop)
    return {k: (slice(b[0], b[1]), slice(b[2], b[3])) for k, b in bounds.items() if k < n}
