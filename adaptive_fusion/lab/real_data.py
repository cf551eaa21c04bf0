"""Real sensor data that ships with a package here (no download): scikit-image's photographs and
the Middlebury 2014 motorcycle stereo pair with its ground-truth disparity. The quality tests and
bench/bench_quality.py score the quality measures on them beside the synthetic world."""

import numpy as np

# scikit-image's copy of the Middlebury motorcycle is downsampled 4x; its calibration at that size
MIDDLEBURY_FOCAL_PX = 994.978
MIDDLEBURY_BASELINE_M = 0.193001
MIDDLEBURY_DOFFS_PX = 31.086  # the difference of the two principal points' x


def real_photos() -> dict[str, np.ndarray]:
    """scikit-image's photographs, RGB as stored (the Middlebury motorcycle's left view too)."""
    from skimage import data

    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(),
            "rocket": data.rocket(), "motorcycle": data.stereo_motorcycle()[0]}  # fmt: skip


def middlebury_depth() -> np.ndarray:
    """The motorcycle's ground-truth disparity as depth in metres, NaN where unknown (7 %)."""
    from skimage import data

    disparity = data.stereo_motorcycle()[2]
    depth = MIDDLEBURY_FOCAL_PX * MIDDLEBURY_BASELINE_M / (disparity + MIDDLEBURY_DOFFS_PX)
    return np.where(np.isfinite(disparity), depth, np.nan).astype(np.float32)
