"""The mAP breakdown (lab/evaluation/breakdown.py) against cases computed by hand: bands and their
ignore convention, class confusion, localisation errors along and across the line of sight; then
`adaptive-fusion evaluate --breakdown` end to end on a tiny model."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.lab.evaluation.breakdown import (
    BandError,
    Bands,
    box_errors,
    breakdown,
)
from adaptive_fusion.lab.evaluation.metrics import evaluate_detections, hit_table
from adaptive_fusion.lab.evaluation.runner import DetectedFrames

CLASSES = ("car", "pedestrian", "cyclist")
ORIGIN = np.zeros(3)


def boxes(centers, labels, scores=None, yaws=None, sizes=None) -> Boxes3D:
    n = len(centers)
    return Boxes3D(
        labels=np.asarray(labels, np.int64),
        centers=np.asarray(centers, np.float32).reshape(n, 3),
        sizes=np.ones((n, 3), np.float32) if sizes is None else np.asarray(sizes, np.float32),
        yaws=np.zeros(n, np.float32) if yaws is None else np.asarray(yaws, np.float32),
        scores=np.ones(n, np.float32) if scores is None else np.asarray(scores, np.float32),
    )


def scenario() -> DetectedFrames:
    """One frame seen from the origin. Truth: cars T0 (5 m, visible), T1 (15 m, 5% visible, never
    found), T2 (25 m, visible); pedestrian T3 (8.5 m, visible). Predictions: car P2 (score 0.95)
    8.5 m from any truth, in the 10-20 m band; cars P0 and P1 exactly on T0 and T2; a cyclist P3
    0.2 m from the pedestrian. Lidar returns in the truth boxes: 50, 0, 5, 12."""
    truth = boxes([[5, 0, 0], [15, 0, 0], [25, 0, 0], [8, -3, 0]], [0, 0, 0, 1])
    prediction = boxes([[12, 8, 0], [5, 0, 0], [25, 0, 0], [8, -3.2, 0]], [0, 0, 0, 2],
                       [0.95, 0.9, 0.8, 0.7])
    return DetectedFrames([prediction], [truth], [np.array([0.9, 0.05, 0.9, 0.9], np.float32)],
                          [ORIGIN], [np.array([50, 0, 5, 12])])


def test_bands_label_and_index_half_open_with_an_open_top():
    bands = Bands((0.0, 10.0, 20.0, 30.0), " m")
    assert bands.labels == ["0-10 m", "10-20 m", "20-30 m", "30+ m"]
    assert bands.index(np.array([0.0, 9.99, 10.0, 35.0, -1.0])).tolist() == [0, 0, 1, 3, -1]
    assert Bands.parse("0, 0.1,0.5").labels == ["0-0.1", "0.1-0.5", "0.5+"]
    for bad in ("0,10,5", "", "0,x", "0,inf"):
        with pytest.raises(BandError, match="edges"):
            Bands.parse(bad)


def test_distance_bands_ignore_what_matches_or_lies_outside_the_band():
    result = breakdown(scenario(), CLASSES)["distance_bands"]
    # 0-10 m: truth T0 (car) and T3 (pedestrian). P0 is a TP; P1 matched T2 (20-30 m) and P2
    # lies in 10-20 m: both ignored. Car AP 1; no pedestrian detection: AP 0.
    near = result["0-10 m"]
    assert near["AP_per_class"] == {"car": 1.0, "pedestrian": 0.0, "cyclist": None}
    assert near["mAP"] == pytest.approx(0.5)
    assert near["ground_truth_per_class"] == {"car": 1, "pedestrian": 1, "cyclist": 0}
    assert near["recall_per_threshold_m"]["2.0"] == pytest.approx(0.5)
    # 10-20 m: only T1, never found; P2 is this band's false positive.
    assert result["10-20 m"]["AP_per_class"]["car"] == 0.0
    assert result["20-30 m"]["AP_per_class"]["car"] == 1.0
    assert result["30+ m"]["mAP"] is None  # no truth there


def test_visibility_bands_count_unmatched_detections_as_false_positives_everywhere():
    result = breakdown(scenario(), CLASSES)["visibility_bands"]
    # 0-0.1: T1 only; P0 and P1 matched visible cars (ignored), P2 (unmatched) is a FP.
    assert result["0-0.1"]["AP_per_class"]["car"] == 0.0
    assert result["0-0.1"]["recall_per_threshold_m"]["0.5"] == 0.0
    # 0.8+: T0, T2. Ranked P2 FP, P0 TP, P1 TP: precision 0, 1/2, 2/3 at recall 0, 1/2, 1
    # -> AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3. The pedestrian (AP 0) halves the band's mAP.
    visible = result["0.8+"]
    assert visible["AP_per_class"]["car"] == pytest.approx(2 / 3, abs=1e-4)
    assert visible["mAP"] == pytest.approx(1 / 3, abs=1e-4)
    assert visible["recall_per_threshold_m"]["4.0"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["0.1-0.5"]["mAP"] is None


def test_lidar_return_bands_judge_each_object_by_the_returns_in_its_box():
    result = breakdown(scenario(), CLASSES)["lidar_return_bands"]
    assert list(result) == ["0-3", "3-10", "10-30", "30+"]
    # 0-3: T1, never found. 3-10: T2; P2 a FP (unmatched), P0 ignored (on T0), P1 a TP: AP 1/2.
    assert result["0-3"]["mAP"] == 0.0
    assert result["3-10"]["AP_per_class"]["car"] == pytest.approx(0.5, abs=1e-4)
    assert result["3-10"]["recall_per_threshold_m"]["0.5"] == 1.0
    # 10-30: the pedestrian, taken by a cyclist detection: AP 0. 30+: T0 behind P2's FP: AP 1/2.
    assert result["10-30"]["mAP"] == 0.0
    assert result["30+"]["mAP"] == pytest.approx(0.5, abs=1e-4)


def test_class_confusion_label_free_and_pooled_class_agnostic():
    confusion = breakdown(scenario(), CLASSES)["class_confusion"]
    # Per class: car ranked FP, TP, TP of 3 truths -> AP = 1/3 * 2/3 * 2 = 4/9; pedestrian 0.
    assert confusion["AP_per_class"]["car"] == pytest.approx(4 / 9, abs=1e-4)
    assert confusion["mAP"] == pytest.approx(2 / 9, abs=1e-4)
    # Any label: the cyclist P3 finds the pedestrian (AP 1); P3 is ignored for cars and the car
    # FP P2 ignored for pedestrians, so car AP stays 4/9: mean 13/18.
    assert confusion["AP_label_free_per_class"] == {
        "car": pytest.approx(4 / 9, abs=1e-4), "pedestrian": 1.0, "cyclist": None}
    assert confusion["mAP_label_free"] == pytest.approx(13 / 18, abs=1e-4)
    # One pooled class: FP, TP, TP, TP of 4 truths -> AP = 3/4 * 3/4 = 9/16.
    assert confusion["mAP_class_agnostic"] == pytest.approx(9 / 16, abs=1e-4)
    assert confusion["confusion_2m"]["car"] == {
        "car": 2, "pedestrian": 0, "cyclist": 0, "missed": 1}
    assert confusion["confusion_2m"]["pedestrian"] == {
        "car": 0, "pedestrian": 0, "cyclist": 1, "missed": 0}


def test_distance_bands_partition_the_plain_evaluation():
    """Every TP and FP of the plain metric is a TP or FP of exactly one distance band."""
    rng = np.random.default_rng(0)
    run = DetectedFrames()
    for _ in range(6):
        n, m = rng.integers(3, 9, size=2)
        truth = boxes(rng.uniform(-40, 40, (n, 3)), rng.integers(0, 3, n))
        near = truth.centers[rng.integers(0, n, m)] + rng.normal(0, 1.5, (m, 3))
        run.predictions.append(boxes(near, rng.integers(0, 3, m), rng.uniform(0, 1, m)))
        run.truths.append(truth)
        run.viewpoints.append(ORIGIN)
    bands = Bands((0.0, 15.0, 30.0))

    def band_of(frame_boxes: Boxes3D) -> np.ndarray:
        return bands.index(np.linalg.norm(frame_boxes.centers[:, :2], axis=1))

    plain = hit_table(run.predictions, run.truths, 3)
    per_band = [hit_table(run.predictions, run.truths, 3,
                          counted_truth=[band_of(t) == b for t in run.truths],
                          counted_predictions=[band_of(p) == b for p in run.predictions])
                for b in range(3)]
    for c in range(3):
        for t in range(4):
            whole = plain[c][t]
            parts = [table[c][t] for table in per_band]
            assert sum(p.true_positive.sum() for p in parts) == whole.true_positive.sum()
            assert sum(len(p.scores) for p in parts) == len(whole.scores)
            assert sum(p.num_ground_truth for p in parts) == whole.num_ground_truth


def test_box_errors_split_along_and_across_the_line_of_sight():
    truth = boxes([[10, 0, 0], [0, 10, 0], [0.27, 5, 0]], [0, 0, 0], yaws=[0.0, 3.0, 0.0],
                  sizes=[[4, 2, 1.5]] * 3)
    pred = boxes([[10.3, 0.2, 0], [0.1, 10.4, 0], [0.27, 5.5, 0]], [0, 0, 0],
                 yaws=[0.0, -3.0, math.pi - 0.1], sizes=[[4, 2, 1.5], [2, 2, 1.5], [4, 2, 1.5]])
    errors = box_errors(pred, truth, ORIGIN)
    # Straight ahead: 0.3 m farther, 0.2 m to the left. Due left: 0.4 m farther, 0.1 m to the
    # right (+x seen looking along +y).
    assert errors.radial[:2] == pytest.approx([0.3, 0.4], abs=1e-5)
    assert errors.lateral[:2] == pytest.approx([0.2, -0.1], abs=1e-5)
    # Yaw wraps: 3 vs -3 rad is 0.283 rad apart; a flipped car is 180 - 5.7 degrees off.
    assert errors.yaw_deg == pytest.approx([0.0, math.degrees(2 * math.pi - 6), 174.27], abs=0.01)
    # Half the length at the same width and height: aligned IoU 6 / 12.
    assert errors.size_error == pytest.approx([0.0, 0.5, 0.0], abs=1e-6)
    # From a viewpoint 0.27 m ahead, the third truth lies straight to the left: its 0.5 m offset
    # is all radial.
    seen = box_errors(pred, truth, np.array([0.27, 0.0, 0.0]))
    assert seen.radial[2] == pytest.approx(0.5, abs=1e-5)
    assert seen.lateral[2] == pytest.approx(0.0, abs=1e-5)
    assert seen.ranges[2] == pytest.approx(5.0, abs=1e-5)


def test_localisation_medians_per_class_and_distance_band():
    truth = boxes([[5, 0, 0], [0, 8, 0], [15, 0, 0], [20, 5, 0], [6, -6, 0]], [0, 0, 0, 0, 1])
    pred = boxes([[5.2, 0.1, 0], [-0.3, 8.4, 0], [14.5, 0, 0], [23, 5, 0], [6, -6, 0]],
                 [0, 0, 0, 0, 2], yaws=[0, math.pi - 0.1, 0.1, 0, 0])
    run = DetectedFrames([pred], [truth], [np.ones(5, np.float32)], [ORIGIN], [np.full(5, 20)])
    result = breakdown(run, CLASSES)
    car = result["localisation_2m"]["car"]
    # The car 3 m off is no TP at 2 m, nor is the cyclist on the pedestrian: 3 car TPs.
    assert car["all"]["true_positives"] == 3
    near = car["0-10 m"]  # radial +0.2 at 5 m, +0.4 at 8 m; lateral 0.1 left, 0.3 left
    assert near["radial_m"] == pytest.approx(0.3, abs=1e-4)
    assert near["radial_signed_m"] == pytest.approx(0.3, abs=1e-4)
    assert near["lateral_m"] == pytest.approx(0.2, abs=1e-4)
    assert near["radial_relative"] == pytest.approx((0.2 / 5 + 0.4 / 8) / 2, abs=1e-4)
    middle = car["10-20 m"]
    assert middle["radial_signed_m"] == pytest.approx(-0.5, abs=1e-4)
    assert middle["lateral_m"] == pytest.approx(0.0, abs=1e-4)
    assert car["all"]["radial_m"] == pytest.approx(0.4, abs=1e-4)
    assert car["all"]["yaw_over_90deg"] == pytest.approx(1 / 3, abs=1e-4)
    assert car["all"]["yaw_deg"] == pytest.approx(5.73, abs=0.01)
    assert car["20-30 m"]["true_positives"] == 0 and car["20-30 m"]["radial_m"] is None
    assert result["localisation_2m"]["pedestrian"]["all"]["true_positives"] == 0
    histogram = result["yaw_error_histogram_2m"]
    assert histogram["car"][0] == 2 and histogram["car"][-1] == 1 and sum(histogram["car"]) == 3


def test_breakdown_mean_ap_matches_the_plain_metric():
    run = scenario()
    plain = evaluate_detections(run.predictions, run.truths, CLASSES)
    assert breakdown(run, CLASSES)["class_confusion"]["mAP"] == pytest.approx(plain.mean_ap,
                                                                           abs=1e-4)


def test_detect_frames_carries_visibility_viewpoint_and_lidar_returns(model_path):
    from adaptive_fusion.lab.evaluation.report import render_test_set
    from adaptive_fusion.lab.evaluation.runner import (
        detect_frames,
        evaluated_objects,
        evaluation_truth,
        lidar_points_in_boxes,
    )
    from adaptive_fusion.model.checkpoint import load_checkpoint
    from adaptive_fusion.model.inputs import prepare_inputs

    model, _ = load_checkpoint(model_path)
    frames = render_test_set(1)
    run = detect_frames(model, frames)
    inputs = prepare_inputs(frames[0], model.config)
    evaluated = evaluated_objects(frames[0], inputs, model.config)
    assert 0 < evaluated.sum() and len(run.truths[0]) == evaluated.sum()
    assert run.visibility[0].tolist() == frames[0].objects.visibility[evaluated].tolist()
    assert run.truths[0].centers.tolist() == evaluation_truth(frames[0], inputs,
                                                              model.config).centers.tolist()
    assert run.viewpoints[0] == pytest.approx([0.27, 0.0, -0.08])  # the default rig's camera
    returns = run.lidar_returns[0]
    assert len(returns) == len(run.truths[0]) and returns.max() > 10
    assert returns.tolist() == lidar_points_in_boxes(frames[0].points, run.truths[0]).tolist()


def test_evaluate_cli_breakdown_json_and_plot(model_path, tmp_path, capsys):
    from adaptive_fusion.cli.main import main

    plot = tmp_path / "eval.png"
    assert main(["evaluate", "--model", str(model_path), "--frames", "1", "--threads", "1",
                 "--conditions", "clean,depth:dead", "--latency-runs", "1", "--breakdown",
                 "--distance-bands", "0,20", "--plot", str(plot), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    clean = report["conditions"]["clean"]
    assert "breakdown" not in report["conditions"]["depth:dead"]  # clean only by default
    result = clean["breakdown"]
    assert list(result["distance_bands"]) == ["0-20 m", "20+ m"]
    assert list(result["visibility_bands"]) == ["0-0.1", "0.1-0.5", "0.5-0.8", "0.8+"]
    total = sum(clean["ground_truth_per_class"].values())
    for key in ("distance_bands", "visibility_bands", "lidar_return_bands"):
        assert sum(sum(b["ground_truth_per_class"].values())
                   for b in result[key].values()) == total
    assert result["class_confusion"]["mAP"] == clean["mAP"]
    assert report["breakdown_plots"] == {"clean": str(tmp_path / "eval_breakdown.png")}
    assert plot.stat().st_size > 0 and Path(report["breakdown_plots"]["clean"]).stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["--breakdown", "fog"], "--breakdown: fog is not among the evaluated conditions"),
    (["--breakdown", "--distance-bands", "10,5"], "band edges must be increasing"),
    (["--breakdown", "--methods", "full"], "--breakdown explains one allocation"),
])
def test_evaluate_cli_rejects_bad_breakdown_arguments(model_path, capsys, argv, message):
    from adaptive_fusion.cli.main import main

    assert main(["evaluate", "--model", str(model_path), "--frames", "1",
                 "--conditions", "clean", *argv]) == 2
    assert message in capsys.readouterr().out
