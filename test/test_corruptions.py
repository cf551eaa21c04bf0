"""Corruptions: identity at severity 0, determinism by seed, dead-sensor semantics, modality
isolation, fog coherence, and clear errors for bad specs."""

import dataclasses

import numpy as np
import pytest

from adaptive_fusion.core.frames import CORRUPTIONS
from adaptive_fusion.sim import World
from adaptive_fusion.sim.corruptions import (
    REAL_WORLD_FAULTS,
    SCENE_EVENTS,
    CorruptionError,
    corrupt,
    motion_blur_kernel,
)

ALL_TYPES = [(m, k) for family in (CORRUPTIONS, REAL_WORLD_FAULTS)
             for m, kinds in family.items() for k in kinds] + [("scene", e) for e in SCENE_EVENTS]


@pytest.fixture(scope="module")
def frames():
    return World().render(11)


def same(a, b) -> bool:
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def same_frames(a, b) -> dict[str, bool]:
    return {
        "camera": same(a.image, b.image),
        "depth": same(a.depth, b.depth),
        "lidar": same(a.points, b.points),
    }


@pytest.mark.parametrize(("key", "kind"), ALL_TYPES)
def test_severity_zero_is_identity(frames, key, kind):
    out = corrupt(frames, {key: (kind, 0.0)}, seed=5)
    assert all(same_frames(out, frames).values())
    assert out.image is not frames.image  # a copy: corrupting never aliases the input


@pytest.mark.parametrize(("key", "kind"), ALL_TYPES)
def test_deterministic_by_seed_and_only_touches_its_modality(frames, key, kind):
    spec = {key: (kind, 0.6)}
    a, b = corrupt(frames, spec, seed=3), corrupt(frames, spec, seed=3)
    assert all(same_frames(a, b).values())
    changed = {m: not s for m, s in same_frames(a, frames).items()}
    if key == "scene":
        assert all(changed.values())
    else:
        assert changed == {m: m == key for m in changed}


@pytest.mark.parametrize(
    ("key", "kind"),
    [("camera", "noise"), ("camera", "occlusion"), ("depth", "holes"), ("lidar", "dropout"),
     ("lidar", "spurious"), ("camera", "colour_cast"), ("depth", "flying_pixels"),
     ("lidar", "sector_gap"), ("lidar", "ghosts")],
)
def test_different_seeds_differ(frames, key, kind):
    a = corrupt(frames, {key: (kind, 0.5)}, seed=1)
    b = corrupt(frames, {key: (kind, 0.5)}, seed=2)
    assert not all(same_frames(a, b).values())


def test_dead_sensors_carry_no_data(frames):
    for severity in (0.01, 1.0):  # a dead sensor has no degree
        out = corrupt(frames, {"camera": ("dead", severity), "depth": ("dead", severity),
                               "lidar": ("dead", severity)}, seed=0)
        assert out.image.shape == frames.image.shape and not out.image.any()
        assert out.depth.shape == frames.depth.shape and np.isnan(out.depth).all()
        assert out.points.shape == (0, 4) and out.points.dtype == frames.points.dtype


def test_severity_scales_the_physical_effect(frames):
    def image_noise(s):
        out = corrupt(frames, {"camera": ("noise", s)}, seed=0).image.astype(float)
        return np.std(out - frames.image)

    assert image_noise(0.2) < image_noise(0.5) < image_noise(1.0)
    kept = [len(corrupt(frames, {"lidar": ("dropout", s)}, seed=0).points) for s in (0.2, 0.6)]
    assert kept[0] == pytest.approx(0.81 * len(frames.points), rel=0.03)
    assert kept[1] == pytest.approx(0.43 * len(frames.points), rel=0.05)
    holes = [np.isnan(corrupt(frames, {"depth": ("holes", s)}, seed=0).depth).mean()
             for s in (0.25, 0.75)]
    assert holes[0] < holes[1]
    quantised = corrupt(frames, {"depth": ("quantization", 0.5)}, seed=0).depth
    finite = quantised[np.isfinite(quantised)]
    np.testing.assert_allclose((finite / 1.0 - 0.5) % 1.0, 0.0, atol=1e-4)  # 1 m steps


def test_occlusion_covers_the_requested_share_and_grows_nested(frames):
    # under a blob (alpha > 0.5) a pixel keeps less than half its value, plus the dark mud
    dark = [corrupt(frames, {"camera": ("occlusion", s)}, seed=4).image.max(axis=2)
            < 0.5 * frames.image.max(axis=2) + 12 for s in (0.3, 0.9)]
    assert dark[0].mean() == pytest.approx(0.21, abs=0.06)
    assert dark[1].mean() == pytest.approx(0.63, abs=0.08)
    assert (dark[0] & ~dark[1]).mean() < 0.01  # the same blobs, grown


def test_fog_is_coherent_across_sensors(frames):
    out = corrupt(frames, {"scene": ("fog", 0.8)}, seed=0)
    grey_in, grey_out = frames.image.mean(axis=2), out.image.mean(axis=2)
    near = np.isfinite(frames.depth) & (frames.depth < 6)
    far = np.isfinite(frames.depth) & (frames.depth > 25)
    airlight = 208.0
    # camera: the far scene is closer to the airlight than the near scene
    assert np.abs(grey_out[far] - airlight).mean() < 0.3 * np.abs(grey_out[near] - airlight).mean()
    assert grey_out.std() < 0.7 * grey_in.std()
    # lidar: range shortens, intensity falls, near clutter appears
    r_in = np.linalg.norm(frames.points[:, :3], axis=1)
    r_out = np.linalg.norm(out.points[:, :3], axis=1)
    assert r_out.max() < 0.5 * r_in.max()
    assert (r_out < 6).mean() > (r_in < 6).mean() + 0.1
    # depth: far pixels lost first
    assert np.isnan(out.depth[far]).all() and np.isfinite(out.depth[near]).mean() > 0.9


def test_combined_spec_applies_each_in_order(frames):
    both = corrupt(frames, {"camera": [("occlusion", 0.5), ("noise", 0.3)]}, seed=2)
    only = corrupt(frames, {"camera": ("occlusion", 0.5)}, seed=2)
    assert not same(both.image, only.image)
    assert same(both.depth, frames.depth)


def test_motion_blur_kernel_is_a_normalised_line():
    kernel = motion_blur_kernel(7.0, 0.0)
    assert kernel.sum() == pytest.approx(1.0)
    centre = kernel.shape[0] // 2
    assert np.count_nonzero(kernel[centre] > 0.01) == 7
    assert kernel[centre + 1].sum() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"camera": ("sepia", 0.5)}, "unknown camera corruption"),
        ({"camera": ("noise", 1.5)}, "severity must be in"),
        ({"radar": ("noise", 0.5)}, "unknown spec keys"),
        ({"scene": ("rain", 0.5)}, "unknown scene event"),
        ({"lidar": ("dropout",)}, "must be"),
        ({"lidar": [("dropout", "lots")]}, "must be"),
    ],
)
def test_bad_specs_raise_one_clear_error(frames, spec, message):
    with pytest.raises(CorruptionError, match=message):
        corrupt(frames, spec, seed=0)


def test_corrupt_keeps_calibration_and_ground_truth(frames):
    out = corrupt(frames, {"lidar": ("dead", 1.0)}, seed=0)
    assert out.calib is frames.calib and out.objects is frames.objects
    assert dataclasses.fields(out) == dataclasses.fields(frames)
