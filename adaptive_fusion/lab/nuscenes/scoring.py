"""The detector on a nuScenes split, its detections as a nuScenes detection submission, scored
by the devkit's own DetectionEval beside the package's metric on the same detections.

The submission is nuScenes' results format: {"meta": {...}, "results": {sample_token: [box]}}
with every sample of the split present (DetectionEval requires it, empty lists included).
DetectionEval's configuration is nuScenes' detection_cvpr_2019 with its class_names narrowed to
the package's three classes (car, pedestrian, bicycle): the config's class_range must name all
ten nuScenes classes, but mAP and the TP errors average over class_names only.
"""

import json
import os
from collections.abc import Sequence

from nuscenes.eval.detection.config import config_factory
from nuscenes.eval.detection.data_classes import DetectionConfig
from nuscenes.eval.detection.evaluate import DetectionEval
from nuscenes.nuscenes import NuScenes

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.lab.evaluation.metrics import evaluate_detections
from adaptive_fusion.lab.evaluation.protocol import nuscenes_view
from adaptive_fusion.lab.evaluation.runner import detect_frames
from adaptive_fusion.lab.nuscenes.geometry import LidarPlacement
from adaptive_fusion.lab.nuscenes.reader import (
    DETECTION_NAME_BY_CLASS,
    NuScenesFrames,
    default_attribute,
)
from adaptive_fusion.model.detector import AdaptiveFusionDetector

DETECTION_CONFIG = "detection_cvpr_2019"
SUBMISSION_META = {"use_camera": True, "use_lidar": True, "use_radar": False, "use_map": False,
                   "use_external": False}


def detection_config(classes: Sequence[str]) -> DetectionConfig:
    """nuScenes' detection config, scoring only these package classes."""
    config = config_factory(DETECTION_CONFIG)
    config.class_names = [DETECTION_NAME_BY_CLASS[name] for name in classes]
    return config


def submission_boxes(sample_token: str, boxes: Boxes3D, placement: LidarPlacement,
                     classes: Sequence[str]) -> list[dict]:
    """One sample's detections in the results format, in the global frame. The detector does
    not estimate motion: velocity is (0, 0) and the attribute that of a standing object."""
    return [{
        "sample_token": sample_token,
        "translation": box.center.tolist(),
        "size": box.wlh.tolist(),
        "rotation": list(box.orientation.elements),
        "velocity": [0.0, 0.0],
        "detection_name": DETECTION_NAME_BY_CLASS[classes[box.label]],
        "detection_score": float(box.score),
        "attribute_name": default_attribute(box.label),
    } for box in placement.to_global(boxes)]


def write_submission(path: str, results: dict[str, list[dict]]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"meta": SUBMISSION_META, "results": results}, f)


def devkit_scores(nusc: NuScenes, submission: str, split: str, classes: Sequence[str],
                  output_dir: str) -> dict:
    """DetectionEval on a submission file: mAP, NDS, the TP errors and AP per class."""
    evaluation = DetectionEval(nusc, detection_config(classes), submission, split, output_dir,
                               verbose=False)
    metrics, _ = evaluation.evaluate()
    summary = metrics.serialize()
    return {"mAP": summary["mean_ap"], "NDS": summary["nd_score"],
            "tp_errors": summary["tp_errors"], "AP_per_class": summary["mean_dist_aps"]}


def score_split(model: AdaptiveFusionDetector, frames: NuScenesFrames, out_dir: str,
                show_progress: bool = False) -> dict:
    """Run the model (all blocks) on every sample of the split, write out_dir/submission.json,
    and score it with the devkit and with the package's metric (its own protocol, and its
    nuScenes protocol with nuScenes' AP definition, protocol.py)."""
    from tqdm import tqdm

    classes = model.config.classes
    scenes = list(tqdm(frames, desc="read samples", disable=not show_progress))
    run = detect_frames(model, scenes)
    results = {token: submission_boxes(token, boxes, frames.placement(token), classes)
               for token, boxes in zip(frames.sample_tokens, run.predictions, strict=True)}
    submission = os.path.join(out_dir, "submission.json")
    write_submission(submission, results)
    package = evaluate_detections(run.predictions, run.truths, classes)
    view = nuscenes_view(run, scenes, classes)
    package_nuscenes = evaluate_detections(view.predictions, view.truths, classes)
    return {
        "samples": len(frames), "split": frames.split, "depth": frames.depth,
        "detections": int(sum(len(p) for p in run.predictions)),
        "submission": submission,
        "devkit": devkit_scores(frames.nusc, submission, frames.split, classes, out_dir),
        "package": package.to_dict(),
        "package_nuscenes_protocol": package_nuscenes.to_dict(nuscenes=True),
    }
