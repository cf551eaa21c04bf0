"""Which boxes a score counts.

"all", the package's own protocol: every object whose centre lies in the camera's view within
max_depth (runner.evaluated_objects), however far or hidden, and every detection.

"nuscenes", as nuScenes' detection benchmark filters its boxes before matching (its
`filter_eval_boxes`): ground truth and detections beyond the class's range from the ego vehicle
are dropped (50 m for cars, 40 m for pedestrians and bicycles, bird's-eye view from the lidar
origin), and so is ground truth without a single lidar return inside its box. The returns are
counted in the clean scene, so that every condition is scored against the same ground truth, as
nuScenes counts them in the annotated sweep. The filters are nuScenes'; its AP definition is
reported beside the package's as `nuscenes_official_mAP` (metrics.nuscenes_average_precision):
that is the number to compare with papers reporting nuScenes mAP, not the package's all-point
AP.
"""

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.core.frames import FrameSet
from adaptive_fusion.lab.evaluation.runner import DetectedFrames, lidar_points_in_boxes

PROTOCOLS = ("all", "nuscenes")
# nuScenes' class_range of its detection config, by our class names (its "bicycle" for cyclist).
NUSCENES_CLASS_RANGE_M = {"car": 50.0, "pedestrian": 40.0, "cyclist": 40.0}


def check_protocol(protocol: str, classes: Sequence[str]) -> None:
    """ValueError unless `protocol` is known and can score these classes."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    unknown = [name for name in classes if name not in NUSCENES_CLASS_RANGE_M]
    if protocol == "nuscenes" and unknown:
        raise ValueError(f"protocol nuscenes has no class range for {unknown}")


def within_class_range(boxes: Boxes3D, classes: Sequence[str]) -> np.ndarray:
    limits = np.array([NUSCENES_CLASS_RANGE_M[name] for name in classes])
    return np.hypot(boxes.centers[:, 0], boxes.centers[:, 1]) <= limits[boxes.labels]


def nuscenes_view(run: DetectedFrames, scenes: Sequence[FrameSet],
                  classes: Sequence[str]) -> DetectedFrames:
    """The run as nuScenes would score it; `scenes` are the clean scenes the run's frames were
    made from, in the same order."""
    check_protocol("nuscenes", classes)
    view = replace(run, predictions=[], truths=[], visibility=[], lidar_returns=[])
    for scene, prediction, truth, visibility, returns in zip(
            scenes, run.predictions, run.truths, run.visibility, run.lidar_returns, strict=True):
        keep = within_class_range(truth, classes) & (lidar_points_in_boxes(scene.points, truth) > 0)
        view.truths.append(truth.select(keep))
        view.visibility.append(visibility[keep])
        view.lidar_returns.append(returns[keep])
        view.predictions.append(prediction.select(within_class_range(prediction, classes)))
    return view
