"""Turning ray hits into sensor readings: camera colour (Lambert + hemispheric ambient, cast shadows
on the ground, procedural ground texture, sky gradient, haze) and lidar intensity (reflectivity x
incidence).

The ground is a fixed plane and the rig is fixed, so everything about the ground that does not
depend on the scene (where each pixel meets it, how far, its texture grain) is computed once per
World."""

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from adaptive_fusion.sim.primitives import CYLINDER, Primitives
from adaptive_fusion.sim.raycast import GROUND, NOTHING, Hits, surface_normals
from adaptive_fusion.sim.rig import CameraGrid
from adaptive_fusion.sim.scene import Ground, Lighting, Scene

TEXTURE_SIZE = 256  # power of two: texture lookups wrap with a bit mask
GRAIN_VARIANTS = 8  # precomputed ground grains; each scene picks one
TEXTURE_FADE = 25.0  # metres over which texture contrast fades (pixels average it out)
MARKING_ALBEDO = 0.85
MARKING_REFLECTIVITY = 0.75
SHADOW_OUTLINE = 8  # points per ring approximating a cylinder's shadow


def noise_texture(seed: int = 7) -> np.ndarray:
    """A tileable (256, 256) float32 noise with unit spread, several octaves."""
    rng = np.random.default_rng(seed)
    tex = sum(
        gaussian_filter(rng.standard_normal((TEXTURE_SIZE, TEXTURE_SIZE)), s, mode="wrap") * s
        for s in (0.7, 2.0, 6.0)
    )
    return ((tex - tex.mean()) / tex.std()).astype(np.float32)


def sample_texture(texture: np.ndarray, u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    mask = TEXTURE_SIZE - 1
    iu = (u * scale).astype(np.int32) & mask
    iv = (v * scale).astype(np.int32) & mask
    return texture[iv, iu]


def ground_material(
    ground: Ground, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Albedo (N, 3), lidar reflectivity (N,) and texture contrast (N,) of ground points: asphalt
    with lane markings, paved sidewalks, verge."""
    on_road = (y > ground.road_right) & (y < ground.road_left)
    sidewalk = (y > ground.road_right - ground.sidewalk_width) & (
        y < ground.road_left + ground.sidewalk_width
    )
    sidewalk &= ~on_road
    zone = on_road.astype(np.int8) * 2 + sidewalk  # 0 verge, 1 sidewalk, 2 road
    albedo = np.stack([ground.verge, ground.sidewalk, ground.asphalt]).astype(np.float32)[zone]
    reflectivity = np.array([0.35, 0.28, 0.12], np.float32)[zone]
    contrast = np.array([0.25, 0.07, 0.1], np.float32)[zone]
    xo = x + ground.texture_offset[0]
    marking = (np.abs(y - (ground.road_right + 0.3)) < 0.08) | (
        np.abs(y - (ground.road_left - 0.3)) < 0.08
    )
    dashes = (xo % 9.0) < 3.0
    for lane_edge in ground.lane_centres[:-1] + ground.lane_width / 2:
        marking |= (np.abs(y - lane_edge) < 0.07) & dashes
    albedo[marking] = MARKING_ALBEDO
    reflectivity[marking] = MARKING_REFLECTIVITY
    joints = sidewalk & (((xo % 1.2) < 0.04) | (((y - ground.road_left) % 1.2) < 0.04))
    albedo[joints] *= 0.75
    return albedo, reflectivity, contrast


def _shadow_outlines(prims: Primitives) -> np.ndarray:
    """(P, 16, 3) points whose shadows bound each primitive's shadow: box corners (twice), or a
    polygon around each end of a cylinder."""
    corners = prims.corners()
    outlines = np.concatenate([corners, corners], axis=1)
    cyl = np.flatnonzero(prims.kind == CYLINDER)
    if len(cyl):
        ring = np.linspace(0, 2 * np.pi, SHADOW_OUTLINE, endpoint=False)
        r = prims.half[cyl, 0:1] / np.cos(np.pi / SHADOW_OUTLINE)  # polygon around the circle
        xy = prims.center[cyl, None, :2] + r[..., None] * np.stack([np.cos(ring), np.sin(ring)], 1)
        for k, sign in enumerate((-1, 1)):
            z = prims.center[cyl, 2] + sign * prims.half[cyl, 2]
            part = slice(k * SHADOW_OUTLINE, (k + 1) * SHADOW_OUTLINE)
            outlines[cyl, part, :2] = xy
            outlines[cyl, part, 2] = z[:, None]
    return outlines


def _clip_halfplane(poly: np.ndarray, x_min: float) -> np.ndarray:
    """Convex polygon (M, 2) clipped to x >= x_min (one step of Sutherland-Hodgman)."""
    inside = poly[:, 0] >= x_min
    out = []
    for k in range(len(poly)):
        a, b = poly[k], poly[(k + 1) % len(poly)]
        if inside[k]:
            out.append(a)
        if inside[k] != inside[(k + 1) % len(poly)]:
            out.append(a + (x_min - a[0]) / (b[0] - a[0]) * (b - a))
    return np.array(out).reshape(-1, 2)


def ground_shadows(grid: CameraGrid, prims: Primitives, ground: Ground, sun: np.ndarray):
    """(H, W) uint8 mask, 1 where the ground is in the shadow of a primitive: each primitive's
    outline is projected along the sun onto the ground, clipped in front of the camera, and its
    image (a projected convex polygon on a plane stays convex) filled."""
    calib = grid.calib
    mask = np.zeros((calib.height, calib.width), np.uint8)
    if sun[2] < 0.05:
        return mask
    outlines = _shadow_outlines(prims)
    lift = (outlines[..., 2] - ground.z) / sun[2]
    flat = outlines[..., :2] - lift[..., None] * sun[:2]  # (P, 16, 2) on the ground
    x_min = grid.origin[0] + 1.0  # the nearest visible ground is ~2.6 m ahead at default fov
    front = flat[..., 0] >= x_min
    all_front = front.all(axis=1)
    on_ground = np.concatenate([flat, np.full((*flat.shape[:2], 1), ground.z)], axis=2)
    uv, _ = calib.project(on_ground.reshape(-1, 3))
    uv = uv.reshape(*flat.shape[:2], 2)
    with np.errstate(invalid="ignore"):
        outside = (
            (uv[..., 0].min(axis=1) > calib.width)
            | (uv[..., 0].max(axis=1) < 0)
            | (uv[..., 1].min(axis=1) > calib.height)
            | (uv[..., 1].max(axis=1) < 0)
        )
    for i in np.flatnonzero(front.any(axis=1) & ~(all_front & outside)):
        if all_front[i]:
            polygon = uv[i]
        else:
            hull = cv2.convexHull(flat[i].astype(np.float32))[:, 0, :].astype(np.float64)
            hull = _clip_halfplane(hull, x_min)
            if len(hull) < 3:
                continue
            polygon, _ = calib.project(np.c_[hull, np.full(len(hull), ground.z)])
        hull = cv2.convexHull(np.round(polygon * 16).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1, cv2.LINE_8, shift=4)
    return mask


class CameraShader:
    """Camera radiance of every pixel from its hit, before the sensor's optics and noise."""

    def __init__(self, grid: CameraGrid, ground_hits: Hits, texture: np.ndarray):
        self.grid = grid
        self.dirs = grid.dirs.reshape(-1, 3)
        self.range_per_t = np.linalg.norm(self.dirs, axis=1)
        self.unit_dirs = self.dirs / self.range_per_t[:, None]
        self.sky_up = (np.clip(self.unit_dirs[:, 2] / 0.5, 0, 1) ** 0.7)[:, None]
        self.texture = texture
        self.ground_index = np.flatnonzero(ground_hits.ids.ravel() == GROUND)
        t = ground_hits.t.ravel()[self.ground_index]
        points = grid.origin + t[:, None] * self.dirs[self.ground_index]
        self.ground_xy = points[:, :2].astype(np.float32)
        self.ground_range = (t * self.range_per_t[self.ground_index]).astype(np.float32)
        fade = np.exp(-self.ground_range / TEXTURE_FADE)
        x, y = points[:, 0], points[:, 1]
        self.ground_grain = [
            (
                0.6 * sample_texture(texture, x + 37.0 * k, y + 11.0 * k, 12.0)
                + sample_texture(texture, y + 5.0 * k, x + 23.0 * k, 0.8)
            ).astype(np.float32)
            * fade
            for k in range(GRAIN_VARIANTS)
        ]

    def shade(self, hits: Hits, scene: Scene) -> np.ndarray:
        """(H, W, 3) float32 linear colour."""
        light, ground, prims = scene.light, scene.ground, scene.prims
        ids, t = hits.ids.ravel(), hits.t.ravel()
        colour = np.empty((len(ids), 3), np.float32)
        sky = np.flatnonzero(ids == NOTHING)
        colour[sky] = self._sky(sky, light)
        shadow = ground_shadows(self.grid, prims, ground, light.sun_dir).ravel()
        visible = ids[self.ground_index] == GROUND
        g = self.ground_index[visible]
        xy = self.ground_xy[visible]
        albedo, _, contrast = ground_material(ground, xy[:, 0], xy[:, 1])
        grain = self.ground_grain[ground.texture_variant % GRAIN_VARIANTS][visible]
        albedo *= (1 + contrast * grain)[:, None]
        sunlit = light.sun_dir[2] * (1 - shadow[g])
        lit = albedo * (light.ambient_colour + sunlit[:, None] * light.sun_colour)
        colour[g] = self._haze(lit, self.ground_range[visible], light)
        p = np.flatnonzero(ids >= 0)
        if len(p):
            colour[p] = self._shade_primitives(p, ids[p], t[p], prims, light)
        return colour.reshape(*hits.ids.shape, 3)

    def _sky(self, pixels: np.ndarray, light: Lighting) -> np.ndarray:
        up = self.sky_up[pixels]
        glow = np.clip(self.unit_dirs[pixels] @ light.sun_dir.astype(np.float32), 0, 1)
        for _ in range(5):  # glow ** 32, by squaring (np.power is slow)
            glow *= glow
        return (
            light.sky_horizon * (1 - up)
            + light.sky_top * up
            + (0.4 * glow)[:, None] * light.sun_colour
        )

    def _shade_primitives(self, pixels, ids, t, prims: Primitives, light: Lighting):
        points = self.grid.origin.astype(np.float32) + t[:, None] * self.dirs[pixels]
        normals = surface_normals(prims, ids, points)
        ray_range = t * self.range_per_t[pixels]
        grain = sample_texture(
            self.texture, points[:, 0] + points[:, 2], points[:, 1] - points[:, 2], 9.0
        )
        fade = np.exp(-ray_range / TEXTURE_FADE)
        albedo = prims.albedo[ids] * (1 + 0.05 * grain * fade)[:, None]
        sunlit = np.clip(normals @ light.sun_dir.astype(np.float32), 0, None)
        ambient = light.ambient_colour * (0.7 + 0.3 * normals[:, 2:3])  # sky light from above
        lit = albedo * (ambient + sunlit[:, None] * light.sun_colour)
        return self._haze(lit, ray_range, light)

    @staticmethod
    def _haze(colour: np.ndarray, ray_range: np.ndarray, light: Lighting) -> np.ndarray:
        haze = (1 - np.exp(-ray_range / light.haze_distance))[:, None]
        return colour * (1 - haze) + light.sky_horizon * haze


def lidar_intensity(dirs: np.ndarray, t: np.ndarray, ids: np.ndarray, scene: Scene) -> np.ndarray:
    """(N,) intensity of N returns along unit dirs from the lidar at the origin: Lambertian
    reflectivity x |cos incidence| (with a floor: real surfaces are not perfectly Lambertian)."""
    points = t[:, None] * dirs
    reflectivity = np.empty(len(ids), np.float32)
    cos = np.empty(len(ids), np.float32)
    on_ground = ids == GROUND
    gp = points[on_ground]
    _, reflectivity[on_ground], _ = ground_material(scene.ground, gp[:, 0], gp[:, 1])
    cos[on_ground] = np.abs(dirs[on_ground, 2])
    on_prim = ~on_ground
    normals = surface_normals(scene.prims, ids[on_prim], points[on_prim])
    cos[on_prim] = np.abs(np.sum(normals * dirs[on_prim], axis=1))
    reflectivity[on_prim] = scene.prims.reflectivity[ids[on_prim]]
    return reflectivity * (0.15 + 0.85 * cos)
