"""Quality measures on inputs that look like real sensors, not like the renderer: a textured,
vignetted, noisy, JPEG-compressed image; a depth image with edges, stereo shadows, speckle
dropout, range-proportional noise and millimetre quantisation; a cloud from an irregular beam
pattern with beam-angle errors, a blocked sector, dark patches and range noise. Also on the
rendered world, where every corruption must lower the score monotonically."""

import cv2
import numpy as np
import pytest

from adaptive_fusion.core.frames import CORRUPTIONS, Calibration, FrameSet, LidarModel, Objects
from adaptive_fusion.lab.real_data import middlebury_depth, real_photos
from adaptive_fusion.quality import (
    ModalityQuality,
    camera_quality,
    depth_quality,
    lidar_quality,
    measure,
)
from adaptive_fusion.quality.camera import ImageError
from adaptive_fusion.quality.depth import DepthError
from adaptive_fusion.quality.lidar import CloudError
from adaptive_fusion.sim import World
from adaptive_fusion.sim.corruptions import (
    SCENE_EVENTS,
    camera_colour_cast,
    corrupt,
    depth_band_loss,
    depth_flying_pixels,
)

H, W, F = 240, 320, 200.0
K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]])
CAMERA_HEIGHT = 1.5
LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def fractal_noise(rng, shape, octaves=6, falloff=0.6) -> np.ndarray:
    """1/f-like texture: random fields at doubling resolutions, finer ones weaker."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    for i in range(octaves):
        size = (max(2, w >> (octaves - 1 - i)), max(2, h >> (octaves - 1 - i)))
        layer = cv2.resize(rng.standard_normal(size[::-1]).astype(np.float32), (w, h),
                           interpolation=cv2.INTER_CUBIC)
        out += layer * falloff ** (octaves - 1 - i) * falloff ** (i // 2)
    return out / out.std()


def realistic_image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.arange(H, dtype=np.float32)[:, None]
    horizon = int(H / 2)
    sky = np.stack([150 + 50 * rows / horizon, 180 + 30 * rows / horizon,
                    235 - 10 * rows / horizon], axis=-1) * np.ones((1, W, 1))
    ground = 95 + 14 * fractal_noise(rng, (H, W))[..., None] * np.ones(3)
    image = np.where(rows[..., None] < horizon, sky, ground)
    # a brick building, a textured hedge and a car with a gradient and a window
    image[40:horizon, 200:300] = (150, 90, 70)
    image[40:horizon:8, 200:300] -= 40
    image[40:horizon, 200:300:12] -= 40
    hedge = 70 + 25 * fractal_noise(rng, (40, 120), octaves=4, falloff=0.9)
    image[horizon - 30:horizon + 10, 10:130] = np.stack([hedge * 0.6, hedge, hedge * 0.5], -1)
    car = np.linspace(40, 160, 70)[None, :, None] * np.array([0.4, 0.5, 1.0])
    image[110:150, 120:190] = car
    image[112:125, 130:180] = (30, 35, 40)
    # optics, vignetting, sensor noise, JPEG
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.7)
    yy, xx = np.mgrid[0:H, 0:W]
    r2 = ((xx - W / 2) ** 2 + (yy - H / 2) ** 2) / ((W / 2) ** 2 + (H / 2) ** 2)
    image = image * (1 - 0.35 * r2)[..., None] + rng.normal(0, 2.0, image.shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 75])
    assert ok
    return cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def realistic_depth(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.arange(H, dtype=np.float64)[:, None] + 0.5
    u = np.arange(W, dtype=np.float64)[None, :] + 0.5
    with np.errstate(divide="ignore"):
        depth = np.where(v > H / 2, CAMERA_HEIGHT * F / (v - H / 2), np.inf) * np.ones((1, W))
    depth[:, 200:300] = np.minimum(depth[:, 200:300], 12.0 - (u[:, 200:300] - 200) * 0.04)
    depth[60:168, 120:190] = np.minimum(depth[60:168, 120:190], 6.0)  # a car-sized box
    depth[20:190, 40:46] = np.minimum(depth[20:190, 40:46], 9.0)  # a pole
    depth[depth > 40.0] = np.nan  # out of range, like any depth camera
    depth[60:168, 112:120] = np.nan  # stereo shadow beside the near box
    depth *= 1 + rng.normal(0, 0.008, depth.shape)  # range-proportional noise
    depth[rng.random(depth.shape) < 0.01] = np.nan  # speckle dropout
    return (np.round(depth * 1000) / 1000).astype(np.float32)  # 16UC1 millimetres


IRREGULAR_BEAMS = np.concatenate(
    [np.linspace(-25, -8, 10), np.linspace(-7, 3, 16), np.linspace(4, 15, 6)]
)
LIDAR = LidarModel(elevations_deg=IRREGULAR_BEAMS, azimuth_steps=1024, max_range=100.0,
                   min_range=0.5)


def realistic_cloud(seed: int, mount_height: float = 1.8) -> np.ndarray:
    """Ground, a wall, a box; beam angles off nominal, a blocked rear sector, dark patches."""
    rng = np.random.default_rng(seed)
    el = np.radians(IRREGULAR_BEAMS + rng.normal(0, 0.12, len(IRREGULAR_BEAMS)))[:, None]
    az = (np.arange(1024) + 0.5 + rng.uniform(-0.2, 0.2, 1024)) * 2 * np.pi / 1024 - np.pi
    d = np.stack(np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az),
                                     np.sin(el)), axis=-1).reshape(-1, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d[:, 2] < 0, -mount_height / d[:, 2], np.inf)
        t_wall = np.where(d[:, 1] > 0, 8.0 / d[:, 1], np.inf)  # wall at y = 8 m
        hit = d * t_wall[:, None]
        t = np.where((hit[:, 0] > 5) & (hit[:, 0] < 40) & (hit[:, 2] < 3), np.minimum(t, t_wall),
                     t)
        t_box = np.where(d[:, 0] > 0, 10.0 / d[:, 0], np.inf)  # box face at x = 10 m
        hit = d * t_box[:, None]
        t = np.where((np.abs(hit[:, 1] + 3) < 0.9) & (hit[:, 2] < -0.3), np.minimum(t, t_box), t)
    t = t + rng.normal(0, 0.02, t.shape)
    keep = np.isfinite(t) & (t < 100)
    azimuth = np.broadcast_to(az, (len(IRREGULAR_BEAMS), 1024)).ravel()
    keep &= np.abs(azimuth) < np.radians(160)  # the vehicle blocks the rear
    dark = np.abs(np.sin(3 * azimuth)) > 0.9  # dark patches return half the time
    keep &= ~dark | (rng.random(t.shape) < 0.5)
    points = np.concatenate([d[keep] * t[keep, None], rng.random((int(keep.sum()), 1))], axis=1)
    return points[rng.permutation(len(points))].astype(np.float32)  # no scan order


def realistic_frames(seed: int = 0) -> FrameSet:
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    calib = Calibration(K=K, width=W, height=H, T_cam_lidar=T)
    return FrameSet(image=realistic_image(seed), depth=realistic_depth(seed),
                    points=realistic_cloud(seed), calib=calib, lidar=LIDAR,
                    objects=Objects.empty())


@pytest.fixture(scope="module")
def real_like():
    return realistic_frames(0)


@pytest.fixture(scope="module")
def rendered():
    return World().render(21)


ALL_TYPES = [(m, k) for m, kinds in CORRUPTIONS.items() for k in kinds] + [
    ("scene", e) for e in SCENE_EVENTS
]


def test_clean_realistic_inputs_score_high(real_like):
    quality = measure(real_like)
    for modality, q in quality.items():
        assert q.score >= 0.8, (modality, q.measures)
    assert quality["lidar"].measures["fill_fraction"] < 0.95  # the test cloud is uneven


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_scores_are_stable_across_scenes(seed):
    for modality, q in measure(realistic_frames(seed)).items():
        assert q.score >= 0.8, (modality, q.measures)


def test_camera_noise_estimate_ignores_texture_and_compression(real_like):
    clean = camera_quality(real_like.image).measures["noise_sigma"]
    assert clean < 3.0
    noisy = np.clip(real_like.image + np.random.default_rng(0).normal(0, 8, real_like.image.shape),
                    0, 255).astype(np.uint8)
    luminance_sigma = 8 * np.sqrt(0.299**2 + 0.587**2 + 0.114**2)  # independent per channel
    assert camera_quality(noisy).measures["noise_sigma"] == pytest.approx(luminance_sigma, rel=0.1)


def test_camera_blur_estimate_reads_edge_spread(real_like):
    assert camera_quality(real_like.image).measures["blur_sigma_px"] < 1.3
    blurred = cv2.GaussianBlur(real_like.image, (0, 0), 3.0)
    assert camera_quality(blurred).measures["blur_sigma_px"] == pytest.approx(3.0, rel=0.3)


def test_depth_measures_read_noise_and_quantisation(real_like):
    clean = depth_quality(real_like.depth).measures
    assert clean["roughness_rel"] == pytest.approx(0.008, rel=0.25)
    assert clean["quant_step_m"] == pytest.approx(0.001, rel=0.01)  # the millimetre grid
    assert clean["hole_fraction"] < 0.1  # sky and out-of-range are not holes
    noisy = real_like.depth * (1 + np.random.default_rng(0).normal(0, 0.05, (H, W)))
    # depth edges (a few % of the 3x3 windows) lift the median by ~10 %
    assert depth_quality(noisy.astype(np.float32)).measures["roughness_rel"] == pytest.approx(
        0.05, rel=0.2)
    coarse = ((np.floor(real_like.depth / 0.25) + 0.5) * 0.25).astype(np.float32)
    assert depth_quality(coarse).measures["quant_step_m"] == pytest.approx(0.25, rel=0.01)


def test_lidar_measures_read_range_noise_and_clutter(real_like):
    points = real_like.points
    clean = lidar_quality(points, LIDAR).measures
    assert clean["range_noise_m"] == pytest.approx(0.02, rel=0.3)
    assert clean["isolated_fraction"] < 0.03
    r = np.linalg.norm(points[:, :3], axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    noisy = points.copy()
    noisy[:, :3] *= (r + rng.normal(0, 0.1, r.shape)) / r
    assert lidar_quality(noisy, LIDAR).measures["range_noise_m"] == pytest.approx(0.1, rel=0.2)


def test_lidar_quality_ignores_point_order_and_drops_nan(real_like):
    points = real_like.points
    shuffled = points[np.random.default_rng(1).permutation(len(points))]
    with_nan = np.concatenate([points, np.full((10, 4), np.nan, np.float32)])
    reference = lidar_quality(points, LIDAR).score
    assert lidar_quality(shuffled, LIDAR).score == pytest.approx(reference)
    assert lidar_quality(with_nan, LIDAR).score == pytest.approx(reference)


@pytest.mark.parametrize("scene", ["real_like", "rendered"])
@pytest.mark.parametrize(("key", "kind"), ALL_TYPES)
def test_quality_falls_monotonically_with_severity(request, scene, key, kind):
    frames = request.getfixturevalue(scene)
    modalities = ("camera", "depth", "lidar") if key == "scene" else (key,)
    scores = {m: [] for m in modalities}
    for level in LEVELS:
        quality = measure(corrupt(frames, {key: (kind, level)}, seed=7))
        for m in modalities:
            scores[m].append(quality[m].score)
    for m, series in scores.items():
        steps = np.diff(series)
        if kind == "dead":
            assert series[0] >= 0.8 and max(series[1:]) <= 0.05, (m, series)
        else:  # never rises; ties only while the sensor is still within its healthy band
            assert (steps <= 0).all(), (m, np.round(series, 3))
            assert all(b < a for a, b in zip(series, series[1:], strict=False) if b < 1), (
                m, np.round(series, 3))
            assert series[-1] < 0.6 * series[0], (m, np.round(series, 3))


def test_scores_are_in_unit_interval_with_measures(rendered):
    for q in measure(rendered).values():
        assert isinstance(q, ModalityQuality) and 0.0 <= q.score <= 1.0
        assert all(np.isfinite(v) for v in q.measures.values())


def test_bad_inputs_raise_one_clear_error():
    with pytest.raises(ImageError, match="uint8"):
        camera_quality(np.zeros((H, W, 3), np.float32))
    with pytest.raises(ImageError, match="too small"):
        camera_quality(np.zeros((8, 8), np.uint8))
    with pytest.raises(DepthError, match="shape"):
        depth_quality(np.zeros((H, W, 3), np.float32))
    with pytest.raises(CloudError, match="shape"):
        lidar_quality(np.zeros((10, 2), np.float32), LIDAR)


def test_dead_sensors_score_zero_with_the_same_measures(rendered):
    dead = corrupt(rendered, {m: ("dead", 1.0) for m in CORRUPTIONS}, seed=0)
    healthy, gone = measure(rendered), measure(dead)
    for modality in healthy:
        assert gone[modality].score == 0.0
        assert gone[modality].measures.keys() == healthy[modality].measures.keys(), modality


# ---------------------------------------------------------------- real photographs

def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])  # fmt: skip
    assert ok
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_real_photos_score_healthy_and_jpeg_blocking_lowers_them():
    for name, photo in real_photos().items():
        clean = camera_quality(photo)
        assert clean.score >= 0.7, (name, clean.measures)
        assert clean.measures["q_compression"] == clean.measures["q_colour"] == 1.0, name
        assert camera_quality(jpeg(photo, 90)).measures["q_compression"] == 1.0, name
        heavy = camera_quality(jpeg(photo, 5))
        assert heavy.score < clean.score - 0.1, (name, clean.score, heavy.measures)
        assert heavy.measures["blockiness"] > 2.0 and heavy.measures["q_compression"] < 0.9


def test_the_jpeg_step_reads_the_quantisation_table_back():
    """The standard luminance table's lowest frequencies are 10-14 at quality 50 and scale with
    it (x0.5 at 75, x2.5 at 20): the measured step is theirs, and 1 for the photo as stored."""
    for name, photo in real_photos().items():
        steps = {quality: camera_quality(jpeg(photo, quality)).measures["jpeg_step"]
                 for quality in (75, 50, 20)}
        assert camera_quality(photo).measures["jpeg_step"] == 1.0, name
        assert 5 <= steps[75] <= 7 and 10 <= steps[50] <= 13 and 26 <= steps[20] <= 34, (
            name, steps)
        assert camera_quality(jpeg(photo, 75)).measures["q_compression"] == 1.0, name
        assert camera_quality(jpeg(photo, 30)).measures["q_compression"] < 0.95, name


def test_no_camera_fault_lifts_a_real_photo_above_its_clean_score():
    """A fault that un-clips, lifts or blurs a photo's dark areas must not pass for a repair:
    at every severity the score stays at or under the clean one, and the worst is well under."""
    rng = np.random.default_rng(0)

    def hazed(photo, s):
        return np.round(photo * (1 - 0.8 * s) + 160.0 * s).astype(np.uint8)

    def noisy(photo, s):
        return np.clip(np.round(photo + rng.normal(0, 30 * s, photo.shape)), 0, 255).astype(
            np.uint8)

    faults = {
        "jpeg": lambda photo, s: jpeg(photo, int(round(95 - 90 * s))),
        "blur": lambda photo, s: cv2.GaussianBlur(photo, (0, 0), 4.0 * s),
        "noise": noisy,
        "haze": hazed,
        "cast": lambda photo, s: camera_colour_cast(photo, s, channel=2),
    }
    for name, photo in real_photos().items():
        clean = camera_quality(photo).score
        for kind, fault in faults.items():
            scores = [camera_quality(fault(photo, s)).score for s in (0.2, 0.4, 0.6, 0.8, 1.0)]
            assert max(scores) <= clean + 1e-6, (name, kind, clean, scores)
            assert scores[-1] < clean - 0.3, (name, kind, clean, scores)


def test_a_colour_cast_lowers_real_photos():
    for name, photo in real_photos().items():
        clean = camera_quality(photo).score
        cast = photo.copy()
        cast[..., 2] = (cast[..., 2] * 0.3).astype(np.uint8)  # blue at 30 %: white balance gone
        quality = camera_quality(cast)
        assert quality.score <= clean - 0.3, (name, clean, quality.measures)
        assert quality.measures["colour_cast"] > 0.6, name


def test_haze_lowers_real_photos_through_the_veil():
    """Airlight lifts the darkest patches: past a third of airlight every photo scores lower the
    more there is, and its veil reads it whatever the scene's structure."""
    for name, photo in real_photos().items():
        veils, scores = [], []
        for airlight in (0.0, 0.32, 0.48, 0.64, 0.8):
            hazy = np.round(photo * (1 - airlight) + 200.0 * airlight).astype(np.uint8)
            quality = camera_quality(hazy)
            veils.append(quality.measures["haze_veil"])
            scores.append(quality.score)
        assert veils[0] < 0.1 and np.all(np.diff(veils) > 0.05), (name, veils)
        assert np.all(np.diff(scores[1:]) < 0) and scores[-1] < 0.5, (name, scores)


@pytest.mark.parametrize("seed", [2_000_000, 2_000_001, 2_000_002])
def test_heavy_jpeg_of_the_rendered_world_is_seen_and_a_usual_stream_is_not(seed):
    """At quality 3 every block of the smooth rendered image is flat and nine steps in ten are 0:
    the JPEG step finds no coefficient off 0, and the blocks' edges must carry the measure. A
    camera's usual quality-75 stream stays healthy."""
    image = World().render(seed).image
    assert camera_quality(jpeg(image, 75)).measures["q_compression"] == 1.0
    for quality in (5, 3):
        measured = camera_quality(jpeg(image, quality))
        assert measured.score < 0.5, (quality, measured.measures)


@pytest.mark.parametrize("seed", [2_000_000, 2_000_001, 2_000_002])
def test_blocking_and_cast_leave_the_rendered_world_alone(seed):
    """The world renders neither blocks nor casts, nor a veil but in fog: under every other
    camera corruption those factors stay 1, so the scores the controller was trained on do not
    move."""
    frames = World().render(seed)
    kinds = [("camera", k) for k in CORRUPTIONS["camera"]] + [("scene", e) for e in SCENE_EVENTS]
    for index, (key, kind) in enumerate([(None, None), *kinds]):
        for severity in (0.5, 1.0):
            spec = {key: (kind, severity)} if key else {}
            image = corrupt(frames, spec, seed=index).image if spec else frames.image
            measures = camera_quality(image).measures
            assert measures["q_compression"] == measures["q_colour"] == 1.0, (kind, severity)
            assert kind == "fog" or measures["q_haze"] == 1.0, (kind, severity)


# ---------------------------------------------------------------- real depth

def test_real_depth_faults_lower_the_score_and_never_lift_it():
    depth = middlebury_depth()
    clean = depth_quality(depth)
    assert clean.score >= 0.7, clean.measures
    faults = {
        "quantisation": lambda s: np.round(depth / (0.2 * s)) * (0.2 * s),
        "flying pixels": lambda s: depth_flying_pixels(depth, s, np.random.default_rng(0)),
        "top band": lambda s: depth_band_loss(depth, s, "top"),
        "side band": lambda s: depth_band_loss(depth, s, "left"),
    }
    for name, fault in faults.items():
        scores = [depth_quality(fault(s).astype(np.float32)).score for s in (0.25, 0.5, 0.75, 1)]
        assert max(scores) <= clean.score + 1e-6, (name, scores)
        assert scores[-1] < clean.score - 0.3, (name, clean.score, scores)
        assert np.all(np.diff(scores) <= 1e-6), (name, scores)


def test_ten_centimetre_steps_at_three_metres_are_seen():
    depth = middlebury_depth()
    coarse = depth_quality((np.round(depth / 0.1) * 0.1).astype(np.float32))
    assert coarse.measures["quant_step_m"] == pytest.approx(0.1, rel=0.01)
    assert coarse.score < depth_quality(depth).score - 0.1


@pytest.mark.parametrize("seed", [2_000_000, 2_000_001, 2_000_002])
def test_the_rendered_worlds_depth_has_no_flying_pixels_or_cut_bands(seed):
    """Sky above rooflines is not a cut, and range noise is not flying pixels: the new factors
    stay 1 on the world's clean depth and under its depth noise."""
    frames = World().render(seed)
    clean = depth_quality(frames.depth).measures
    assert clean["q_flying"] == clean["q_holes"] == 1.0, clean
    noisy = corrupt(frames, {"depth": ("noise", 1.0)}, seed=0).depth
    assert depth_quality(noisy).measures["q_flying"] == 1.0


# ---------------------------------------------------------------- lidar sector, saturation, ghosts

LIDAR_FAULT_FACTORS = ("q_sector_gap", "q_saturation", "q_below_ground")


def without_sector(points: np.ndarray, width_deg: float, centre_deg: float = 0.0) -> np.ndarray:
    """A blind sector: no return within width_deg / 2 of the centre azimuth."""
    azimuth = np.degrees(np.arctan2(points[:, 1], points[:, 0]))
    off = (azimuth - centre_deg + 180.0) % 360.0 - 180.0
    return points[np.abs(off) >= width_deg / 2]


def receiver_gain(points: np.ndarray, gain: float) -> np.ndarray:
    """Receiver gain too high: intensity x gain, clipped at the full scale 1."""
    out = points.copy()
    out[:, 3] = np.minimum(out[:, 3] * gain, 1.0)
    return out


def with_mirror_ghosts(points: np.ndarray, share: float, height: float, seed: int = 0):
    """Multipath: share x N ghosts of above-ground returns, mirrored about the road z = -h."""
    rng = np.random.default_rng(seed)
    above = np.flatnonzero(points[:, 2] > -height + 0.3)
    source = points[rng.choice(above, int(round(share * len(points))))].copy()
    source[:, 2] = -2.0 * height - source[:, 2]
    return np.concatenate([points, source])


def series(clouds, lidar: LidarModel, measure_name: str) -> tuple[list[float], list[float]]:
    """Scores and one measure over a sequence of clouds, each fault's severities in order."""
    results = [lidar_quality(points, lidar) for points in clouds]
    return [q.score for q in results], [q.measures[measure_name] for q in results]


def assert_falls(series: list[float]) -> None:
    """Never rises; ties only inside the healthy band (at 1)."""
    assert all(b <= a for a, b in zip(series, series[1:], strict=False)), np.round(series, 3)
    assert all(b < a for a, b in zip(series, series[1:], strict=False) if b < 1), np.round(
        series, 3)


@pytest.mark.parametrize("seed", [2_000_000, 2_000_001])
def test_clean_world_sweeps_keep_every_new_lidar_factor_at_one(seed):
    frames = World().render(seed)
    quality = lidar_quality(frames.points, frames.lidar)
    assert quality.score == 1.0, quality.measures
    assert quality.measures["sector_gap_deg"] == 0.0
    assert all(quality.measures[f] == 1.0 for f in LIDAR_FAULT_FACTORS), quality.measures


def test_the_realistic_cloud_keeps_its_blocked_rear_inside_the_healthy_band(real_like):
    measures = lidar_quality(real_like.points, LIDAR).measures
    assert 38.0 <= measures["sector_gap_deg"] <= 45.0  # the vehicle hides 40 degrees
    assert all(measures[f] == 1.0 for f in LIDAR_FAULT_FACTORS), measures


def test_a_blind_sector_lowers_the_score_with_its_width(rendered):
    scores, gaps = series((without_sector(rendered.points, w) for w in (0, 30, 60, 120, 180)),
                          rendered.lidar, "sector_gap_deg")
    assert gaps == pytest.approx([0, 30, 60, 120, 180], abs=1.5)
    assert_falls(scores)
    assert scores[0] == 1.0 and scores[3] < 0.55 and scores[4] < 0.3, np.round(scores, 3)


def test_intensity_saturation_and_a_stuck_channel_lower_the_score(rendered):
    scores, shares = series((receiver_gain(rendered.points, g) for g in (1, 2, 4, 8, 32)),
                            rendered.lidar, "saturated_fraction")
    assert shares[0] < 0.05 and shares[-1] > 0.7, np.round(shares, 3)
    assert_falls(scores)
    assert scores[-1] < 0.35, np.round(scores, 3)
    stuck = rendered.points.copy()
    stuck[:, 3] = 0.5
    assert lidar_quality(stuck, rendered.lidar).measures["saturated_fraction"] == 1.0
    stuck[:, 3] = 0.0  # a cloud without intensity (the ROS conversion fills zeros) is no fault
    assert lidar_quality(stuck, rendered.lidar).score == 1.0


def test_ghost_returns_under_the_road_lower_the_score(rendered):
    height = World().config.lidar_height
    clouds = (with_mirror_ghosts(rendered.points, s, height) for s in (0, 0.02, 0.05, 0.1, 0.2))
    scores, below = series(clouds, rendered.lidar, "below_ground_fraction")
    assert below[0] == 0.0 and below[-1] > 0.05, np.round(below, 3)
    assert_falls(scores)
    assert scores[-1] < 0.7, np.round(scores, 3)
