"""KITTI-layout dataset files: exact round trip of frame sets, KITTI's own box conventions, clear
errors on bad files, and the `generate` command."""

import json
import os

import numpy as np
import pytest

from adaptive_fusion.cli.main import main
from adaptive_fusion.sim import World
from adaptive_fusion.sim.dataset import (
    DatasetError,
    KittiDataset,
    read_meta,
    write_frameset,
    write_meta,
)
from adaptive_fusion.sim.generate import generate_dataset

# calibration of KITTI object frame 000000 (camera 2 has an offset; R0_rect is not identity)
KITTI_CALIB = """P0: 7.215377e+02 0.000000e+00 6.095593e+02 0.000000e+00 0.000000e+00 7.215377e+02 1.728540e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
P1: 7.215377e+02 0.000000e+00 6.095593e+02 -3.875744e+02 0.000000e+00 7.215377e+02 1.728540e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
P2: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
P3: 7.215377e+02 0.000000e+00 6.095593e+02 -3.395242e+02 0.000000e+00 7.215377e+02 1.728540e+02 2.199936e+00 0.000000e+00 0.000000e+00 1.000000e+00 2.729905e-03
R0_rect: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 7.402527e-03 4.351614e-03 9.999631e-01
Tr_velo_to_cam: 7.533745e-03 -9.999714e-01 -6.166020e-04 -4.069766e-03 1.480249e-02 7.280733e-04 -9.998902e-01 -7.631618e-02 9.998621e-01 7.523790e-03 1.480755e-02 -2.717806e-01
Tr_imu_to_velo: 9.999976e-01 7.553071e-04 -2.035826e-03 -8.086759e-01 -7.854027e-04 9.998898e-01 -1.482298e-02 3.195559e-01 2.024406e-03 1.482454e-02 9.998881e-01 -7.997231e-01
"""  # noqa: E501
KITTI_LABELS = """\
Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01
Car 0.00 1 1.85 387.63 181.54 423.81 203.12 1.67 1.87 3.69 -16.53 2.39 58.49 1.57
DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10
"""


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def test_round_trip_keeps_every_array_and_box(world, tmp_path):
    originals = [world.render(seed) for seed in (3, 4, 5)]
    write_meta(str(tmp_path), world.lidar)
    for i, frames in enumerate(originals):
        write_frameset(str(tmp_path), i, frames)
    dataset = KittiDataset(str(tmp_path))
    assert len(dataset) == 3 and dataset.ids == ["000000", "000001", "000002"]
    for before, after in zip(originals, dataset, strict=True):
        assert np.array_equal(before.image, after.image)
        assert np.array_equal(np.isnan(before.depth), np.isnan(after.depth))
        assert np.nanmax(np.abs(before.depth - after.depth)) <= 0.0005 + 1e-5  # whole millimetres
        assert np.array_equal(before.points, after.points)
        assert np.allclose(before.calib.K, after.calib.K)
        assert np.allclose(before.calib.T_cam_lidar, after.calib.T_cam_lidar, atol=1e-9)
        assert np.array_equal(before.lidar.elevations_deg, after.lidar.elevations_deg)
        assert before.lidar.azimuth_steps == after.lidar.azimuth_steps
        b, a = before.objects, after.objects
        assert np.array_equal(b.labels, a.labels)
        assert np.allclose(b.centers, a.centers, atol=2e-4)
        assert np.allclose(b.sizes, a.sizes, atol=1e-4)
        assert np.allclose(np.angle(np.exp(1j * (b.yaws - a.yaws))), 0, atol=2e-4)
        assert np.array_equal(b.boxes2d, a.boxes2d)
        assert np.allclose(b.visibility, a.visibility, atol=1e-4)


def _kitti_folder(root, labels=KITTI_LABELS, depth=False):
    for folder in ("image_2", "velodyne", "calib", "label_2") + (("depth_2",) if depth else ()):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    import cv2

    cv2.imwrite(os.path.join(root, "image_2", "000000.png"), np.zeros((375, 1242, 3), np.uint8))
    np.zeros((10, 4), np.float32).tofile(os.path.join(root, "velodyne", "000000.bin"))
    with open(os.path.join(root, "calib", "000000.txt"), "w") as f:
        f.write(KITTI_CALIB)
    with open(os.path.join(root, "label_2", "000000.txt"), "w") as f:
        f.write(labels)


def _kitti_devkit_corners(h, w, length, location, ry):
    """Box corners in the rectified camera frame as KITTI's devkit (compute_box_3d) builds them."""
    c, s = np.cos(ry), np.sin(ry)
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    x = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * length / 2
    y = np.array([0, 0, 0, 0, -h, -h, -h, -h])
    z = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * w / 2
    return (R @ np.stack([x, y, z])).T + np.asarray(location)


def test_real_kitti_labels_become_the_same_boxes_in_the_lidar_frame(tmp_path):
    _kitti_folder(str(tmp_path))
    dataset = KittiDataset(str(tmp_path), require_depth=False)
    frames = dataset[0]
    assert dataset.ignored_labels == {"DontCare": 1}
    assert frames.lidar.n_beams == 64  # no meta.json: KITTI's HDL-64E
    assert np.all(np.isnan(frames.depth)) and frames.depth.shape == (375, 1242)
    objects = frames.objects
    assert objects.labels.tolist() == [1, 0]
    assert np.allclose(objects.sizes[1], [3.69, 1.87, 1.67])
    assert np.allclose(objects.boxes2d[1], [387.63, 181.54, 423.81, 203.12])
    R0 = np.array(KITTI_CALIB.split("R0_rect:")[1].split()[:9], float).reshape(3, 3)
    Tr = np.array(KITTI_CALIB.split("Tr_velo_to_cam:")[1].split()[:12], float).reshape(3, 4)
    rows = [line.split() for line in KITTI_LABELS.splitlines()[:2]]
    for k, row in enumerate(rows):
        h, w, length, x, y, z, ry = (float(v) for v in row[8:15])
        expected = _kitti_devkit_corners(h, w, length, (x, y, z), ry)
        ours = (objects.corners()[k] @ Tr[:, :3].T + Tr[:, 3]) @ R0.T
        # same corners up to the lidar's tiny tilt against the camera (< 1 degree)
        distance = np.linalg.norm(expected[:, None] - ours[None], axis=2).min(axis=1)
        assert distance.max() < 0.06, row[0]
    # camera 2 sees a lidar point through P2: the calibration carries P2's offset
    P2 = np.array(KITTI_CALIB.split("P2:")[1].split()[:12], float).reshape(3, 4)
    point = np.array([[20.0, 3.0, -1.0]])
    rect = R0 @ (Tr[:, :3] @ point[0] + Tr[:, 3])
    pix = P2 @ np.append(rect, 1)
    uv, _ = frames.calib.project(point)
    assert np.allclose(uv[0], pix[:2] / pix[2], atol=1e-6)


def test_bad_files_raise_errors_naming_the_file(tmp_path):
    with pytest.raises(DatasetError, match="image_2"):
        KittiDataset(str(tmp_path))
    _kitti_folder(str(tmp_path))
    with pytest.raises(DatasetError, match="depth_2"):
        KittiDataset(str(tmp_path))
    dataset = KittiDataset(str(tmp_path), require_depth=False)
    with pytest.raises(IndexError):
        dataset[1]
    np.zeros(7, np.float32).tofile(os.path.join(tmp_path, "velodyne", "000000.bin"))
    with pytest.raises(DatasetError, match="000000.bin"):
        dataset[0]
    np.zeros((3, 4), np.float32).tofile(os.path.join(tmp_path, "velodyne", "000000.bin"))
    with open(os.path.join(tmp_path, "label_2", "000000.txt"), "w") as f:
        f.write("Car 0.00 0 1.0 1 2 3\n")
    with pytest.raises(DatasetError, match=r"000000.txt:1"):
        dataset[0]
    with open(os.path.join(tmp_path, "calib", "000000.txt"), "w") as f:
        f.write("P2: 1 2 3\n")
    with pytest.raises(DatasetError, match="P2"):
        dataset[0]


def test_generate_writes_a_loadable_dataset_with_its_corruptions(tmp_path):
    summary = generate_dataset(str(tmp_path), 3, seed=5, corruption_mix=1.0)
    assert summary["frames"] == 3 and summary["corrupted_frames"] == 3
    meta = read_meta(str(tmp_path))
    assert sorted(meta["corruptions"]) == ["000000", "000001", "000002"]
    assert meta["generator"]["seed"] == 5
    dataset = KittiDataset(str(tmp_path))
    assert len(dataset) == 3
    assert sum(len(f.objects) for f in dataset) == sum(summary["objects"].values())


def test_generate_cli_is_reproducible(tmp_path, capsys):
    args = ["generate", "--scenes", "2", "--seed", "9", "--camera-size", "160x120", "--beams", "8"]
    assert main([*args, "--out", str(tmp_path / "a"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 2
    assert main([*args, "--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    a, b = KittiDataset(str(tmp_path / "a")), KittiDataset(str(tmp_path / "b"))
    assert a[1].image.shape == (120, 160, 3) and a[1].lidar.n_beams == 8
    assert np.array_equal(a[1].image, b[1].image) and np.array_equal(a[1].points, b[1].points)
    assert main([*args, "--out", str(tmp_path / "c"), "--corrupt", "camera:nonsense:0.5"]) == 2


def test_depth_beyond_16_bit_millimetres_is_written_invalid_with_a_warning(world, tmp_path):
    frames = world.render(1)
    frames.depth[0, :5] = 70.0
    with pytest.warns(UserWarning, match="000000: 5 depth pixels"):
        write_frameset(str(tmp_path), 0, frames)
    write_meta(str(tmp_path), world.lidar)
    assert np.isnan(KittiDataset(str(tmp_path))[0].depth[0, :5]).all()
