"""The synthetic world: reproducible, geometrically consistent across sensors, realistic sizes."""

import numpy as np
import pytest

from adaptive_fusion.core.frames import CLASSES, FrameSet, Objects
from adaptive_fusion.sim import World, WorldConfig
from adaptive_fusion.sim.primitives import PrimitiveList
from adaptive_fusion.sim.scene import SIZE_MAX, SIZE_MIN, Scene
from adaptive_fusion.sim.world import emitter_shadow

SEEDS = range(12)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def frames(world) -> list[FrameSet]:
    return [world.render(seed) for seed in SEEDS]


def test_same_seed_same_frames_other_seed_other_frames(world, frames):
    again = World().render(SEEDS[3])
    first = frames[3]
    assert np.array_equal(again.image, first.image)
    assert np.array_equal(again.depth, first.depth, equal_nan=True)
    assert np.array_equal(again.points, first.points)
    assert np.array_equal(again.objects.centers, first.objects.centers)
    assert np.array_equal(again.objects.boxes2d, first.objects.boxes2d)
    assert not np.array_equal(frames[4].image, first.image)
    assert len(frames[4].points) != len(first.points)


def test_shapes_types_and_ranges(world, frames):
    cfg = world.config
    for f in frames:
        assert f.image.shape == (cfg.camera_height, cfg.camera_width, 3)
        assert f.image.dtype == np.uint8
        assert f.depth.shape == f.image.shape[:2] and f.depth.dtype == np.float32
        valid = f.depth[np.isfinite(f.depth)]
        assert 0.3 < np.isfinite(f.depth).mean() < 0.95  # sky and far ground are invalid
        assert valid.min() >= cfg.depth_min * 0.99 and valid.max() <= cfg.depth_max * 1.01
        assert f.points.dtype == np.float32 and f.points.shape[1] == 4
        rng = np.linalg.norm(f.points[:, :3], axis=1)
        assert rng.min() >= cfg.lidar_min_range - 0.05 and rng.max() <= cfg.lidar_max_range + 0.05
        assert 0 <= f.points[:, 3].min() and f.points[:, 3].max() <= 1
        assert len(f.points) > 0.4 * f.lidar.n_rays  # ground and structure all around
        o = f.objects
        assert len(o) >= 1 and o.labels.dtype == np.int64
        assert set(o.labels.tolist()) <= set(range(len(CLASSES)))
        assert o.centers.dtype == o.sizes.dtype == o.boxes2d.dtype == np.float32
        assert np.all((o.visibility > 0) & (o.visibility <= 1))
        assert np.all(o.boxes2d[:, :2] >= 0) and np.all(o.boxes2d[:, 2] <= cfg.camera_width)
        assert np.all(o.boxes2d[:, 3] <= cfg.camera_height)
        assert np.all(o.boxes2d[:, 2:] > o.boxes2d[:, :2])
        # objects stand on the ground, in front of the camera
        bottoms = o.centers[:, 2] - o.sizes[:, 2] / 2
        assert np.allclose(bottoms, -cfg.lidar_height, atol=1e-4)
        assert np.all(o.centers[:, 0] > 2.0) and np.all(o.centers[:, 0] < 45.0)


def test_lidar_points_on_objects_project_into_their_boxes_and_match_depth(world, frames):
    """The three sensors see one geometry: a lidar return on an object lands inside that object's
    2D box and, at that pixel, the depth image reads the point's camera depth."""
    inside_box, depth_ok, total = 0, 0, 0
    for f in frames:
        o = f.objects
        above_ground = f.points[:, 2] > -world.config.lidar_height + 0.1
        on_object = o.contains(f.points, margin=0.05) & above_ground
        uv, z = f.calib.project(f.points)
        for k in np.flatnonzero((o.visibility > 0.9) & (o.boxes2d[:, 3] - o.boxes2d[:, 1] > 8)):
            pts = np.flatnonzero(on_object[k])
            u, v = uv[pts, 0], uv[pts, 1]
            x1, y1, x2, y2 = o.boxes2d[k]
            in_image = (u >= 0) & (u < f.calib.width) & (v >= 0) & (v < f.calib.height)
            pts, u, v = pts[in_image], u[in_image], v[in_image]
            total += len(pts)
            inside_box += np.sum((u >= x1 - 1) & (u <= x2 + 1) & (v >= y1 - 1) & (v <= y2 + 1))
            d = f.depth[v.astype(int), u.astype(int)]
            depth_ok += np.sum(np.abs(d - z[pts]) < 0.05 * z[pts] + 0.1)
    assert total > 300
    assert inside_box / total > 0.99
    assert depth_ok / total > 0.9


def test_class_sizes_are_realistic(world):
    sizes = {k: [] for k in range(len(CLASSES))}
    for seed in range(40):
        scene = world.scene(seed)
        for label, size in zip(scene.labels, scene.sizes, strict=True):
            sizes[label].append(size)
    expected = {0: (4.5, 1.8, 1.5), 1: (0.6, 0.6, 1.75), 2: (1.8, 0.6, 1.7)}
    for label, rows in sizes.items():
        rows = np.array(rows)
        assert len(rows) > 20, CLASSES[label]
        assert np.all(rows >= SIZE_MIN[label]) and np.all(rows <= SIZE_MAX[label])
        assert np.allclose(rows.mean(axis=0), expected[label], rtol=0.08), CLASSES[label]
        assert np.all(rows.std(axis=0) > 0.02)  # spread, not one template


def test_objects_fill_their_ground_truth_boxes(world):
    """Every part of a labelled object lies inside its 3D box, which reaches ground to top."""
    for seed in range(20):
        scene = world.scene(seed)
        boxes = Objects(
            labels=scene.labels,
            centers=scene.centers.astype(np.float32),
            sizes=scene.sizes.astype(np.float32),
            yaws=scene.yaws.astype(np.float32),
            boxes2d=np.zeros((len(scene.labels), 4), np.float32),
            visibility=np.ones(len(scene.labels), np.float32),
        )
        corners = scene.prims.corners()
        for k in range(len(boxes)):
            parts = corners[scene.prims.owner == k].reshape(-1, 3)
            assert boxes.contains(parts, margin=0.01)[k].all()
            top = scene.centers[k, 2] + scene.sizes[k, 2] / 2
            bottom = scene.centers[k, 2] - scene.sizes[k, 2] / 2
            assert parts[:, 2].max() == pytest.approx(top, abs=0.01)
            assert parts[:, 2].min() == pytest.approx(bottom, abs=0.03)


def test_distractors_outnumber_object_parts(world):
    scene = world.scene(1)
    assert np.sum(scene.prims.owner < 0) > np.sum(scene.prims.owner >= 0) / 2
    assert np.sum(scene.prims.owner < 0) >= 10


def _two_box_scene(world: World, gap: float) -> Scene:
    """A car-sized box 10 m ahead and a second one `gap` metres straight behind it."""
    template = world.scene(0)
    z = template.ground.z
    prims = PrimitiveList()
    for owner, x in enumerate((10.0, 10.0 + gap)):
        prims.box([x, 0.0, z + 0.75], (4.5, 1.8, 1.5), 0.0, [0.6, 0.1, 0.1], 0.5, owner)
    return Scene(
        prims=prims.build(),
        labels=np.array([0, 0]),
        centers=np.array([[10.0, 0, z + 0.75], [10.0 + gap, 0, z + 0.75]]),
        sizes=np.array([[4.5, 1.8, 1.5]] * 2),
        yaws=np.zeros(2),
        ground=template.ground,
        light=template.light,
    )


def test_visibility_counts_occlusion(world):
    scene = _two_box_scene(world, gap=8.0)
    rngs = world.rngs(0)
    camera = world.render_camera(scene, rngs[1])
    objects = world.ground_truth(scene, camera)
    assert len(objects) == 2
    assert objects.visibility[0] == pytest.approx(1.0)
    # the far box peeks out only above the near one (the camera is 1.65 m up, boxes 1.5 m)
    assert 0.0 < objects.visibility[1] < 0.6
    near, far = objects.boxes2d
    assert far[0] >= near[0] and far[2] <= near[2]  # narrower: further away
    assert far[3] <= near[1] + 1  # what is visible of it lies above the near box


def test_configurable_camera_and_beams():
    config = WorldConfig(
        camera_width=160, camera_height=96, lidar_beams=16, lidar_azimuth_steps=512
    )
    world = World(config)
    f = world.render(2)
    assert f.image.shape == (96, 160, 3) and f.depth.shape == (96, 160)
    assert f.lidar.n_beams == 16 and f.lidar.azimuth_steps == 512
    assert len(f.points) <= 16 * 512
    assert f.calib.K[0, 2] == 80 and f.calib.K[1, 2] == 48
    assert np.allclose(f.calib.T_cam_lidar[:3, :3], [[0, -1, 0], [0, 0, -1], [1, 0, 0]])


def test_empty_scenes_and_bad_configs():
    f = World(WorldConfig(min_objects=0, max_objects=0)).render(1)
    assert len(f.objects) == 0 and f.objects.boxes2d.shape == (0, 4)
    assert len(f.points) > 1000  # ground and distractors are still there
    near_ground = np.abs(f.points[:, 2] + WorldConfig().lidar_height) < 0.05
    assert near_ground.mean() > 0.3
    with pytest.raises(ValueError, match="lidar"):
        WorldConfig(lidar_beams=0)
    with pytest.raises(ValueError, match="depth_min"):
        WorldConfig(depth_min=60.0)
    assert WorldConfig(camera_position=[0.3, 0, 0]).camera_position == (0.3, 0.0, 0.0)


def test_depth_camera_emitter_shadow_beside_near_edges():
    """A near surface (5 m) right of column 50 in front of a far one (20 m): with focal length x
    baseline = 40 px, the emitter's view shifts them by 8 and 2 px, so far pixels 45..49 are in
    its shadow, and nothing else."""
    z = np.full((4, 100), 20.0, np.float32)
    z[:, 50:] = 5.0
    shadow = emitter_shadow(z, 40.0)
    assert np.array_equal(np.flatnonzero(shadow[0]), np.arange(45, 50))
    assert np.array_equal(shadow, np.repeat(shadow[:1], 4, axis=0))
    assert not emitter_shadow(z[:, ::-1].copy(), 40.0).any()  # the other side is lit
