"""3D detection mAP as nuScenes defines matching: a detection matches the nearest unmatched ground
truth box of its class in the same frame whose bird's-eye-view centre lies within a distance
threshold, detections taken in descending score order. AP per (class, threshold) is the area under
the precision envelope (all-point interpolation, as PASCAL VOC 2010+ does, so results can be checked
by hand); mAP averages over thresholds (0.5, 1, 2, 4 m) and over classes with ground truth."""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..model.coding import Boxes3D

DISTANCE_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)


@dataclass
class DetectionMetrics:
    mean_ap: float
    class_ap: dict[str, float]  # averaged over thresholds; NaN for classes without ground truth
    threshold_ap: dict[float, float]  # averaged over classes with ground truth
    ground_truth: dict[str, int]

    def to_dict(self) -> dict:
        clean = lambda x: None if np.isnan(x) else round(float(x), 4)  # noqa: E731
        return {
            "mAP": clean(self.mean_ap),
            "AP_per_class": {name: clean(ap) for name, ap in self.class_ap.items()},
            "AP_per_threshold_m": {str(t): clean(ap) for t, ap in self.threshold_ap.items()},
            "ground_truth_per_class": self.ground_truth,
        }


def match_frame(
    pred_centers: np.ndarray, pred_scores: np.ndarray, gt_centers: np.ndarray, threshold: float
) -> np.ndarray:
    """True for each prediction (in the given order) that matches a ground truth box: greedy in
    descending score, each to the nearest still unmatched box within `threshold` metres (BEV)."""
    matched_pred = np.zeros(len(pred_centers), dtype=bool)
    if len(gt_centers) == 0 or len(pred_centers) == 0:
        return matched_pred
    distance = np.linalg.norm(pred_centers[:, None, :2] - gt_centers[None, :, :2], axis=2)
    taken = np.zeros(len(gt_centers), dtype=bool)
    for i in np.argsort(-pred_scores, kind="stable"):
        candidates = np.where(taken, np.inf, distance[i])
        j = int(np.argmin(candidates))
        if candidates[j] < threshold:
            taken[j] = True
            matched_pred[i] = True
    return matched_pred


def average_precision(
    scores: np.ndarray, true_positive: np.ndarray, num_ground_truth: int
) -> float:
    """Area under the precision envelope over recall; NaN when there is no ground truth."""
    if num_ground_truth == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(true_positive[order])
    recall = hits / num_ground_truth
    precision = hits / np.arange(1, len(order) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    recall_steps = np.diff(recall, prepend=0.0)
    return float(np.sum(recall_steps * envelope))


def evaluate_detections(
    predictions: Sequence[Boxes3D],
    ground_truths: Sequence[Boxes3D],
    classes: Sequence[str],
    thresholds: Sequence[float] = DISTANCE_THRESHOLDS,
) -> DetectionMetrics:
    """mAP over frames (predictions[i] pairs with ground_truths[i])."""
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} prediction frames vs {len(ground_truths)} truths")
    table = np.full((len(classes), len(thresholds)), np.nan)
    counts = {}
    for c, name in enumerate(classes):
        num_gt = sum(int((gt.labels == c).sum()) for gt in ground_truths)
        counts[name] = num_gt
        for t, threshold in enumerate(thresholds):
            scores, hits = [], []
            for pred, gt in zip(predictions, ground_truths, strict=True):
                p, g = pred.select(pred.labels == c), gt.select(gt.labels == c)
                scores.append(p.scores)
                hits.append(match_frame(p.centers, p.scores, g.centers, threshold))
            table[c, t] = average_precision(np.concatenate(scores), np.concatenate(hits), num_gt)
    with warnings.catch_warnings():
        # nanmean of an all-NaN row warns; a class without ground truth is expected here.
        warnings.simplefilter("ignore", RuntimeWarning)
        class_ap = np.nanmean(table, axis=1)
        threshold_ap = np.nanmean(table, axis=0)
        mean_ap = float(np.nanmean(table))
    return DetectionMetrics(
        mean_ap=mean_ap,
        class_ap={name: float(ap) for name, ap in zip(classes, class_ap, strict=True)},
        threshold_ap={float(t): float(ap) for t, ap in zip(thresholds, threshold_ap, strict=True)},
        ground_truth=counts,
    )

