"""Depth-camera quality from one depth image (metres, NaN or <= 0 where invalid), no labels.

Measures:
- valid_fraction: share of pixels with a depth.
- hole_fraction: invalid share of the part of the image where the scene is: below the first
  valid pixel of each column. Sky and far background above the scene are invalid for every
  healthy depth camera (out of range), so they must not count; a hole is a missing pixel where
  the scene continues. Two kinds of missing data are not sky, and count whole: a column with no
  depth at all (from the median first valid row down: a forward-looking camera always sees
  the ground below the horizon), and a cut: half or more of the columns starting at the same
  row while the depth there is nearer than 0.8 of the far part of the scene (its 99th
  percentile) or does not recede (grows by under 10 % over the 3 rows up to it). Sky ends
  where the range runs out, at a horizon where the ground recedes fast, or along the
  silhouettes of what stands in front of it; a roofline can hold a third of the columns to one
  row, while a band lost to the sensor (a failed region of the imager, a blocked emitter) holds
  them all.
- roughness_rel: noise relative to range, from Immerkaer's mask (zero on planes and bilinear
  surfaces, so tilted ground and walls give no response) over pixels whose 3x3 neighbourhood is
  valid: sigma_rel = 1.4826 median(|response| / z) / 6. The median ignores depth edges.
- quant_step_m: the depth quantisation step, found as the smallest non-zero difference between
  horizontal neighbours: quantised depth only changes in whole steps, however noisy it is,
  while continuous depth has arbitrarily small differences.
- error_rel: relative depth error sqrt(roughness^2 + (step / 2 / median z)^2). Quantisation
  counts with its largest error, half a step, not with a uniform quantiser's std (step /
  sqrt(12)): noise averages out over an object's pixels, while every pixel of a surface rounds
  the same way, so half a step is a bias the detector cannot average away.
- flying_fraction: share of the valid pixels (with at least 5 valid neighbours) that fewer than
  2 of their 8 neighbours lie within max(3 %, 4 roughness) of their own depth: mixed pixels
  strewn between a foreground edge and the background (time-of-flight and stereo cameras both
  make them), which stand alone in 3D. A pixel on a surface, however steep, has neighbours
  along it; the tolerance grows with the measured noise so that noise alone is not read as
  flying pixels. Mixing that is smooth along an edge (every pixel of the edge blended the same
  way) reads as a steep surface and is not seen.

Reference values (healthy limit / half-point, see score.py):
- hole fraction 0.05 / 0.2: stereo shadows beside near objects and speckle on dark or shiny
  surfaces cost a healthy camera a few percent; a fifth of the scene missing hides whole
  pedestrians at range.
- relative error 0.01 / 0.03: healthy structured-light, ToF and stereo cameras sit at
  0.2-1 % within their range; 3 % is 0.3 m at 10 m, half the depth of a pedestrian. A 10 cm
  quantisation at 2.7 m (a 16-bit image in cm, or coarse disparity) is 1.9 %.
- flying fraction 0.01 / 0.04: the Middlebury motorcycle's ground truth and the rendered world
  read 0.3-0.5 % (thin structures, edge pixels); at 4 % the edges of every object are a cloud.
"""

import cv2
import numpy as np

from adaptive_fusion.quality.score import ModalityQuality, combine, falling

IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
MAD_TO_SIGMA = 1.4826

# (healthy limit, half-point, power) of each factor's curve, see score.py and the docstring
HOLES_CURVE = (0.05, 0.2, 2.0)
ERROR_CURVE = (0.01, 0.03, 2.0)
FLYING_CURVE = (0.01, 0.04, 2.0)
FLYING_TOLERANCE_REL = 0.03
FLYING_NOISE_SIGMAS = 4.0
CUT_SHARE = 0.5  # of the columns starting at one row: a cut, not a skyline
CUT_NEAR = 0.8  # ... while nearer than this share of the far part of the scene
# ... or not receding: at a horizon the ground's depth grows fast towards the range limit
# (by 30-40 % over the last 3 rows in the world), a wall's or a background's does not
HORIZON_ROWS, HORIZON_RECEDE = 3, 1.1
FAR_AWAY = 1e6  # log depth given to invalid pixels: never near anything
NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


MEASURES = ("valid_fraction", "hole_fraction", "roughness_rel", "quant_step_m", "median_depth_m",
            "error_rel", "flying_fraction")


class DepthError(ValueError):
    """The input is not a 2D depth image."""


def _roughness(filled: np.ndarray, valid: np.ndarray) -> float:
    inner = cv2.erode(valid.view(np.uint8), np.ones((3, 3), np.uint8))[::2, ::2].astype(bool)
    if not inner.any():
        return 0.0
    response = cv2.filter2D(filled, cv2.CV_32F, IMMERKAER)[::2, ::2][inner]
    return float(MAD_TO_SIGMA * np.median(np.abs(response) / filled[::2, ::2][inner]) / 6)


def _quant_step(depth: np.ndarray) -> float:
    steps = np.abs(np.diff(depth[::2], axis=1)).ravel()
    steps = steps[steps > 0]  # NaN compares False, so invalid pairs drop out too
    return float(steps.min()) if steps.size else 0.0


def _scene_pixels(depth: np.ndarray, valid: np.ndarray, far: float) -> int:
    """How many pixels show the scene, that is all but the sky (see hole_fraction)."""
    height = depth.shape[0]
    has_depth = valid.any(axis=0)
    start = np.argmax(valid, axis=0)  # first valid row per column
    rows = start[has_depth]
    counts = np.bincount(rows, minlength=height)
    cut_row = int(np.argmax(counts[1:])) + 1 if height > 1 else 0  # row 0 has nothing above
    if cut_row and counts[cut_row] >= CUT_SHARE * rows.size:
        at_cut = has_depth & (start == cut_row)
        edge = depth[cut_row, at_cut]
        below = depth[min(cut_row + HORIZON_ROWS, height - 1), at_cut]
        receding = np.nanmedian(edge / below) >= HORIZON_RECEDE
        if np.median(edge) < CUT_NEAR * far or not receding:
            start = np.where(at_cut, 0, start)
    start = np.where(has_depth, start, int(np.median(rows)))
    return int(np.sum(height - start))


def _flying_fraction(filled: np.ndarray, valid: np.ndarray, roughness: float) -> float:
    """See flying_fraction. On every other row (each against its full neighbourhood), in log
    depth, where "within a share of its own depth" is one threshold for every pixel, so that
    OpenCV's vector kernels do the work (numpy's took as long as the rest of the measures)."""
    height, width = filled.shape
    if height < 3 or width < 3:
        return 0.0
    log_depth = np.full(filled.shape, FAR_AWAY, np.float32)
    np.log(filled, out=log_depth, where=valid)
    threshold = float(np.log1p(max(FLYING_TOLERANCE_REL, FLYING_NOISE_SIGMAS * roughness)))
    centre = log_depth[1:-1:2, 1:-1]
    close = np.zeros(centre.shape, np.uint16)  # 255 per close neighbour
    for dy, dx in NEIGHBOURS:
        neighbour = log_depth[1 + dy : height - 1 + dy : 2, 1 + dx : width - 1 + dx]
        near = cv2.compare(cv2.absdiff(neighbour, centre), threshold, cv2.CMP_LE)
        close = cv2.add(close, near, dtype=cv2.CV_16U)
    neighbours = cv2.boxFilter(valid.view(np.uint8), cv2.CV_16U, (3, 3), normalize=False,
                               borderType=cv2.BORDER_CONSTANT)[1:-1:2, 1:-1]
    counted = valid[1:-1:2, 1:-1] & (neighbours >= 6)  # itself and at least 5 neighbours
    total = int(np.count_nonzero(counted))
    return float(np.count_nonzero(counted & (close < 2 * 255)) / total) if total else 0.0


def depth_quality(depth: np.ndarray) -> ModalityQuality:
    """Quality of an (H, W) float depth image in metres."""
    if depth.ndim != 2:
        raise DepthError(f"expected an (H, W) depth image, got shape {depth.shape}")
    depth = np.asarray(depth, dtype=np.float32)
    valid = depth > 0  # False for NaN
    n_valid = int(np.count_nonzero(valid))
    if n_valid == 0:  # a dead depth camera: no data, every factor 0
        empty = dict.fromkeys(MEASURES, 0.0) | {"hole_fraction": 1.0}
        return combine({"holes": 0.0, "precision": 0.0, "flying": 0.0}, empty)
    filled = depth.copy()
    cv2.patchNaNs(filled, 0.0)
    np.maximum(filled, 0.0, out=filled)
    roughness = _roughness(filled, valid)
    step = _quant_step(depth)
    sample = filled[::4, ::4]
    sample = sample[sample > 0]
    if sample.size == 0:  # fewer valid pixels than the subsample can see
        sample = depth[valid]
    median_z = float(np.median(sample))
    far = float(np.percentile(sample, 99))
    holes = max(0.0, 1.0 - n_valid / _scene_pixels(depth, valid, far))
    error = float(np.hypot(roughness, step / 2 / median_z))
    flying = _flying_fraction(filled, valid, roughness)
    measures = {
        "valid_fraction": n_valid / depth.size,
        "hole_fraction": holes,
        "roughness_rel": roughness,
        "quant_step_m": step,
        "median_depth_m": median_z,
        "error_rel": error,
        "flying_fraction": flying,
    }
    factors = {
        "holes": falling(holes, *HOLES_CURVE),
        "precision": falling(error, *ERROR_CURVE),
        "flying": falling(flying, *FLYING_CURVE),
    }
    return combine(factors, measures)
