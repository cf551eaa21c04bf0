"""Depth-camera quality from one depth image (metres, NaN or <= 0 where invalid), no labels.

Measures:
- valid_fraction: share of pixels with a depth.
- hole_fraction: invalid share of the part of the image below the first valid pixel of each
  column. Sky and far background above the scene are invalid for every healthy depth camera
  (out of range), so they must not count; a hole is a missing pixel where the scene continues.
- roughness_rel: noise relative to range, from Immerkaer's mask (zero on planes and bilinear
  surfaces, so tilted ground and walls give no response) over pixels whose 3x3 neighbourhood is
  valid: sigma_rel = 1.4826 median(|response| / z) / 6. The median ignores depth edges.
- quant_step_m: the depth quantisation step, found as the smallest non-zero difference between
  horizontal neighbours: quantised depth only changes in whole steps, however noisy it is,
  while continuous depth has arbitrarily small differences.
- error_rel: total relative depth error sqrt(roughness^2 + (step / sqrt(12) / median z)^2)
  (a uniform quantiser of step q has error std q / sqrt(12)).

Reference values (healthy limit / half-point, see score.py):
- hole fraction 0.05 / 0.2: stereo shadows beside near objects and speckle on dark or shiny
  surfaces cost a healthy camera a few percent; a fifth of the scene missing hides whole
  pedestrians at range.
- relative error 0.01 / 0.03: healthy structured-light, ToF and stereo cameras sit at
  0.2-1 % within their range; 3 % is 0.3 m at 10 m, half the depth of a pedestrian.
"""

import cv2
import numpy as np

from adaptive_fusion.quality.score import ModalityQuality, combine, falling

IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
MAD_TO_SIGMA = 1.4826

# (healthy limit, half-point, power) of each factor's curve, see score.py and the docstring
HOLES_CURVE = (0.05, 0.2, 2.0)
ERROR_CURVE = (0.01, 0.03, 2.0)


MEASURES = ("valid_fraction", "hole_fraction", "roughness_rel", "quant_step_m", "median_depth_m",
            "error_rel")


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


def depth_quality(depth: np.ndarray) -> ModalityQuality:
    """Quality of an (H, W) float depth image in metres."""
    if depth.ndim != 2:
        raise DepthError(f"expected an (H, W) depth image, got shape {depth.shape}")
    depth = np.asarray(depth, dtype=np.float32)
    valid = depth > 0  # False for NaN
    n_valid = int(np.count_nonzero(valid))
    if n_valid == 0:  # a dead depth camera: no data, every factor 0
        empty = dict.fromkeys(MEASURES, 0.0) | {"hole_fraction": 1.0}
        return combine({"holes": 0.0, "precision": 0.0}, empty)
    first_valid = np.argmax(valid, axis=0)  # per column; 0 for empty columns, excluded below
    scene_pixels = int(np.sum((depth.shape[0] - first_valid)[valid.any(axis=0)]))
    holes = 1.0 - n_valid / scene_pixels
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
    error = float(np.hypot(roughness, step / np.sqrt(12) / median_z))
    measures = {
        "valid_fraction": n_valid / depth.size,
        "hole_fraction": holes,
        "roughness_rel": roughness,
        "quant_step_m": step,
        "median_depth_m": median_z,
        "error_rel": error,
    }
    factors = {
        "holes": falling(holes, *HOLES_CURVE),
        "precision": falling(error, *ERROR_CURVE),
    }
    return combine(factors, measures)
