"""Lidar quality from one sweep (N, >=3 points, lidar frame) and the beam pattern, no labels.

The points are binned into the sensor's own range image (beam x azimuth step) by their angles:
the nearest beam by elevation (so a real sensor's beams may be off the nominal pattern by up to
half a beam spacing) and the azimuth step. The order of the points is not used.

Measures:
- fill_fraction: over the beams that must hit the ground within 80 % of the maximum range
  (the mount height is estimated as the median -z of the lowest beam that has returns), the
  share of azimuth steps with a return. Those rays return from the road or from whatever stands
  on it, whatever the scene; missing ones are lost returns.
- range_noise_m: along each scan line the range of a return minus the mean of its two
  neighbours (zero on a ring of flat ground and nearly so on any smooth surface); for white range
  noise sigma, that residual has std sigma sqrt(1.5), and its 25th percentile in magnitude is
  0.3186 of that std. The lower quartile (not the median) keeps edges and clutter (each stray
  return spoils three residuals) out of the noise estimate until a quarter of the sweep is
  clutter, which the isolated fraction reports by itself.
- isolated_fraction: share of returns with none of the two nearest returns on either side of
  the scan line within 0.1 m + 5 % of the range per step (surfaces up to ~83 deg from face-on
  stay connected): rain, fog and dust clutter and lone stray returns.
- sector_gap_deg: the widest run of azimuth steps (wrapping around 360 degrees) in which none
  of the ground-bound beams returns. Those rays must hit the road or something on it, so a run
  with no return in any of them is a direction the sensor is blind in: a blocked window, a
  failing encoder or a sensor reporting only part of its sweep. Fill alone barely sees it (a
  120-degree gap leaves 2/3 of the rays). 360 when there is no ground-bound beam.
- saturated_fraction: share of returns at the cloud's top intensity (within 1 % of it). A
  healthy sweep has a spread of reflectivities, with a percent or two at the top from
  retro-reflectors (signs, number plates, lane paint); a receiver in saturation clips most
  returns to full scale, and a stuck channel puts every return at one value. Either way the
  reflectivity cue is gone, and saturated pulses also bias range (range walk). Read on the
  cloud's own top, so it holds for any intensity scale (the world's 0-1, Velodyne's 0-255,
  16-bit drivers). An all-zero channel reads 0: the ROS conversion fills zeros for a cloud
  without intensity, which is not a fault.
- below_ground_fraction: share of returns more than 0.3 m + 4 % of their horizontal distance
  below the ground plane at the estimated mount height: returns from under the road, which only
  ghosts produce (multipath: a wet road or a glass facade mirrors objects below the road). The
  tolerance covers vehicle pitch and grade changes (about 2.3 degrees) and range noise.

Reference values (healthy limit / half-point, see score.py):
- density: factor sqrt(fill / 0.85), at most 1. A healthy sensor returns from 85 % or more of
  its ground-bound rays (mount occlusions and dark or wet surfaces take the rest). The number
  of points on an object falls as 1/r^2, so with a fill f an object gets the points it would
  get from a full sweep only at sqrt(f) of the distance: detection range scales as sqrt(fill).
- range noise 0.03 / 0.15 m: healthy lidars have 1-3 cm; 0.15 m is a quarter of a pedestrian's
  depth.
- isolated fraction 0.02 / 0.15: thin poles and edges give a healthy sweep a percent or two;
  at 0.15 one return in seven is clutter.
- sector gap 45 / 90 degrees: the sensor's own vehicle, mast or roof rack can hide up to an
  eighth of the sweep in ordinary mounts (the rear block of a sensor on a car's front roof edge
  is about 40 degrees); at 90 degrees a whole quadrant, one of the four directions a vehicle
  must watch (cross traffic from one side), is blind. 120 degrees scores ~0.45, 180 ~0.25.
  The synthetic world's clean sweeps have no gap.
- saturated fraction 0.05 / 0.5: retro-reflectors put up to a few percent of a healthy sweep
  at full scale (the world's clean sweeps: at most 1.8 %); with half the returns clipped the
  reflectivity cue is mostly gone.
- below-ground fraction 0.01 / 0.1: a puddle or a glass front gives a healthy sweep a few
  mirrored returns (the world's clean sweeps: none); at 0.1 one return in ten is a phantom
  that a detector may read as an object under the road.
"""

from functools import lru_cache

import numpy as np

from adaptive_fusion.core.frames import LidarModel
from adaptive_fusion.quality.score import ModalityQuality, combine, falling

GROUND_RANGE_SHARE = 0.8
LUT_STEP_DEG = 0.01
NEIGHBOUR_ABS, NEIGHBOUR_REL = 0.1, 0.05
HEALTHY_FILL = 0.85
# (healthy limit, half-point, power) of each factor's curve, see score.py and the docstring
NOISE_CURVE = (0.03, 0.15, 2.0)
ISOLATED_CURVE = (0.02, 0.15, 2.0)
GAP_CURVE = (45.0, 90.0, 2.0)  # degrees
SATURATED_CURVE = (0.05, 0.5, 2.0)
BELOW_GROUND_CURVE = (0.01, 0.1, 2.0)
SATURATION_SHARE = 0.99  # a return within 1 % of the cloud's top intensity is at the top
BELOW_GROUND_ABS, BELOW_GROUND_REL = 0.3, 0.04  # metres, and per metre of horizontal distance
MIN_TRIPLES = 20
QUARTILE_OF_ABS_NORMAL = 0.3186  # 25th percentile of |N(0, 1)|


MEASURES = ("n_points", "fill_fraction", "ground_beams", "range_noise_m", "isolated_fraction",
            "sector_gap_deg", "saturated_fraction", "below_ground_fraction")
FACTORS = ("density", "noise", "isolated", "sector_gap", "saturation", "below_ground")


class CloudError(ValueError):
    """The input is not an (N, >=3) point array."""


@lru_cache(maxsize=8)
def _beam_lut(elevations_deg: tuple[float, ...]) -> tuple[float, np.ndarray]:
    """Elevation (deg) -> nearest beam, as a lookup table from the lowest beam minus half a
    spacing (-1 outside the pattern): a table lookup is ~10x faster than searchsorted here."""
    beams = np.asarray(elevations_deg)
    spacing = np.diff(beams).min() if len(beams) > 1 else 1.0
    lo, hi = beams[0] - spacing / 2, beams[-1] + spacing / 2
    centres = lo + (np.arange(int(np.ceil((hi - lo) / LUT_STEP_DEG))) + 0.5) * LUT_STEP_DEG
    lut = np.abs(centres[:, None] - beams[None, :]).argmin(axis=1)
    return lo, np.append(lut, -1).astype(np.int64)  # the last entry catches out-of-range


def range_image(points: np.ndarray, lidar: LidarModel) -> np.ndarray:
    """(n_beams, azimuth_steps) float32 ranges, NaN where the ray has no return."""
    x, y, z = (points[:, i].astype(np.float32) for i in range(3))
    horizontal_sq = x * x + y * y
    lo, lut = _beam_lut(tuple(float(e) for e in lidar.elevations_deg))
    elevation = np.degrees(np.arctan2(z, np.sqrt(horizontal_sq)))
    slot = ((elevation - lo) / LUT_STEP_DEG).astype(np.int64)
    slot[(slot < 0) | (slot >= len(lut) - 1)] = len(lut) - 1
    beam = lut[slot]
    steps = lidar.azimuth_steps
    column = ((np.arctan2(y, x) + np.pi) * (steps / (2 * np.pi))).astype(np.int64) % steps
    image = np.full(lidar.n_beams * steps, np.nan, np.float32)
    inside = beam >= 0
    image[beam[inside] * steps + column[inside]] = np.sqrt(horizontal_sq + z * z)[inside]
    return image.reshape(lidar.n_beams, steps)


def _ground_beams(ranges: np.ndarray, lidar: LidarModel) -> tuple[np.ndarray, float]:
    """Indices of beams that must hit the ground within GROUND_RANGE_SHARE of max range, and
    the estimated mount height (NaN when no downward beam has a return)."""
    elevations = np.radians(np.asarray(lidar.elevations_deg, dtype=np.float64))
    populated = np.flatnonzero(np.isfinite(ranges).any(axis=1) & (elevations < 0))
    if populated.size == 0:
        return populated, float("nan")
    lowest = populated[0]
    row = ranges[lowest][np.isfinite(ranges[lowest])]
    height = float(np.median(row)) * -np.sin(elevations[lowest])
    with np.errstate(divide="ignore"):
        ground_range = height / np.tan(-elevations)
    reach = GROUND_RANGE_SHARE * lidar.max_range
    return np.flatnonzero((elevations < 0) & (ground_range < reach)), height


def _sector_gap_deg(ground_ranges: np.ndarray) -> float:
    """Widest run of azimuth steps, wrapping around, where no ground-bound beam returns."""
    steps = ground_ranges.shape[1]
    if ground_ranges.shape[0] == 0:
        return 360.0
    hit = np.isfinite(ground_ranges).any(axis=0)
    where = np.flatnonzero(hit)
    if where.size == 0:
        return 360.0
    # gaps between consecutive returning steps, and the one across the seam
    runs = np.diff(where, append=where[0] + steps) - 1
    return float(runs.max()) * 360.0 / steps


def _saturated_fraction(points: np.ndarray) -> float:
    """Share of returns within 1 % of the cloud's top intensity (0 without a nonzero channel)."""
    if points.shape[1] < 4:
        return 0.0
    intensity = points[:, 3]
    top = float(intensity.max())
    if not np.isfinite(top):
        intensity = intensity[np.isfinite(intensity)]
        top = float(intensity.max()) if intensity.size else 0.0
    if top <= 0:
        return 0.0
    return float(np.count_nonzero(intensity >= SATURATION_SHARE * top)) / len(points)


def _below_ground_fraction(points: np.ndarray, height: float) -> float:
    """Share of returns under the ground plane at -height, beyond pitch and grade tolerance."""
    if not np.isfinite(height):
        return 0.0
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    limit = -height - BELOW_GROUND_ABS - BELOW_GROUND_REL * np.sqrt(x * x + y * y)
    return float(np.count_nonzero(z < limit)) / len(points)


def _isolated_fraction(ranges: np.ndarray) -> float:
    """Share of returns with none of the two nearest rays on each side of the scan line within
    reach (two, so that a lost neighbour alone does not isolate a return)."""
    centre = ranges[:, 2:-2]
    present = np.isfinite(centre)
    connected = np.zeros(centre.shape, bool)
    width = ranges.shape[1]
    for offset in (-2, -1, 1, 2):
        reach = NEIGHBOUR_ABS + NEIGHBOUR_REL * abs(offset) * centre
        neighbour = ranges[:, 2 + offset : width - 2 + offset]
        connected |= np.abs(neighbour - centre) < reach  # NaN (missing) compares False
    return float(np.count_nonzero(present & ~connected)) / max(int(np.count_nonzero(present)), 1)


def lidar_quality(points: np.ndarray, lidar: LidarModel) -> ModalityQuality:
    """Quality of one sweep against its beam pattern."""
    if points.ndim != 2 or points.shape[1] < 3:
        raise CloudError(f"expected an (N, >=3) point array, got shape {points.shape}")
    finite = np.isfinite(points[:, 0] + points[:, 1] + points[:, 2])  # NaN/inf propagate
    if not finite.all():
        points = points[finite]
    if len(points) == 0:  # a dead lidar: no data, every factor 0
        return combine(dict.fromkeys(FACTORS, 0.0), dict.fromkeys(MEASURES, 0.0))
    ranges = range_image(points, lidar)
    ground, height = _ground_beams(ranges, lidar)
    ground_ranges = ranges[ground]
    fill = float(np.isfinite(ground_ranges).mean()) if ground.size else 0.0
    gap = _sector_gap_deg(ground_ranges)
    saturated = _saturated_fraction(points)
    below_ground = _below_ground_fraction(points, height)

    # scan-line neighbours by slicing (the two columns at the +-pi seam are left out)
    left, centre, right = ranges[:, :-2], ranges[:, 1:-1], ranges[:, 2:]
    residual = np.abs(centre - 0.5 * (left + right))
    residual = residual[np.isfinite(residual)][::2]  # every other one is plenty for a quartile
    noise = 0.0
    if residual.size >= MIN_TRIPLES:
        quartile = np.partition(residual, residual.size // 4)[residual.size // 4]
        noise = float(quartile / (QUARTILE_OF_ABS_NORMAL * np.sqrt(1.5)))
    isolated = _isolated_fraction(ranges)

    measures = {
        "n_points": float(len(points)),
        "fill_fraction": fill,
        "ground_beams": float(ground.size),
        "range_noise_m": noise,
        "isolated_fraction": isolated,
        "sector_gap_deg": gap,
        "saturated_fraction": saturated,
        "below_ground_fraction": below_ground,
    }
    factors = {
        "density": float(np.sqrt(min(fill / HEALTHY_FILL, 1.0))),
        "noise": falling(noise, *NOISE_CURVE),
        "isolated": falling(isolated, *ISOLATED_CURVE),
        "sector_gap": falling(gap, *GAP_CURVE),
        "saturation": falling(saturated, *SATURATED_CURVE),
        "below_ground": falling(below_ground, *BELOW_GROUND_CURVE),
    }
    return combine(factors, measures)
