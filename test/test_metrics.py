"""The detection metric against cases computed by hand."""

import math

import numpy as np
import pytest

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.lab.evaluation.metrics import (
    assign_frame,
    average_precision,
    evaluate_detections,
    match_frame,
    nuscenes_average_precision,
    ranked_hits,
)

CLASSES = ("car", "pedestrian", "cyclist")


def boxes(centers, labels, scores=None) -> Boxes3D:
    n = len(centers)
    return Boxes3D(
        labels=np.asarray(labels, np.int64),
        centers=np.asarray(centers, np.float32).reshape(n, 3),
        sizes=np.ones((n, 3), np.float32),
        yaws=np.zeros(n, np.float32),
        scores=np.ones(n, np.float32) if scores is None else np.asarray(scores, np.float32),
    )


def test_average_precision_hand_computed():
    # Ranked TP, FP, TP over 2 ground truths: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # Envelope: 1, 2/3, 2/3 -> AP = 1/2 * 1 + 0 * 2/3 + 1/2 * 2/3 = 5/6.
    ap = average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 2)
    assert ap == pytest.approx(5 / 6)


def test_average_precision_order_comes_from_scores_and_missed_truth_lowers_recall():
    # Sorted by score: FP (0.9), TP (0.5); 3 ground truths -> recall reaches only 1/3 at
    # precision 1/2: AP = 1/3 * 1/2 = 1/6.
    ap = average_precision(np.array([0.5, 0.9]), np.array([True, False]), 3)
    assert ap == pytest.approx(1 / 6)


def test_average_precision_edge_cases():
    assert math.isnan(average_precision(np.array([0.5]), np.array([False]), 0))
    assert average_precision(np.zeros(0), np.zeros(0, bool), 4) == 0.0


def test_match_frame_greedy_by_score_to_nearest_unmatched():
    gt = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    # The high-score prediction at x=1.4 takes the nearest truth (x=0, 1.4 m away);
    # the low-score one at x=0.2 then finds x=0 taken and x=3 2.8 m away.
    pred = np.array([[0.2, 0.0, 0.0], [1.4, 0.0, 0.0]])
    scores = np.array([0.3, 0.9])
    assert match_frame(pred, scores, gt, 2.0).tolist() == [False, True]
    assert match_frame(pred, scores, gt, 4.0).tolist() == [True, True]
    assert match_frame(pred, scores, gt, 1.0).tolist() == [True, False]


def test_assign_frame_names_the_matched_truth():
    gt = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    pred = np.array([[2.9, 0.0, 0.0], [0.2, 0.0, 0.0], [9.0, 0.0, 0.0]])
    assert assign_frame(pred, np.array([0.9, 0.5, 0.7]), gt, 1.0).tolist() == [1, 0, -1]
    assert assign_frame(pred, np.ones(3), np.zeros((0, 3)), 1.0).tolist() == [-1, -1, -1]


def test_ranked_hits_ignores_what_lies_outside_the_counted_subset():
    # Truth: A (counted), B (not counted). P1 on A: TP. P2 on B: ignored. P3 unmatched and
    # counted: FP. P4 unmatched, not counted: ignored. A pedestrian prediction is another class.
    truth = [boxes([[5, 0, 0], [25, 0, 0]], [0, 0])]
    prediction = [boxes([[5.3, 0, 0], [25.2, 0, 0], [15, 0, 0], [40, 0, 0], [5, 0, 0]],
                        [0, 0, 0, 0, 1], [0.9, 0.8, 0.95, 0.6, 0.99])]
    hits = ranked_hits(prediction, truth, 0, 1.0, counted_truth=[np.array([True, False])],
                       counted_predictions=[np.array([True, True, True, False, True])])
    assert hits.scores.tolist() == pytest.approx([0.9, 0.95])
    assert hits.true_positive.tolist() == [True, False]
    assert hits.num_ground_truth == 1
    # Ranked FP (0.95) then TP (0.9): AP = 1 * 1/2.
    assert hits.average_precision() == pytest.approx(0.5)
    # Without a prediction subset every unmatched detection counts: P4 is a FP too.
    assert len(ranked_hits(prediction, truth, 0, 1.0,
                           counted_truth=[np.array([True, False])]).scores) == 3
    # Nothing restricted: the plain metric (both truths, P2 a TP as well).
    plain = ranked_hits(prediction, truth, 0, 1.0)
    assert plain.num_ground_truth == 2 and plain.true_positive.sum() == 2


def test_evaluate_detections_rejects_subset_masks_of_the_wrong_size():
    truth = [boxes([[5, 0, 0]], [0])]
    with pytest.raises(ValueError, match="counted_truth needs one bool per box"):
        evaluate_detections(truth, truth, CLASSES, counted_truth=[np.array([True, False])])


def test_match_frame_uses_bev_distance_only():
    gt = np.array([[10.0, 5.0, 0.0]])
    pred = np.array([[10.3, 5.0, 7.0]])  # 0.3 m off in BEV, 7 m off in height
    assert match_frame(pred, np.array([1.0]), gt, 0.5).tolist() == [True]


def test_evaluate_detections_hand_computed_map():
    # Frame 1: one car at the origin; frame 2: one car at (10, 0) and a pedestrian at (5, 5).
    truths = [
        boxes([[0, 0, 0]], [0]),
        boxes([[10, 0, 0], [5, 5, 0]], [0, 1]),
    ]
    predictions = [
        # car 0.7 m off (matches at 1, 2, 4 m), plus a far false positive with a low score.
        boxes([[0.7, 0, 0], [30, 0, 0]], [0, 0], [0.9, 0.2]),
        # car exact; pedestrian 3 m off (matches at 4 m only); a cyclist with no ground truth.
        boxes([[10, 0, 0], [8, 5, 0], [1, 1, 0]], [0, 1, 2], [0.8, 0.6, 0.5]),
    ]
    metrics = evaluate_detections(predictions, truths, CLASSES)
    # Car: 0.5 m -> ranked 0.9 FP, 0.8 TP, 0.2 FP -> AP = 1/2 * 1/2 = 1/4;
    # 1, 2, 4 m -> 0.9 TP, 0.8 TP -> AP 1. Car AP = (1/4 + 3) / 4 = 13/16.
    assert metrics.class_ap["car"] == pytest.approx(13 / 16)
    # Pedestrian: AP 0, 0, 0, 1 -> 1/4.
    assert metrics.class_ap["pedestrian"] == pytest.approx(1 / 4)
    assert math.isnan(metrics.class_ap["cyclist"])  # no ground truth: excluded from the mean
    assert metrics.mean_ap == pytest.approx((13 / 16 + 1 / 4) / 2)
    assert metrics.threshold_ap[0.5] == pytest.approx((1 / 4 + 0) / 2)
    assert metrics.threshold_ap[4.0] == pytest.approx(1.0)
    assert metrics.ground_truth == {"car": 2, "pedestrian": 1, "cyclist": 0}


def test_evaluate_detections_perfect_and_class_confusion():
    truth = [boxes([[1, 2, 0], [14, 4, 0]], [0, 2])]
    assert evaluate_detections(truth, truth, CLASSES).mean_ap == pytest.approx(1.0)
    swapped = [boxes([[1, 2, 0], [14, 4, 0]], [2, 0])]  # right places, wrong classes
    assert evaluate_detections(swapped, truth, CLASSES).mean_ap == pytest.approx(0.0)


def test_evaluate_detections_rejects_mismatched_frames():
    with pytest.raises(ValueError, match="frames"):
        evaluate_detections([boxes([], [])], [], CLASSES)


def test_nuscenes_ap_counts_only_above_ten_percent_recall_and_precision():
    """nuScenes' AP (its devkit's accumulate + calc_ap; checked equal on random rankings) beside
    the package's all-point AP, on rankings worked out by hand."""
    perfect = (np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, True, True, True]))
    assert nuscenes_average_precision(*perfect, 4) == pytest.approx(1.0)
    half = (np.array([0.9, 0.8]), np.array([True, True]))  # recall 0.5 at precision 1
    assert average_precision(*half, 4) == pytest.approx(0.5)
    # the recalls 0.11 .. 0.50 of the 101 sampled keep precision 1 (less 0.1), the rest 0
    assert nuscenes_average_precision(*half, 4) == pytest.approx(40 * 0.9 / 90 / 0.9)
    poor = (np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([False] * 4 + [True]))  # precision 0.2
    assert nuscenes_average_precision(*poor, 1) < average_precision(*poor, 1) == pytest.approx(0.2)
    assert np.isnan(nuscenes_average_precision(np.array([0.5]), np.array([False]), 0))
    assert nuscenes_average_precision(np.zeros(0), np.zeros(0, bool), 3) == 0.0
