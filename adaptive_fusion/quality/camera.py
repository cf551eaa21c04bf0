"""Camera quality from one RGB (or grey) image, with no reference and no labels.

Measures (on the 8-bit luminance, in grey levels or pixels, but for the colour cast):
- noise_sigma: Immerkaer's fast noise estimate (a 3x3 second-difference mask that cancels
  planes and bilinear shading, so mean|response| = 6 sqrt(2/pi) sigma for white noise), averaged
  over the 20 % flattest 16x16 blocks only, so that texture, edges and JPEG ringing do not count
  as noise. Flatness is ranked by Sobel gradient energy, which is odd where the mask is even:
  for Gaussian noise the two are independent, so the selection does not bias sigma.
- blur_sigma: equivalent Gaussian edge blur in pixels, from re-blurring (Crete et al. 2007): an
  edge blurred by s0 keeps a fraction R = s0 / sqrt(s0^2 + sr^2) of its gradient energy when
  blurred again by sr, so s0 = sr R / sqrt(1 - R^2). Taken along rows and columns; the
  worse one counts (motion blur is directional).
- mean_luminance, clipped_fraction (pixels at 0-2 or 253-255).
- contrast: local contrast, std / (mean + 10) of each 16x16 block, at its 75th percentile over
  the blocks. Scale-free, so exposure does not move it, while fog does: it scales each block's
  std by the transmission and adds airlight to its mean. The 75th percentile reads the
  structured part of the image; sky and road are flat in any weather.
- occluded_fraction: share of 16x16 blocks that are dark (mean under 25 grey levels) and
  textureless: their std, once the image's own noise variance is taken out, is under 1 % of
  (mean + 10). Dirt or a hand on the lens is far out of focus and has no texture at all; real
  surfaces, even in deep shade, keep a few percent of texture contrast; sky and fog are
  textureless but bright.
- blockiness: JPEG's 8x8 blocking. The mean absolute step between neighbouring pixels, at each of
  the 8 offsets of the block grid, along rows and along columns; the largest over the median of
  the 8 (1 for an image without a grid). Steps are capped at the 90th percentile of the steps
  that are not 0 first, so a few strong edges that happen to share a column do not pass for a
  grid (at quality 3 nine steps in ten are 0, inside the flattened blocks, and a cap taken over
  all of them was 0), and the median has a floor of half a grey level, so a flat image (fog) is
  not a grid either.
- jpeg_step: JPEG's quantisation step, read back from the pixels. Each 8x8 block of the
  luminance (JPEG's Y is the same weighting) goes through the orthonormal DCT that JPEG uses; a
  decoded JPEG's coefficients sit on multiples of the step its quantisation table gave that
  frequency, off them only by the rounding to 8 bits. Per low frequency the step is the largest
  candidate whose multiples the coefficients cluster on (mean cos(2 pi c / q) over the
  coefficients not quantised to 0); the median over five low frequencies counts. An image that
  was never compressed, or was resampled after, has no step (1). Blocking grows with the step
  only where blocks differ, so the step sees a finely compressed image that blockiness cannot
  (a camera's q75 stream and q25 read the same blockiness on some photographs).
- colour_cast: how far the image is from neutral, |ln(channel / mean of channels)| at its
  largest, taken twice: on the mean of the mid-tones (grey world) and on the 99th percentile of
  each channel (white patch); the smaller counts. A colourful scene (a brown room) has a tinted
  mean but neutral highlights; a cast (white balance gone, a filter, a failed channel) tints both.
- haze_veil: the airlight veil, the darkest patches' dark channel over the bright level (see
  haze_veil): contrast reads haze only where structure is, the veil reads it everywhere.

Reference values (healthy limit: factor 1 up to here / half-point; see score.py):
- noise 2.5 / 15 grey levels (of the luminance): healthy cameras, JPEG included, show 0.2-2.5;
  at 15 a mid-grey edge of ~30 levels has an SNR of ~2 per pixel.
- blur 1 / 3 px: good optics and focus spread an edge by under a pixel; at 320 px width a
  pedestrian at 30 m is ~10 px wide and 3 px of edge spread erases it.
- mean luminance 45 / 25 grey levels: auto-exposed images sit at 80-140 and scenes with deep
  shade at 45-80; at 25 (2.2 stops under mid-grey) the signal is a few grey levels and
  quantisation dominates. Clipped fraction 0.15 / 0.4: high-contrast scenes in ordinary use
  clip that much (scikit-image's astronaut: 14 %, a black helmet and table), and a corruption
  that blurs, compresses, lifts or adds noise to a clipped area un-clips it, so a tighter band
  would let such a corruption raise the score; at 0.4 the view has lost about as much as the
  other measures' half-points take.
- local contrast 0.08 / 0.04: healthy images sit at 0.1-0.3; at 0.04 the structured blocks vary
  by 4 % of their brightness, near the visual contrast threshold (~2-5 %).
- occluded fraction 0.08 / 0.25: a deep shadow, a dark flat wall or crushed blacks can pass for
  a few blocks (scikit-image's astronaut: 7 %, a black helmet and table; haze or noise lifts
  them out of the count, so a tighter band would let those faults raise the score). Only blob
  interiors count (soft rims keep some of the scene), so a quarter of the blocks is
  about 40 % of the view behind dirt: objects are about as likely hidden as not.
- blockiness 2 / 3 (power 3): scikit-image's photographs read 1.02-1.18 as stored, 1.15-1.32
  after JPEG at quality 75 (a camera's usual setting), 1.3-1.8 at 50, 1.9-3.6 at 10, 2.7-6.3 at 5
  and 3.8-12.5 at 3; the rendered world, smooth as it is, 1.5-1.6 at 90, 1.8-1.95 at 75 and
  4.9-9.4 at 3, and under every corruption, uncompressed, at most 1.2. Blockiness speaks where
  the JPEG step cannot: below quality 10 the low frequencies' steps pass 64 and nearly every
  coefficient is 0, while the blocks' edges stand out more than ever.
- JPEG step 8 / 32 grey levels (DCT units): the standard luminance table's low frequencies give
  steps of 1-2 at quality 90-95, 6 at 75 (a camera's usual setting), 11-12 at 50, 30 at 20 and
  60 at 10 (scikit-image's photographs read exactly these). At 32 a block's coarsest ramp moves
  in steps of about 11 grey levels: low-contrast shapes are gone.
- colour cast 0.3 / 0.7: the photographs read 0.02-0.22 (a sunset sky the most), the rendered
  world at most 0.18; one channel at 0.3 of its value reads 0.64-1.0.
- haze veil 0.25 / 0.5: scikit-image's photographs read 0.00-0.08 clear and the rendered world at
  most 0.21 (its distant ground and sky lift the darkest patches); airlight of 16 / 32 / 48 / 64 /
  80 % lifts the photographs to 0.14-0.24 / 0.28-0.40 / 0.43-0.55 / 0.60-0.69 / 0.77-0.83, and
  the world's fog at severity 0.1 / 0.3 / 1 to about 0.25 / 0.35 / 0.6. Half-way at 0.5: half
  of the darkest surface's signal is airlight, and a dark object against it has lost half its
  contrast.
"""

import cv2
import numpy as np

from adaptive_fusion.quality.score import ModalityQuality, combine, falling, rising

BLOCK = 16
IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
FLAT_SHARE = 0.2
REBLUR_SIGMA = 3.0
DARK_LEVEL = 25.0  # grey levels, over 2 stops under mid-grey
TEXTURE_SHARE = 0.01  # texture (noise removed) under 1 % of a block's brightness is none
DARK_FLOOR = 10.0  # grey levels added to a block's mean in its contrast (Weber with a floor)

# (healthy limit, half-point, power) of each factor's curve, see score.py and the docstring
NOISE_CURVE = (2.5, 15.0, 2.0)
BLUR_CURVE = (1.0, 3.0, 3.0)
LUMINANCE_CURVE = (45.0, 25.0, 3.0)
CLIPPED_CURVE = (0.15, 0.4, 2.0)
CONTRAST_CURVE = (0.08, 0.04, 3.0)
OCCLUDED_CURVE = (0.08, 0.25, 2.0)
BLOCKINESS_CURVE = (2.0, 3.0, 3.0)
JPEG_STEP_CURVE = (8.0, 32.0, 2.0)
CAST_CURVE = (0.3, 0.7, 2.0)
VEIL_CURVE = (0.25, 0.5, 2.0)
JPEG_BLOCK = 8
STEP_CAP_PERCENTILE = 90
STEP_FLOOR = 0.5  # grey levels
SUBSAMPLE = 4  # every 4th line along the other axis: the statistics need no more
MID_TONES = (20.0, 235.0)  # grey levels of the pixels the grey-world mean reads
# (row, column) frequencies of the 8x8 DCT whose steps are read: the lowest, which every
# quality setting keeps and natural images fill
JPEG_FREQUENCIES = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0))
STEP_CANDIDATES = np.arange(2, 65, dtype=np.float32)  # beyond 64 blockiness speaks
STEP_MIN_COEFFICIENTS = 50  # coefficients off 0 a candidate needs to count
STEP_CLUSTERING = 0.5  # mean cos(2 pi c / q) above which the coefficients sit on multiples of q
STEP_MAX_MAGNITUDE = 1024  # an 8x8 block's low-frequency coefficients stay under 8 * 128

_REBLUR_KERNEL = cv2.getGaussianKernel(int(6 * REBLUR_SIGMA) | 1, REBLUR_SIGMA).astype(np.float32)
# neighbour pairs along rows and along columns, as (slice of a, slice of b), and the re-blur
# (x kernel, y kernel) along each
_DIRECTIONS = (
    ((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
    ((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
)
_ONE = np.ones((1, 1), np.float32)
_REBLUR_KERNELS = ((_REBLUR_KERNEL, _ONE), (_ONE, _REBLUR_KERNEL))
# white-noise energy gain of "re-blur, then neighbour difference" (sum of its squared taps)
_REBLUR_DIFF_GAIN = float(np.sum(np.diff(_REBLUR_KERNEL.ravel(), prepend=0, append=0) ** 2))


class ImageError(ValueError):
    """The input is not an 8-bit image."""


def _luminance(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ImageError(f"expected an (H, W[, 3]) uint8 image, got {image.dtype} {image.shape}")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = image.shape
    if h < 2 * BLOCK or w < 2 * BLOCK:
        raise ImageError(f"image {w}x{h} too small for quality measures")
    return image[: h // BLOCK * BLOCK, : w // BLOCK * BLOCK]


def _block_mean(values: np.ndarray) -> np.ndarray:
    h, w = values.shape
    return cv2.resize(values, (w // BLOCK, h // BLOCK), interpolation=cv2.INTER_AREA)


def noise_sigma(response: np.ndarray, gradient_energy: np.ndarray) -> float:
    """Immerkaer sigma from the per-block mean |response| over the flattest blocks."""
    flat = np.argsort(gradient_energy.ravel())[: max(1, int(FLAT_SHARE * gradient_energy.size))]
    return float(response.ravel()[flat].mean() * np.sqrt(np.pi / 2) / 6)


def local_contrast(block_mean: np.ndarray, block_var: np.ndarray) -> float:
    """75th percentile over blocks of std / (mean + DARK_FLOOR): the contrast of the
    well-structured quarter of the image (sky and road are flat in any weather)."""
    contrast = np.sqrt(block_var) / (block_mean + DARK_FLOOR)
    return float(np.percentile(contrast, 75))


def occluded_fraction(block_mean: np.ndarray, block_var: np.ndarray, sigma: float) -> float:
    """Share of blocks that look like dirt on the lens: dark, and with no texture once the
    image's own noise is taken out (a defocused blob has none; real surfaces, even in deep
    shade, keep a few percent of texture contrast)."""
    texture = np.sqrt(np.maximum(block_var - sigma**2 - 1.0 / 12.0, 0.0))
    flat = texture < TEXTURE_SHARE * (block_mean + DARK_FLOOR)
    return float(np.mean(flat & (block_mean <= DARK_LEVEL)))


def blur_sigma(grey_f: np.ndarray, noise: float) -> float:
    """Equivalent edge blur (pixels) along the blurrier of rows and columns (motion blur is
    directional), each measured with a re-blur along that direction only. The white-noise share
    of each gradient energy (sensor noise plus 8-bit quantisation, which a blurred image still
    has and which re-blurring removes) is subtracted first, so noise does not pass for
    sharpness."""
    variance = noise**2 + 1.0 / 12.0
    worst = 0.0
    for (a, b), (kx, ky) in zip(_DIRECTIONS, _REBLUR_KERNELS, strict=True):
        reblurred = cv2.sepFilter2D(grey_f, cv2.CV_32F, kx, ky)
        pairs = grey_f[a].size
        energy = cv2.norm(grey_f[a], grey_f[b], cv2.NORM_L2SQR) - 2.0 * variance * pairs
        if energy <= 0:
            continue
        kept = cv2.norm(reblurred[a], reblurred[b], cv2.NORM_L2SQR)
        kept = float(np.clip((kept - _REBLUR_DIFF_GAIN * variance * pairs) / energy, 0, 0.999))
        worst = max(worst, REBLUR_SIGMA * kept / np.sqrt(1.0 - kept**2))
    return worst


def blockiness(grey_f: np.ndarray) -> float:
    """JPEG block-grid strength: the largest of the 8 grid offsets' mean step over their
    median, along rows or columns (1 without a grid)."""
    worst = 1.0
    for steps in (np.abs(np.diff(grey_f[::SUBSAMPLE], axis=1)),
                  np.abs(np.diff(grey_f[:, ::SUBSAMPLE], axis=0)).T):
        moving = steps[steps > 0]  # inside a heavily compressed block nothing moves at all
        cap = np.percentile(moving, STEP_CAP_PERCENTILE) if moving.size else 0.0
        capped = np.minimum(steps, cap)
        per_offset = np.array([capped[:, k::JPEG_BLOCK].mean() for k in range(JPEG_BLOCK)])
        worst = max(worst, float(per_offset.max() / max(np.median(per_offset), STEP_FLOOR)))
    return worst


def _dct_rows(n: int) -> np.ndarray:
    """(n, n) orthonormal DCT-II basis, one frequency a row: JPEG's transform."""
    x = np.arange(n)
    basis = np.sqrt(2.0 / n) * np.cos((2 * x + 1) * np.arange(n)[:, None] * np.pi / (2 * n))
    basis[0] = np.sqrt(1.0 / n)
    return basis.astype(np.float32)


_JPEG_BASIS = _dct_rows(JPEG_BLOCK)[: 1 + max(max(f) for f in JPEG_FREQUENCIES)]


def _step_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per candidate step q (rows) and rounded coefficient magnitude k (columns): whether k
    counts for q (off 0 by at least q / 2: a coefficient quantised to 0 fits any step) and
    cos(2 pi k / q) where it does. The last column, where larger magnitudes pile up, never
    counts."""
    k = np.arange(STEP_MAX_MAGNITUDE + 1, dtype=np.float32)
    counts = (k >= STEP_CANDIDATES[:, None] / 2) & (k < STEP_MAX_MAGNITUDE)
    return counts.astype(np.float32), np.cos(2 * np.pi * k / STEP_CANDIDATES[:, None]) * counts


_STEP_COUNTS, _STEP_COSINES = _step_tables()


def jpeg_step(grey_f: np.ndarray) -> float:
    """JPEG's quantisation step at the lowest DCT frequencies (median over them), 1 where the
    coefficients sit on no grid (never compressed, or resampled since). The coefficients'
    magnitudes are rounded to whole grey levels (JPEG's steps are whole, and 8-bit rounding moves
    a decoded coefficient by about 0.3), so that every candidate is scored from one histogram."""
    h, w = grey_f.shape
    blocks = grey_f.reshape(h // JPEG_BLOCK, JPEG_BLOCK, w // JPEG_BLOCK, JPEG_BLOCK)
    coefficients = np.einsum("iyjx,uy,vx->uvij", blocks, _JPEG_BASIS, _JPEG_BASIS, optimize=True)
    steps = []
    for u, v in JPEG_FREQUENCIES:
        magnitude = np.minimum(np.rint(np.abs(coefficients[u, v])), STEP_MAX_MAGNITUDE)
        histogram = np.bincount(magnitude.astype(np.int64).ravel(),
                                minlength=STEP_MAX_MAGNITUDE + 1).astype(np.float32)
        count, clustering = _STEP_COUNTS @ histogram, _STEP_COSINES @ histogram
        fits = (count >= STEP_MIN_COEFFICIENTS) & (clustering > STEP_CLUSTERING * count)
        steps.append(float(STEP_CANDIDATES[fits].max()) if fits.any() else 1.0)
    return float(np.median(steps))


def colour_cast(image: np.ndarray) -> float:
    """Departure from neutral (0 for grey): the smaller of the grey-world and the white-patch
    estimate, each the largest |ln(channel / mean of the channels)|."""
    if image.ndim == 2:
        return 0.0
    pixels = image[::SUBSAMPLE, ::SUBSAMPLE].reshape(-1, 3).astype(np.float32)
    grey = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
    mid = pixels[(grey > MID_TONES[0]) & (grey < MID_TONES[1])]
    if len(mid) < 100:  # nearly all dark or all clipped: exposure's factor speaks for it
        return 0.0
    mean = mid.mean(axis=0) + 1.0
    bright = np.percentile(pixels[grey < 250], 99, axis=0) + 1.0
    return float(min(np.abs(np.log(values / values.mean())).max() for values in (mean, bright)))


def haze_veil(image: np.ndarray, grey: np.ndarray) -> float:
    """The airlight veil: the darkest patches' dark channel (the 5th percentile over the image of
    the minimum over the channels and a 5x5 neighbourhood, on every other pixel) relative to the
    bright level (the 99th percentile of luminance). He et al.'s dark channel prior: in a clear
    view the darkest patches (shadows, dark or saturated surfaces) are near black; haze or fog
    adds airlight to every pixel, so the darkest ones rise by the airlight's share. Scale-free,
    so exposure does not move it."""
    half = image[::2, ::2]
    if half.ndim == 3:  # pairwise minima: numpy's reduction over a 3-long axis is 10x slower
        half = np.minimum(np.minimum(half[..., 0], half[..., 1]), half[..., 2])
    dark = cv2.erode(np.ascontiguousarray(half), np.ones((5, 5), np.uint8))
    bright = float(np.percentile(grey[::SUBSAMPLE, ::SUBSAMPLE], 99))
    return float(np.percentile(dark, 5)) / max(bright, 1.0)


def camera_quality(image: np.ndarray) -> ModalityQuality:
    """Quality of an (H, W, 3) RGB or (H, W) grey uint8 image."""
    grey = _luminance(image)
    grey_f = grey.astype(np.float32)
    dx = cv2.Sobel(grey_f, cv2.CV_32F, 1, 0)
    dy = cv2.Sobel(grey_f, cv2.CV_32F, 0, 1)
    gradient_energy = _block_mean(dx * dx + dy * dy)
    response = _block_mean(np.abs(cv2.filter2D(grey_f, cv2.CV_32F, IMMERKAER)))
    sigma = noise_sigma(response, gradient_energy)
    block_mean = _block_mean(grey_f)
    block_var = np.maximum(_block_mean(grey_f * grey_f) - block_mean**2, 0.0)
    mean = float(block_mean.mean())
    clipped = float(np.count_nonzero((grey <= 2) | (grey >= 253))) / grey.size
    contrast = local_contrast(block_mean, block_var)
    occluded = occluded_fraction(block_mean, block_var, sigma)
    blur = blur_sigma(grey_f, sigma)
    blocks = blockiness(grey_f)
    step = jpeg_step(grey_f)
    cast = colour_cast(image)
    veil = haze_veil(image, grey)

    measures = {
        "noise_sigma": sigma,
        "blur_sigma_px": blur,
        "mean_luminance": mean,
        "clipped_fraction": clipped,
        "contrast": contrast,
        "occluded_fraction": occluded,
        "blockiness": blocks,
        "jpeg_step": step,
        "colour_cast": cast,
        "haze_veil": veil,
    }
    factors = {
        "noise": falling(sigma, *NOISE_CURVE),
        "sharpness": falling(blur, *BLUR_CURVE),
        "exposure": rising(mean, *LUMINANCE_CURVE) * falling(clipped, *CLIPPED_CURVE),
        "contrast": rising(contrast, *CONTRAST_CURVE),
        "occlusion": falling(occluded, *OCCLUDED_CURVE),
        "compression": min(falling(blocks, *BLOCKINESS_CURVE),
                           falling(step, *JPEG_STEP_CURVE)),
        "colour": falling(cast, *CAST_CURVE),
        "haze": falling(veil, *VEIL_CURVE),
    }
    return combine(factors, measures)
