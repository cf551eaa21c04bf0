"""Sensor corruptions with a continuous severity in [0, 1], the way real sensors degrade.

Every function works on plain arrays (so the ROS sim node can call them on its own buffers),
is deterministic given its `numpy.random.Generator`, and returns its input unchanged (a copy) at
severity 0. `corrupt(frames, spec, seed)` applies a spec to a whole FrameSet.

Dead sensors carry no data, and a dead sensor has no degree: any severity above 0 kills it.
- dead camera: an all-zero (black) image of the same shape, as a camera with a dead sensor chip
  or a covered lens delivers; the topic keeps publishing.
- dead depth: an all-NaN image (no valid pixel).
- dead lidar: an empty cloud, shape (0, 4).

Fog is one extinction coefficient beta (1/m) shared by every sensor (droplets are large compared
with both visible and 905 nm light, so Mie extinction is about the same at both wavelengths):
beta = FOG_BETA_MAX * severity, i.e. a meteorological visibility 3/beta of 15 m at severity 1.
"""

import dataclasses

import cv2
import numpy as np

from adaptive_fusion.core.frames import CORRUPTIONS, FrameSet, LidarModel

SCENE_EVENTS: tuple[str, ...] = ("fog",)  # spec key "scene": hits every sensor coherently
# Faults of real sensors that the world's corruption family (core.frames.CORRUPTIONS, the kinds
# a controller learns to name) leaves out. `corrupt` applies them like the others; a controller
# may train on them (CorruptionSampler.real_world) without a kind label, or have them held out.
REAL_WORLD_FAULTS: dict[str, tuple[str, ...]] = {
    "camera": ("jpeg", "colour_cast"),
    "depth": ("flying_pixels", "band_loss"),
    "lidar": ("sector_gap", "saturation", "ghosts"),
}

# Severity-1 magnitudes (each corruption is linear in severity up to these, unless noted).
CAMERA_NOISE_SIGMA = 50.0  # grey levels
LOW_LIGHT_STOPS = 8.0  # exposure lost in linear light (the stops are linear in severity)
FULL_WELL = 2000.0  # electrons at white for the shot-noise model of low light
READ_NOISE = 2.0  # electrons
MOTION_BLUR_LENGTH = 24.0  # pixels of smear added at severity 1
MOTION_BLUR_TILT = 10.0  # degrees off horizontal
OCCLUSION_COVER = 0.7  # fraction of the image under dirt at severity 1
OCCLUSION_DEFOCUS = 0.02  # blur of the blob rims, as a fraction of the image width
FOG_BETA_MAX = 0.2  # 1/m, visibility 15 m
FOG_AIRLIGHT = np.array([205.0, 208.0, 212.0])  # the grey-white of a fog bank, RGB
FOG_SENSOR_NOISE = 1.0  # grey levels, a healthy camera's read noise (kept under fog, dirt)
DEPTH_NOISE_REL = 0.2  # sigma relative to range
DEPTH_HOLES = 0.8  # fraction of pixels lost
DEPTH_QUANT_STEP = 2.0  # metres
DEPTH_FOG_NOISE_REL = 0.08  # scattering noise of an active depth camera, relative to range
LIDAR_DROPOUT = 0.95  # fraction of points lost
LIDAR_RANGE_NOISE = 0.5  # metres
LIDAR_SPURIOUS = 0.5  # fraction of returns replaced by near clutter (rain, fog)
SPURIOUS_RANGE = (0.5, 6.0)  # metres, where rain/fog clutter returns come from
LIDAR_FOG_SPURIOUS = 0.3
LIDAR_MIN_TRANSMISSION = 0.01  # two-way transmission below which a lidar return is lost
DEPTH_MIN_TRANSMISSION = 0.05  # weaker emitter than a lidar


class CorruptionError(ValueError):
    """An unknown modality or corruption kind, or a severity outside [0, 1]."""


def _check_severity(severity: float) -> float:
    severity = float(severity)
    if not 0.0 <= severity <= 1.0:
        raise CorruptionError(f"severity must be in [0, 1], got {severity}")
    return severity


def fog_beta(severity: float) -> float:
    """Extinction coefficient (1/m) of fog at this severity."""
    return FOG_BETA_MAX * _check_severity(severity)


# ---------------------------------------------------------------- camera


def camera_noise(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian read noise, sigma up to CAMERA_NOISE_SIGMA grey levels."""
    if _check_severity(severity) == 0:
        return image.copy()
    noisy = image + rng.normal(0.0, CAMERA_NOISE_SIGMA * severity, image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def camera_low_light(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Less light: exposure falls by up to LOW_LIGHT_STOPS in linear light, with the photon shot
    noise and read noise of the electrons that are left (then sRGB-like gamma again)."""
    if _check_severity(severity) == 0:
        return image.copy()
    linear = (image / 255.0) ** 2.2
    electrons = linear * FULL_WELL * 2.0 ** (-LOW_LIGHT_STOPS * severity)
    electrons = rng.poisson(electrons) + rng.normal(0.0, READ_NOISE, image.shape)
    linear = np.clip(electrons / FULL_WELL, 0.0, 1.0)
    return np.rint(255.0 * linear ** (1 / 2.2)).astype(np.uint8)


def motion_blur_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Normalised line kernel of a (fractional) length in pixels along angle_deg."""
    size = int(np.ceil(length)) // 2 * 2 + 3
    line = np.zeros((size, size), np.float32)
    c = size // 2
    half = length / 2
    for j in range(size):  # anti-aliased: the end pixels get their partial coverage
        offset = abs(j - c)
        line[c, j] = np.clip(half + 0.5 - offset, 0.0, 1.0)
    rotation = cv2.getRotationMatrix2D((c, c), angle_deg, 1.0)
    kernel = cv2.warpAffine(line, rotation, (size, size), flags=cv2.INTER_LINEAR)
    return kernel / kernel.sum()


def camera_motion_blur(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Linear motion smear of 1 + MOTION_BLUR_LENGTH * severity pixels, horizontal within
    MOTION_BLUR_TILT degrees: a ground robot's camera smears most while turning (yaw), with some
    vibration on top."""
    if _check_severity(severity) == 0:
        return image.copy()
    angle = rng.uniform(-MOTION_BLUR_TILT, MOTION_BLUR_TILT)
    kernel = motion_blur_kernel(1.0 + MOTION_BLUR_LENGTH * severity, angle)
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)


def ray_distance(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Distance along each pixel's ray from a z-depth image; inf where depth is invalid (sky)."""
    h, w = depth.shape
    x = (np.arange(w) + 0.5 - K[0, 2]) / K[0, 0]
    y = (np.arange(h) + 0.5 - K[1, 2]) / K[1, 1]
    scale = np.sqrt(1.0 + x[None, :] ** 2 + y[:, None] ** 2)
    return np.where(np.isfinite(depth), depth * scale, np.inf)


def camera_fog(image: np.ndarray, distance: np.ndarray, severity: float,
               rng: np.random.Generator) -> np.ndarray:
    """Koschmieder's law: I = I0 t + A (1 - t), t = exp(-beta d); distance (H, W) metres along
    the ray, inf for sky. The sensor's own noise is not attenuated by the fog (it arises after
    the optics), so what the scaling by t removed of it is put back (FOG_SENSOR_NOISE)."""
    beta = fog_beta(severity)
    if beta == 0:
        return image.copy()
    t = np.exp(-beta * distance)[..., None]
    sensor_noise = rng.normal(0.0, FOG_SENSOR_NOISE, image.shape) * np.sqrt(1.0 - t**2)
    fogged = image * t + FOG_AIRLIGHT * (1.0 - t) + sensor_noise
    return np.clip(np.rint(fogged), 0, 255).astype(np.uint8)


def camera_occlusion(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Dirt on the lens: dark blobs covering OCCLUSION_COVER * severity of the image, defocused
    (the lens surface is far out of focus, so their rims are soft), with the sensor's own noise
    still on top. The blobs are the top of one smooth random field per seed, so a higher severity
    grows the same blobs (nested) and the covered share is exact rather than stepped."""
    if _check_severity(severity) == 0:
        return image.copy()
    h, w = image.shape[:2]
    field = cv2.resize(rng.random((4, 5)).astype(np.float32), (w, h),
                       interpolation=cv2.INTER_CUBIC)
    field += 0.25 * cv2.resize(rng.random((12, 16)).astype(np.float32), (w, h),
                               interpolation=cv2.INTER_CUBIC)
    covered = (field >= np.quantile(field, 1.0 - OCCLUSION_COVER * severity)).astype(np.float32)
    alpha = cv2.GaussianBlur(covered, (0, 0), OCCLUSION_DEFOCUS * w)[..., None]  # opaque mud
    mud = np.array([20.0, 17.0, 14.0]) * rng.uniform(0.6, 1.0)  # backlit dirt is dark
    sensor_noise = rng.normal(0.0, FOG_SENSOR_NOISE, image.shape) * alpha
    out = image * (1.0 - alpha) + mud * alpha + sensor_noise
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def camera_dead(image: np.ndarray) -> np.ndarray:
    return np.zeros_like(image)


# ---------------------------------------------------------------- depth


def camera_jpeg(image: np.ndarray, severity: float) -> np.ndarray:
    """JPEG compression from quality 95 at severity 0 down to 5 at 1 (blocking, ringing)."""
    if _check_severity(severity) == 0:
        return image.copy()
    quality = int(round(95 - 90 * severity))
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])  # fmt: skip
    if not ok:
        raise CorruptionError(f"JPEG encoding failed for an image of shape {image.shape}")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def camera_colour_cast(image: np.ndarray, severity: float, channel: int) -> np.ndarray:
    """White balance gone: one channel (0 red, 1 green, 2 blue) down to 30 % at severity 1."""
    out = image.astype(np.float32)
    out[..., channel] *= 1.0 - 0.7 * _check_severity(severity)
    return np.round(out).astype(np.uint8)


def depth_noise(depth: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Range-proportional Gaussian noise, sigma = DEPTH_NOISE_REL * severity * z."""
    if _check_severity(severity) == 0:
        return depth.copy()
    noisy = depth * (1.0 + rng.normal(0.0, DEPTH_NOISE_REL * severity, depth.shape))
    return np.where(noisy > 0, noisy, np.nan).astype(np.float32)


def depth_holes(depth: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Dropout in clusters (dark, shiny or textureless patches): a smooth random field
    thresholded so that DEPTH_HOLES * severity of the pixels become invalid."""
    if _check_severity(severity) == 0:
        return depth.copy()
    h, w = depth.shape
    coarse = rng.random((max(h // 12, 2), max(w // 12, 2))).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    field += 0.15 * rng.random((h, w), dtype=np.float32)  # ragged hole borders
    cut = np.quantile(field, DEPTH_HOLES * severity)
    return np.where(field < cut, np.nan, depth).astype(np.float32)


def depth_quantization(depth: np.ndarray, severity: float) -> np.ndarray:
    """Depth rounded to steps of DEPTH_QUANT_STEP * severity metres (bin centres, never 0)."""
    step = DEPTH_QUANT_STEP * _check_severity(severity)
    if step == 0:
        return depth.copy()
    return ((np.floor(depth / step) + 0.5) * step).astype(np.float32)


def depth_flying_pixels(depth: np.ndarray, severity: float,
                        rng: np.random.Generator) -> np.ndarray:
    """Mixed pixels at depth edges, as time-of-flight and stereo cameras make them: within
    1 + 3 * severity px of a jump of over 10 % in depth, each pixel's depth is a random blend of
    the nearest and the farthest surface around it."""
    if _check_severity(severity) == 0:
        return depth.copy()
    width = round(1 + 3 * severity)
    filled = np.nan_to_num(depth, nan=0.0, posinf=0.0).astype(np.float32)
    unknown_far = np.where(filled > 0, filled, np.float32(1e4))

    def spread(size: int) -> tuple[np.ndarray, np.ndarray]:
        window = np.ones((size, size), np.uint8)
        return cv2.erode(unknown_far, window), cv2.dilate(filled, window)

    near, far = spread(3)
    jump = (filled > 0) & (far - near > 0.1 * filled)
    band = (cv2.dilate(jump.view(np.uint8), np.ones((2 * width - 1,) * 2, np.uint8)) > 0)
    band &= filled > 0
    near, far = spread(2 * width + 1)
    mix = rng.uniform(0.0, 1.0, int(band.sum())).astype(np.float32)
    out = depth.astype(np.float32, copy=True)
    out[band] = mix * near[band] + (1.0 - mix) * far[band]
    return out


def depth_band_loss(depth: np.ndarray, severity: float, side: str = "top") -> np.ndarray:
    """A band of the image without depth, up to 40 % of its height ("top") or width ("left")
    at severity 1: a failed region of the imager or a blocked emitter."""
    share = 0.4 * _check_severity(severity)
    out = depth.astype(np.float32, copy=True)
    if side == "top":
        out[: int(round(share * depth.shape[0]))] = np.nan
    elif side == "left":
        out[:, : int(round(share * depth.shape[1]))] = np.nan
    else:
        raise ValueError(f"side must be 'top' or 'left', got {side!r}")
    return out


def depth_fog(
    depth: np.ndarray, distance: np.ndarray, severity: float, rng: np.random.Generator
) -> np.ndarray:
    """An active depth camera in fog: pixels whose two-way transmission falls below
    DEPTH_MIN_TRANSMISSION go invalid, the rest get scattering noise."""
    beta = fog_beta(severity)
    if beta == 0:
        return depth.copy()
    max_range = np.log(1.0 / DEPTH_MIN_TRANSMISSION) / (2.0 * beta)
    noisy = depth * (1.0 + rng.normal(0.0, DEPTH_FOG_NOISE_REL * severity, depth.shape))
    return np.where((distance <= max_range) & (noisy > 0), noisy, np.nan).astype(np.float32)


def depth_dead(depth: np.ndarray) -> np.ndarray:
    return np.full_like(depth, np.nan)


# ---------------------------------------------------------------- lidar


def beam_index(points: np.ndarray, lidar: LidarModel) -> np.ndarray:
    """Index of the nearest beam of the pattern for each point (by elevation angle)."""
    elevation = np.degrees(np.arctan2(points[:, 2], np.hypot(points[:, 0], points[:, 1])))
    beams = np.asarray(lidar.elevations_deg, dtype=np.float64)
    edges = (beams[1:] + beams[:-1]) / 2
    return np.searchsorted(edges, elevation)


def lidar_dropout(points: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Random point loss: each return survives with probability 1 - LIDAR_DROPOUT * severity."""
    if _check_severity(severity) == 0:
        return points.copy()
    return points[rng.random(len(points)) >= LIDAR_DROPOUT * severity]


def lidar_beam_loss(
    points: np.ndarray, lidar: LidarModel, severity: float, rng: np.random.Generator
) -> np.ndarray:
    """Failing lasers: round(severity * (n_beams - 1)) random beams return nothing."""
    if _check_severity(severity) == 0:
        return points.copy()
    lost = rng.permutation(lidar.n_beams)[: int(round(severity * (lidar.n_beams - 1)))]
    return points[~np.isin(beam_index(points, lidar), lost)]


def _set_range(points: np.ndarray, new_range: np.ndarray) -> np.ndarray:
    """Move points along their rays to new ranges (direction kept, as range errors do)."""
    out = points.copy()
    old = np.linalg.norm(points[:, :3], axis=1)
    out[:, :3] *= (new_range / np.maximum(old, 1e-6))[:, None]
    return out


def lidar_range_noise(points: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian range error along each ray, sigma up to LIDAR_RANGE_NOISE metres."""
    if _check_severity(severity) == 0:
        return points.copy()
    r = np.linalg.norm(points[:, :3], axis=1)
    new_range = np.abs(r + rng.normal(0.0, LIDAR_RANGE_NOISE * severity, len(points)))
    return _set_range(points, new_range)


def _spurious(points: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Replace a fraction of returns by near clutter on the same rays (the first return of a
    single-return lidar is the droplet, not the surface), with weak intensity."""
    hit = rng.random(len(points)) < fraction
    out = points.copy()
    clutter = rng.uniform(*SPURIOUS_RANGE, int(hit.sum()))
    out[hit] = _set_range(points[hit], clutter)
    out[hit, 3] = rng.uniform(0.0, 0.1, int(hit.sum()))
    return out


def lidar_spurious(points: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Rain/fog clutter: LIDAR_SPURIOUS * severity of the returns come from near droplets."""
    if _check_severity(severity) == 0:
        return points.copy()
    return _spurious(points, LIDAR_SPURIOUS * severity, rng)


def lidar_fog(points: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Fog on a lidar: returns beyond the range where two-way transmission exp(-2 beta r) falls
    below LIDAR_MIN_TRANSMISSION are lost, intensity is attenuated, near clutter appears."""
    beta = fog_beta(severity)
    if beta == 0:
        return points.copy()
    r = np.linalg.norm(points[:, :3], axis=1)
    transmission = np.exp(-2.0 * beta * r)
    kept = points[transmission >= LIDAR_MIN_TRANSMISSION].copy()
    kept[:, 3] *= transmission[transmission >= LIDAR_MIN_TRANSMISSION]
    return _spurious(kept, LIDAR_FOG_SPURIOUS * severity, rng)


def lidar_sector_gap(points: np.ndarray, severity: float, azimuth_deg: float) -> np.ndarray:
    """A blind sector up to 180 degrees wide (a mount, a failed mirror facet, mud) centred on
    `azimuth_deg`."""
    azimuth = np.degrees(np.arctan2(points[:, 1], points[:, 0]))
    off = (azimuth - azimuth_deg + 180.0) % 360.0 - 180.0
    return points[np.abs(off) >= 90.0 * _check_severity(severity)].copy()


def lidar_saturation(points: np.ndarray, severity: float) -> np.ndarray:
    """Receiver gain up to 2^5 at severity 1, intensities clipped at full scale (1)."""
    out = points.copy()
    out[:, 3] = np.minimum(out[:, 3] * 2.0 ** (5.0 * _check_severity(severity)), 1.0)
    return out


def lidar_ghosts(points: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Multipath ghosts: up to 30 % extra returns at severity 1, mirror images of above-ground
    returns about the road (a wet road reflects the beam to an object and back), so they lie
    under it. The road's height is the cloud's 5th percentile of z: most of a driving sweep's
    returns come from the road."""
    if _check_severity(severity) == 0 or len(points) == 0:
        return points.copy()
    road = float(np.percentile(points[:, 2], 5))
    above = np.flatnonzero(points[:, 2] > road + 0.3)
    if not above.size:
        return points.copy()
    ghosts = points[rng.choice(above, int(round(0.3 * severity * len(points))))]
    ghosts[:, 2] = 2.0 * road - ghosts[:, 2]
    return np.concatenate([points, ghosts])


def lidar_dead(points: np.ndarray) -> np.ndarray:
    return np.zeros((0, points.shape[1]), points.dtype)


# ---------------------------------------------------------------- dispatch


def corrupt_camera(
    image: np.ndarray,
    kind: str,
    severity: float,
    rng: np.random.Generator,
    distance: np.ndarray | None = None,
) -> np.ndarray:
    """One camera corruption; fog needs the per-pixel ray distance (see `ray_distance`)."""
    if kind == "fog":
        if distance is None:
            raise CorruptionError("camera fog needs the per-pixel distance")
        return camera_fog(image, distance, severity, rng)
    simple = {
        "noise": camera_noise,
        "low_light": camera_low_light,
        "motion_blur": camera_motion_blur,
        "occlusion": camera_occlusion,
        "jpeg": lambda image, s, _rng: camera_jpeg(image, s),
        "colour_cast": lambda image, s, r: camera_colour_cast(image, s, int(r.integers(3))),
    }
    return _dispatch("camera", kind, severity, image, simple, camera_dead, rng)


def corrupt_depth(
    depth: np.ndarray, kind: str, severity: float, rng: np.random.Generator
) -> np.ndarray:
    simple = {
        "noise": depth_noise,
        "holes": depth_holes,
        "quantization": lambda d, s, _rng: depth_quantization(d, s),
        "flying_pixels": depth_flying_pixels,
        "band_loss": lambda d, s, r: depth_band_loss(d, s, ("top", "left")[int(r.integers(2))]),
    }
    return _dispatch("depth", kind, severity, depth, simple, depth_dead, rng)


def corrupt_lidar(
    points: np.ndarray,
    kind: str,
    severity: float,
    rng: np.random.Generator,
    lidar: LidarModel | None = None,
) -> np.ndarray:
    """One lidar corruption; beam loss needs the beam pattern."""
    if kind == "beam_loss":
        if lidar is None:
            raise CorruptionError("lidar beam_loss needs the LidarModel")
        return lidar_beam_loss(points, lidar, severity, rng)
    simple = {
        "dropout": lidar_dropout,
        "range_noise": lidar_range_noise,
        "spurious": lidar_spurious,
        "sector_gap": lambda p, s, r: lidar_sector_gap(p, s, float(r.uniform(-180.0, 180.0))),
        "saturation": lambda p, s, _rng: lidar_saturation(p, s),
        "ghosts": lidar_ghosts,
    }
    return _dispatch("lidar", kind, severity, points, simple, lidar_dead, rng)


def _dispatch(modality, kind, severity, data, simple, dead, rng):
    known = (*CORRUPTIONS[modality], *REAL_WORLD_FAULTS[modality])
    if kind not in known:
        raise CorruptionError(f"unknown {modality} corruption {kind!r}; known: {', '.join(known)}")
    if kind == "dead":
        return data.copy() if _check_severity(severity) == 0 else dead(data)
    return simple[kind](data, severity, rng)


def _as_list(entry) -> list[tuple[str, float]]:
    """Spec values are one (kind, severity) pair or a list of them (applied in order)."""
    pairs = [entry] if isinstance(entry, tuple) and entry and isinstance(entry[0], str) else entry
    try:
        return [(str(kind), float(severity)) for kind, severity in pairs]
    except (TypeError, ValueError) as error:
        raise CorruptionError(f"a spec value must be (kind, severity) or a list of them, "
                              f"got {entry!r}") from error


def corrupt(frames: FrameSet, spec: dict, seed: int) -> FrameSet:
    """A corrupted copy of `frames`. spec maps a modality ("camera", "depth", "lidar") to
    (kind, severity) or a list of such pairs, and optionally "scene" to ("fog", severity),
    which is applied first to every sensor. Each modality draws from its own stream of `seed`,
    so corrupting one never changes another's randomness."""
    unknown = set(spec) - set(CORRUPTIONS) - {"scene"}
    if unknown:
        raise CorruptionError(
            f"unknown spec keys {sorted(unknown)}; known: {', '.join(CORRUPTIONS)}, scene"
        )
    rngs = {m: np.random.default_rng([seed, i]) for i, m in enumerate(("scene", *CORRUPTIONS))}
    image, points = frames.image.copy(), frames.points.copy()
    depth = distance = None  # a frame set without a depth camera (nuScenes) has neither
    if frames.depth is not None:
        distance = ray_distance(frames.depth, frames.calib.K)  # from the clean depth
        depth = frames.depth.copy()
    elif "depth" in spec or "scene" in spec:
        raise CorruptionError("this frame set has no depth image: it has no depth to corrupt, "
                              "nor the distances fog needs")
    for kind, severity in _as_list(spec.get("scene", [])):
        if kind not in SCENE_EVENTS:
            raise CorruptionError(f"unknown scene event {kind!r}; known: {SCENE_EVENTS}")
        image = camera_fog(image, distance, severity, rngs["scene"])
        depth = depth_fog(depth, distance, severity, rngs["scene"])
        points = lidar_fog(points, severity, rngs["scene"])
    for kind, severity in _as_list(spec.get("camera", [])):
        image = corrupt_camera(image, kind, severity, rngs["camera"], distance)
    for kind, severity in _as_list(spec.get("depth", [])):
        depth = corrupt_depth(depth, kind, severity, rngs["depth"])
    for kind, severity in _as_list(spec.get("lidar", [])):
        points = corrupt_lidar(points, kind, severity, rngs["lidar"], frames.lidar)
    return dataclasses.replace(frames, image=image, depth=depth, points=points)
