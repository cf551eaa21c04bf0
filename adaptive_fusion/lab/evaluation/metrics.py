"""3D detection mAP as nuScenes defines matching: a detection matches the nearest unmatched ground
truth box of its class in the same frame whose bird's-eye-view centre lies within a distance
threshold, detections taken in descending score order. AP per (class, threshold) is the area under
the precision envelope (all-point interpolation, as PASCAL VOC 2010+ does, so results can be checked
by hand); mAP averages over thresholds (0.5, 1, 2, 4 m) and over classes with ground truth.
nuScenes' own AP (nuscenes_average_precision) is reported beside it: same matching, but the
precision sampled at 101 recall points and only the part above 10% recall and 10% precision
counted, so it is lower; papers that report nuScenes mAP use that one.
Restricted to a subset of the boxes (a distance band, say), it ignores what lies outside the subset
the way KITTI ignores "don't care" regions (ranked_hits); evaluation/breakdown.py builds on that."""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adaptive_fusion.core.boxes import Boxes3D

DISTANCE_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)
# nuScenes detection config (detection_cvpr_2019): min_recall and min_precision of its calc_ap
NUSCENES_MIN_RECALL = 0.1
NUSCENES_MIN_PRECISION = 0.1
NUSCENES_RECALL_POINTS = 101


@dataclass
class DetectionMetrics:
    mean_ap: float
    class_ap: dict[str, float]  # averaged over thresholds; NaN for classes without ground truth
    threshold_ap: dict[float, float]  # averaged over classes with ground truth
    ground_truth: dict[str, int]
    nuscenes_map: float  # nuScenes' own AP definition (nuscenes_average_precision), same matches
    nuscenes_class_ap: dict[str, float]

    def to_dict(self, nuscenes: bool = False) -> dict:
        """The package's metric; with `nuscenes`, nuScenes' own AP beside it."""
        clean = lambda x: None if np.isnan(x) else round(float(x), 4)  # noqa: E731
        summary = {
            "mAP": clean(self.mean_ap),
            "AP_per_class": {name: clean(ap) for name, ap in self.class_ap.items()},
            "AP_per_threshold_m": {str(t): clean(ap) for t, ap in self.threshold_ap.items()},
            "ground_truth_per_class": self.ground_truth,
        }
        if nuscenes:
            summary["nuscenes_official_mAP"] = clean(self.nuscenes_map)
            summary["nuscenes_official_AP_per_class"] = {
                name: clean(ap) for name, ap in self.nuscenes_class_ap.items()}
        return summary


def assign_frame(
    pred_centers: np.ndarray, pred_scores: np.ndarray, gt_centers: np.ndarray, threshold: float
) -> np.ndarray:
    """Index of the ground truth box each prediction (in the given order) matches, -1 for none:
    greedy in descending score, each to the nearest still unmatched box within `threshold` metres
    (BEV)."""
    assigned = np.full(len(pred_centers), -1, dtype=np.int64)
    if len(gt_centers) == 0 or len(pred_centers) == 0:
        return assigned
    distance = np.linalg.norm(pred_centers[:, None, :2] - gt_centers[None, :, :2], axis=2)
    taken = np.zeros(len(gt_centers), dtype=bool)
    for i in np.argsort(-pred_scores, kind="stable"):
        candidates = np.where(taken, np.inf, distance[i])
        j = int(np.argmin(candidates))
        if candidates[j] < threshold:
            taken[j] = True
            assigned[i] = j
    return assigned


def match_frame(
    pred_centers: np.ndarray, pred_scores: np.ndarray, gt_centers: np.ndarray, threshold: float
) -> np.ndarray:
    """True for each prediction (in the given order) that matches a ground truth box
    (assign_frame)."""
    return assign_frame(pred_centers, pred_scores, gt_centers, threshold) >= 0


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


def nuscenes_average_precision(
    scores: np.ndarray, true_positive: np.ndarray, num_ground_truth: int
) -> float:
    """AP as nuScenes' devkit computes it (nuscenes.eval.detection.algo: accumulate, calc_ap):
    precision at 101 evenly spaced recalls (linear interpolation, 0 past the highest recall
    reached, no envelope), the points above 10% recall only, each less 10% precision (clipped at
    0), averaged and divided by 0.9. NaN without ground truth. Written here so that every run
    and sweep is scored without writing nuScenes tables; checked against the devkit's calc_ap on
    the same matches, and DetectionEval agrees on the world's scenes (lab/nuscenes/)."""
    if num_ground_truth == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(true_positive[order]).astype(float)
    precision = hits / np.arange(1, len(order) + 1)
    recall = hits / num_ground_truth
    sampled = np.interp(np.linspace(0.0, 1.0, NUSCENES_RECALL_POINTS), recall, precision, right=0)
    kept = sampled[round(100 * NUSCENES_MIN_RECALL) + 1:] - NUSCENES_MIN_PRECISION
    return float(np.mean(np.clip(kept, 0.0, None))) / (1.0 - NUSCENES_MIN_PRECISION)


@dataclass
class RankedHits:
    """The detections of one class at one threshold over all frames, ignored ones left out."""

    scores: np.ndarray
    true_positive: np.ndarray
    num_ground_truth: int

    def average_precision(self) -> float:
        return average_precision(self.scores, self.true_positive, self.num_ground_truth)

    def nuscenes_average_precision(self) -> float:
        return nuscenes_average_precision(self.scores, self.true_positive, self.num_ground_truth)


def ranked_hits(
    predictions: Sequence[Boxes3D], ground_truths: Sequence[Boxes3D], label: int,
    threshold: float, counted_truth: Sequence[np.ndarray] | None = None,
    counted_predictions: Sequence[np.ndarray] | None = None,
) -> RankedHits:
    """Class `label`'s detections matched (assign_frame) against all of its ground truth.

    Per frame, `counted_truth` (a bool per ground truth box) and `counted_predictions` (a bool
    per prediction) restrict the evaluation to a subset, KITTI-style: only counted ground truth
    is in the recall's denominator; a detection matched to uncounted ground truth is ignored
    (neither TP nor FP), and so is an unmatched detection that is not counted itself. None
    counts everything (the plain metric)."""
    scores, hits, num_gt = [], [], 0
    for f, (pred, gt) in enumerate(zip(predictions, ground_truths, strict=True)):
        mine_p, mine_g = pred.labels == label, gt.labels == label
        gt_counted = np.ones(len(gt), bool) if counted_truth is None else counted_truth[f]
        pred_counted = (np.ones(len(pred), bool) if counted_predictions is None
                        else counted_predictions[f])
        p, g, gt_counted = pred.select(mine_p), gt.select(mine_g), gt_counted[mine_g]
        assigned = assign_frame(p.centers, p.scores, g.centers, threshold)
        matched = assigned >= 0
        true_positive = matched & gt_counted[np.maximum(assigned, 0)] if len(g) else matched
        keep = true_positive | (~matched & pred_counted[mine_p])
        scores.append(p.scores[keep])
        hits.append(true_positive[keep])
        num_gt += int(gt_counted.sum())
    return RankedHits(np.concatenate(scores), np.concatenate(hits), num_gt)


def hit_table(
    predictions: Sequence[Boxes3D], ground_truths: Sequence[Boxes3D], num_classes: int,
    thresholds: Sequence[float] = DISTANCE_THRESHOLDS,
    counted_truth: Sequence[np.ndarray] | None = None,
    counted_predictions: Sequence[np.ndarray] | None = None,
) -> list[list[RankedHits]]:
    """ranked_hits for every class (rows) and threshold (columns)."""
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} prediction frames vs {len(ground_truths)} truths")
    for name, masks, boxes in (("counted_truth", counted_truth, ground_truths),
                               ("counted_predictions", counted_predictions, predictions)):
        if masks is not None and [len(m) for m in masks] != [len(b) for b in boxes]:
            raise ValueError(f"{name} needs one bool per box in every frame")
    return [[ranked_hits(predictions, ground_truths, c, t, counted_truth, counted_predictions)
             for t in thresholds] for c in range(num_classes)]


def summarise(
    table: Sequence[Sequence[RankedHits]], classes: Sequence[str],
    thresholds: Sequence[float] = DISTANCE_THRESHOLDS,
) -> DetectionMetrics:
    """AP per class and threshold averaged as nuScenes does (classes without ground truth left
    out of the means)."""
    ap = np.array([[hits.average_precision() for hits in row] for row in table])
    ap = ap.reshape(len(classes), len(thresholds))
    official = np.array([[hits.nuscenes_average_precision() for hits in row] for row in table])
    official = official.reshape(len(classes), len(thresholds))
    with warnings.catch_warnings():
        # nanmean of an all-NaN row warns; a class without ground truth is expected here.
        warnings.simplefilter("ignore", RuntimeWarning)
        class_ap = np.nanmean(ap, axis=1)
        threshold_ap = np.nanmean(ap, axis=0)
        mean_ap = float(np.nanmean(ap))
        official_class_ap = np.nanmean(official, axis=1)
        official_map = float(np.nanmean(official))
    return DetectionMetrics(
        mean_ap=mean_ap,
        class_ap={name: float(a) for name, a in zip(classes, class_ap, strict=True)},
        threshold_ap={float(t): float(a) for t, a in zip(thresholds, threshold_ap, strict=True)},
        ground_truth={name: row[0].num_ground_truth if len(row) else 0
                      for name, row in zip(classes, table, strict=True)},
        nuscenes_map=official_map,
        nuscenes_class_ap={name: float(a)
                           for name, a in zip(classes, official_class_ap, strict=True)},
    )


def evaluate_detections(
    predictions: Sequence[Boxes3D],
    ground_truths: Sequence[Boxes3D],
    classes: Sequence[str],
    thresholds: Sequence[float] = DISTANCE_THRESHOLDS,
    counted_truth: Sequence[np.ndarray] | None = None,
    counted_predictions: Sequence[np.ndarray] | None = None,
) -> DetectionMetrics:
    """mAP over frames (predictions[i] pairs with ground_truths[i]), optionally restricted to a
    subset of the boxes (ranked_hits)."""
    return summarise(hit_table(predictions, ground_truths, len(classes), thresholds,
                               counted_truth, counted_predictions), classes, thresholds)
