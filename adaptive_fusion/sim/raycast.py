"""Vectorised ray casting of boxes and vertical cylinders over a sensor's ray grid (z-buffer).

Hand-written because no numpy/OpenCV/scipy routine casts analytic primitives; a mesh ray tracer
(e.g. Embree bindings) would be another dependency and slower to set up per random scene than these
closed-form tests over the few rays each primitive can reach.
"""

from dataclasses import dataclass

import numpy as np

from adaptive_fusion.sim.primitives import BOX, CYLINDER, Primitives
from adaptive_fusion.sim.rig import RayGrid, Window

NOTHING = -1  # ray escapes (sky)
GROUND = -2
_EPS = 1e-4


@dataclass
class Hits:
    """Nearest hit per ray: ray parameter t (inf if none) and what was hit (primitive index,
    GROUND or NOTHING)."""

    t: np.ndarray  # (rows, cols) float32
    ids: np.ndarray  # (rows, cols) int32


def ground_hits(grid: RayGrid, ground_z: float, max_t: float) -> Hits:
    """The ground plane z = ground_z alone: the starting z-buffer of every scene."""
    dz = grid.dirs[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (ground_z - grid.origin[2]) / dz
    valid = (dz < 0) & (t <= max_t)
    return Hits(
        t=np.where(valid, t, np.inf).astype(np.float32),
        ids=np.where(valid, GROUND, NOTHING).astype(np.int32),
    )


def intersect(prims: Primitives, i: int, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit of primitive i along origin + t * dirs (inf: miss)."""
    if prims.kind[i] == BOX:
        return _intersect_box(prims.center[i], prims.half[i], prims.yaw[i], origin, dirs)
    return _intersect_cylinder(prims.center[i], prims.half[i], origin, dirs)


def _intersect_box(center, half, yaw, origin, dirs):
    """Slab test in the box's own frame."""
    c, s = np.float32(np.cos(yaw)), np.float32(np.sin(yaw))
    rel = origin - center
    local_origin = (c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2])
    dx, dy = dirs[..., 0], dirs[..., 1]
    local_dirs = (dx * c + dy * s, dy * c - dx * s, dirs[..., 2])
    t_near = t_far = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for o, d, h in zip(local_origin, local_dirs, half, strict=True):
            inv = np.float32(1.0) / d
            ta = (np.float32(-h - o)) * inv
            tb = (np.float32(h - o)) * inv
            lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
            t_near = lo if t_near is None else np.maximum(t_near, lo)
            t_far = hi if t_far is None else np.minimum(t_far, hi)
    hit = (t_near <= t_far) & (t_near > _EPS)
    return np.where(hit, t_near, np.float32(np.inf))


def _intersect_cylinder(center, half, origin, dirs):
    """Vertical cylinder: side from the 2D quadratic, plus the one cap facing the origin."""
    radius, half_height = half[0], half[2]
    ox, oy, oz = origin - center
    dx, dy, dz = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    a = dx * dx + dy * dy
    b = np.float32(ox) * dx + np.float32(oy) * dy
    c = np.float32(ox * ox + oy * oy - radius * radius)
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = b * b - a * c
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / a
        side = (disc >= 0) & (t_side > _EPS) & (np.abs(np.float32(oz) + t_side * dz) <= half_height)
        t = np.where(side, t_side, np.float32(np.inf))
        if abs(oz) > half_height:
            cap_z = np.float32(np.copysign(half_height, oz) - oz)
            t_cap = cap_z / dz
            px, py = np.float32(ox) + t_cap * dx, np.float32(oy) + t_cap * dy
            cap = (t_cap > _EPS) & (px * px + py * py <= radius * radius)
            t = np.minimum(t, np.where(cap, t_cap, np.float32(np.inf)))
    return t


def cast(
    grid: RayGrid,
    prims: Primitives,
    windows: list[list[Window]],
    start: Hits,
    silhouettes: list | None = None,
) -> Hits:
    """Z-buffer every primitive over its windows, starting from `start` (usually the ground).

    If `silhouettes` is a list, (owner, window, hit mask) is appended for every window of a
    labelled object's primitive: its outline regardless of occlusion, for visibility."""
    t, ids = start.t.copy(), start.ids.copy()
    for i, prim_windows in enumerate(windows):
        owner = prims.owner[i]
        for window in prim_windows:
            t_prim = intersect(prims, i, grid.origin, grid.dirs[window])
            t_win = t[window]
            closer = t_prim < t_win
            t_win[closer] = t_prim[closer]
            ids[window][closer] = i
            if silhouettes is not None and owner >= 0:
                silhouettes.append((owner, window, np.isfinite(t_prim)))
    return Hits(t=t, ids=ids)


def surface_normals(prims: Primitives, ids: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) float32 outward unit normals at hit points (N, 3) on primitives ids (N,): the face
    (or cap) the point is relatively closest to, or the radial direction on a cylinder's side."""
    c, s = prims.cos_yaw[ids], prims.sin_yaw[ids]
    rel = points.astype(np.float32) - prims.center32[ids]
    lx = c * rel[:, 0] + s * rel[:, 1]
    ly = c * rel[:, 1] - s * rel[:, 0]
    lz = rel[:, 2]
    inv_half = prims.inv_half[ids]
    qx, qy, qz = (np.abs(a) * inv_half[:, k] for k, a in enumerate((lx, ly, lz)))
    cylinder = prims.kind[ids] == CYLINDER
    radial = np.hypot(lx[cylinder], ly[cylinder]) * inv_half[cylinder, 0]
    qx[cylinder] = qy[cylinder] = radial
    on_z = (qz >= qx) & (qz >= qy)
    on_x = ~on_z & (qx >= qy)
    on_y = ~on_z & ~on_x
    nx = np.where(on_x, np.sign(lx), 0).astype(np.float32)
    ny = np.where(on_y, np.sign(ly), 0).astype(np.float32)
    side = cylinder & ~on_z
    length = np.maximum(np.hypot(lx[side], ly[side]), 1e-6)
    nx[side], ny[side] = lx[side] / length, ly[side] / length
    nz = np.where(on_z, np.sign(lz), 0).astype(np.float32)
    return np.stack([c * nx - s * ny, s * nx + c * ny, nz], axis=1)
