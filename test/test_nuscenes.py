"""nuScenes through nuscenes-devkit: the world written in nuScenes' schema loads with the devkit's
NuScenes class, boxes survive package -> nuScenes global -> package, nuScenes' own conventions
hold (LIDAR_TOP x right, y forward; size w, l, h), DetectionEval scores ground truth 1.0 and a
perturbed submission lower, and `adaptive-fusion nuscenes` writes a submission and its scores."""

import json

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes

from adaptive_fusion.cli.main import main
from adaptive_fusion.core.boxes import boxes_from_objects
from adaptive_fusion.core.frames import CLASSES, Calibration
from adaptive_fusion.lab.evaluation.protocol import within_class_range
from adaptive_fusion.lab.evaluation.report import render_test_set
from adaptive_fusion.lab.evaluation.runner import lidar_points_in_boxes
from adaptive_fusion.lab.nuscenes.reader import NuScenesFrames, depth_from_lidar
from adaptive_fusion.lab.nuscenes.scoring import devkit_scores, submission_boxes, write_submission
from adaptive_fusion.lab.nuscenes.world_export import export_world
from adaptive_fusion.sim.config import WorldConfig

VERSION, SPLIT = "v1.0-world", "world_test"
FIRST_SEED = 2_000_000


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three test scenes of the world and the nuScenes dataroot they were written to."""
    frames = render_test_set(3, FIRST_SEED)
    dataroot = tmp_path_factory.mktemp("nuscenes")
    export_world(str(dataroot), VERSION,
                 {SPLIT: list(zip(range(FIRST_SEED, FIRST_SEED + 3), frames, strict=True))},
                 WorldConfig().lidar_height)
    return frames, str(dataroot)


@pytest.fixture(scope="module")
def nusc(world):
    return NuScenes(VERSION, world[1], verbose=False)


def angle_difference(a, b):
    return (np.asarray(a) - np.asarray(b) + np.pi) % (2 * np.pi) - np.pi


def test_world_round_trips_through_the_devkit(world, nusc):
    frames, _ = world
    read = NuScenesFrames(nusc, SPLIT)
    assert len(read) == len(frames) == len(nusc.scene)
    assert sum(len(f.objects) for f in frames) == len(nusc.sample_annotation) > 0
    for original, back in zip(frames, read, strict=True):
        np.testing.assert_array_equal(back.objects.labels, original.objects.labels)
        np.testing.assert_allclose(back.objects.centers, original.objects.centers, atol=1e-5)
        np.testing.assert_allclose(back.objects.sizes, original.objects.sizes, atol=1e-5)
        assert np.abs(angle_difference(back.objects.yaws, original.objects.yaws)).max() < 1e-5
        np.testing.assert_allclose(back.calib.T_cam_lidar, original.calib.T_cam_lidar, atol=1e-9)
        np.testing.assert_allclose(back.calib.K, original.calib.K)
        np.testing.assert_allclose(back.points, original.points, atol=1e-5)
        np.testing.assert_array_equal(back.image, original.image)
        assert back.depth is None  # nuScenes has no depth camera
        # the projected box holds the rendered one (which covers the visible pixels only)
        projected, rendered = back.objects.boxes2d, original.objects.boxes2d
        assert (projected[:, :2] <= rendered[:, :2] + 1).all()
        assert (projected[:, 2:] >= rendered[:, 2:] - 1).all()


def test_boxes_follow_nuscenes_conventions(world, nusc):
    """The devkit's own transform to LIDAR_TOP puts a box ahead of the vehicle at +y and one to
    its left at -x, with size (width, length, height)."""
    frames, _ = world
    for original, sample in zip(frames, nusc.sample, strict=True):
        _, boxes, _ = nusc.get_sample_data(sample["data"]["LIDAR_TOP"])
        centres = np.array([box.center for box in boxes])
        ours = original.objects.centers
        np.testing.assert_allclose(centres[:, 0], -ours[:, 1], atol=1e-4)
        np.testing.assert_allclose(centres[:, 1], ours[:, 0], atol=1e-4)
        np.testing.assert_allclose(centres[:, 2], ours[:, 2], atol=1e-4)
        np.testing.assert_allclose([box.wlh for box in boxes], original.objects.sizes[:, [1, 0, 2]],
                                   atol=1e-5)
        ego = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
                       ["ego_pose_token"])
        assert ego["translation"][2] == 0.0 and abs(ego["translation"][0]) > 0


def test_depth_from_lidar_keeps_the_nearest_return_per_pixel():
    calib = Calibration(K=np.array([[10.0, 0, 5], [0, 10.0, 5], [0, 0, 1]]), width=10, height=10,
                        T_cam_lidar=np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0],
                                              [0, 0, 0, 1]]))
    points = np.array([[4.0, 0, 0, 0], [2.0, 0, 0, 0], [3.0, -1.0, 0, 0], [-2.0, 0, 0, 0]],
                      np.float32)
    depth = depth_from_lidar(points, calib)
    assert depth[5, 5] == 2.0  # two returns on the optical axis: the nearer one
    assert depth[5, 8] == pytest.approx(3.0)  # 1 m right at 3 m: u = 5 + 10/3
    assert np.isfinite(depth).sum() == 2  # the return behind the camera lands nowhere


def submission_of_truth(read: NuScenesFrames, shift_m: float = 0.0) -> dict[str, list[dict]]:
    """Ground truth as detections (score 1), the boxes DetectionEval keeps (a lidar return
    inside, within the class's range), optionally moved sideways."""
    results = {}
    for token, frames in zip(read.sample_tokens, read, strict=True):
        truth = boxes_from_objects(frames.objects)
        truth = truth.select(within_class_range(truth, CLASSES)
                             & (lidar_points_in_boxes(frames.points, truth) > 0))
        truth.centers = truth.centers + np.float32([0.0, shift_m, 0.0])
        results[token] = submission_boxes(token, truth, read.placement(token), CLASSES)
    return results


def test_devkit_scores_ground_truth_one_and_a_perturbed_submission_lower(world, nusc, tmp_path):
    read = NuScenesFrames(nusc, SPLIT)
    scores = {}
    for shift in (0.0, 2.5):
        path = str(tmp_path / f"shift{shift}.json")
        write_submission(path, submission_of_truth(read, shift))
        scores[shift] = devkit_scores(nusc, path, SPLIT, CLASSES, str(tmp_path / "eval"))
    perfect, shifted = scores[0.0], scores[2.5]
    assert perfect["mAP"] == pytest.approx(1.0)
    assert perfect["tp_errors"]["trans_err"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["tp_errors"]["scale_err"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["tp_errors"]["orient_err"] == pytest.approx(0.0, abs=1e-6)
    assert set(perfect["AP_per_class"]) == {"car", "pedestrian", "bicycle"}
    assert shifted["mAP"] < 0.5  # 2.5 m off: a match only at the 4 m threshold
    assert shifted["NDS"] < perfect["NDS"]


def test_cli_exports_the_world_and_scores_a_model(tmp_path, model_path, capsys):
    dataroot, out = tmp_path / "world", tmp_path / "out"
    assert main(["nuscenes", "export-world", str(dataroot), "--scenes", "2"]) == 0
    capsys.readouterr()
    assert main(["nuscenes", "evaluate", str(dataroot), "--version", VERSION, "--split", SPLIT,
                 "--model", str(model_path), "--depth", "lidar", "--out", str(out),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 2 and report["depth"] == "lidar"
    assert 0.0 <= report["devkit"]["mAP"] <= 1.0 and 0.0 <= report["devkit"]["NDS"] <= 1.0
    assert "mAP" in report["package"]
    submission = json.loads((out / "submission.json").read_text())
    assert set(submission["meta"]) >= {"use_camera", "use_lidar"}
    assert len(submission["results"]) == 2
    for box in (b for boxes in submission["results"].values() for b in boxes):
        assert set(box) == {"sample_token", "translation", "size", "rotation", "velocity",
                            "detection_name", "detection_score", "attribute_name"}
    assert main(["nuscenes", "evaluate", str(tmp_path / "missing")]) == 2
