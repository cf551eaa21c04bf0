"""The evaluation protocols (lab/evaluation/protocol.py): lidar returns counted in yawed boxes, the
nuScenes filters on hand-made frames, and `adaptive-fusion evaluate --protocol nuscenes`."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.lab.evaluation.protocol import check_protocol, nuscenes_view
from adaptive_fusion.lab.evaluation.runner import DetectedFrames, lidar_points_in_boxes

CLASSES = ("car", "pedestrian", "cyclist")


def boxes(centers, labels, yaws=None, sizes=None) -> Boxes3D:
    n = len(centers)
    return Boxes3D(
        labels=np.asarray(labels, np.int64), centers=np.asarray(centers, np.float32),
        sizes=np.tile(np.float32([4.0, 2.0, 1.5]), (n, 1)) if sizes is None
        else np.asarray(sizes, np.float32),
        yaws=np.zeros(n, np.float32) if yaws is None else np.asarray(yaws, np.float32),
        scores=np.ones(n, np.float32))


def test_lidar_points_counted_in_the_box_frame():
    """A 4 x 2 x 1.5 m box at (10, 0, 0) turned 90 degrees: its length runs along y."""
    box = boxes([[10, 0, 0]], [0], yaws=[np.pi / 2])
    points = np.array([[10, 1.9, 0, 1],    # inside: 1.9 m along its length
                       [11.9, 0, 0, 1],    # outside: 1.9 m across its 1 m half width
                       [10.5, -1.5, 0.7, 1],  # inside, near a corner
                       [10, 0, 0.8, 1]], np.float32)  # above its 0.75 m half height
    assert lidar_points_in_boxes(points, box).tolist() == [2]
    assert lidar_points_in_boxes(points[:0], box).tolist() == [0]
    assert lidar_points_in_boxes(points, boxes(np.zeros((0, 3)), [])).tolist() == []
    assert lidar_points_in_boxes(None, box).tolist() == [0]  # lidar missing


def test_nuscenes_view_drops_far_boxes_per_class_and_truth_without_returns():
    """Truth: a car at 45 m (inside its 50 m range), a pedestrian at 45 m (past its 40 m), a car
    at 20 m that no return hits, a cyclist at 30 m. Predictions: a car at 45 m and a pedestrian
    at 45 m; the clean scene has a return in each box but the 20 m car's."""
    truth = boxes([[45, 0, 0], [0, 45, 0], [20, 0, 0], [0, -30, 0]], [0, 1, 0, 2])
    prediction = boxes([[45, 0, 0], [0, 45, 0]], [0, 1])
    scene = SimpleNamespace(points=np.array([[45, 0, 0, 1], [0, 45, 0, 1], [0, -30, 0, 1]],
                                            np.float32))
    run = DetectedFrames([prediction], [truth], [np.float32([0.9, 0.8, 0.7, 0.6])],
                         [np.zeros(3)], [np.array([1, 1, 0, 1])])
    view = nuscenes_view(run, [scene], CLASSES)
    assert view.truths[0].centers[:, :2].tolist() == [[45, 0], [0, -30]]
    assert view.visibility[0].tolist() == np.float32([0.9, 0.6]).tolist()
    assert view.lidar_returns[0].tolist() == [1, 1]
    assert view.predictions[0].labels.tolist() == [0]
    assert len(run.truths[0]) == 4 and len(run.predictions[0]) == 2  # the run is left alone
    with pytest.raises(ValueError, match="no class range for \\['truck'\\]"):
        check_protocol("nuscenes", ("car", "truck"))
    with pytest.raises(ValueError, match="unknown protocol 'kitti'"):
        check_protocol("kitti", CLASSES)
    check_protocol("all", ("car", "truck"))


def test_evaluate_cli_nuscenes_protocol_counts_a_subset(model_path, capsys):
    from adaptive_fusion.cli.main import main

    counts = {}
    for protocol in ("all", "nuscenes"):
        assert main(["evaluate", "--model", str(model_path), "--frames", "2", "--threads", "1",
                     "--conditions", "clean,lidar:dead", "--latency-runs", "1",
                     "--protocol", protocol, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["protocol"] == protocol
        truth = [sum(c["ground_truth_per_class"].values()) for c in report["conditions"].values()]
        assert truth[0] == truth[1]  # returns counted in the clean scene, whatever the condition
        counts[protocol] = truth[0]
        official = [c.get("nuscenes_official_mAP") for c in report["conditions"].values()]
        if protocol == "nuscenes":  # nuScenes' own AP, never above the all-point area
            assert all(o is not None and o <= c["mAP"] + 1e-9
                       for o, c in zip(official, report["conditions"].values(), strict=True))
        else:
            assert official == [None, None]
    assert 0 < counts["nuscenes"] < counts["all"]
    assert main(["evaluate", "--model", str(model_path), "--frames", "1", "--protocol",
                 "nuscenes", "--methods", "full"]) == 2
    assert "--protocol nuscenes scores one allocation" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # a bad count is refused before any work
        main(["evaluate", "--model", str(model_path), "--latency-runs", "0"])
    assert exit_info.value.code == 2 and "at least 1" in capsys.readouterr().err
