"""Quality measures: speed per frame set on one core, and how well each modality's score tracks
each injected corruption (Spearman rho between severity and score) without moving the others.

    .venv/bin/python bench/bench_quality.py                   # 400 scenes, table + PNG
    .venv/bin/python bench/bench_quality.py --json out.json   # also machine-readable
    .venv/bin/python bench/bench_quality.py --scenes 60 --skip-timing   # quick look

Severities are uniform on [0, 1] per scene, except "dead", which has no degree: half the scenes
get 0, half 1. With all dead scores tied at 0, Spearman rho is then at most sqrt(6/7) = 0.926 in
magnitude, reached when every dead score is below every clean one.
Targets: rho <= -0.9 for the corrupted modality (every modality for scene fog), |rho| < 0.2 for
the untouched ones.

A second table scores real photographs (scikit-image's, the Middlebury motorcycle's left view
among them) under faults implemented here, independently of the renderer: JPEG, a colour cast,
noise, blur, low light, haze and a dark lens blob, six severities each; rho per photo between
severity and camera score, its mean and worst over the photos, and the most any faulted photo
scores above its clean self. Target: rho <= -0.8 per kind, clean photos scoring at least 0.7, no
fault lifting a photo above its clean score.

A lidar table puts faults that the world's corruptions lack, implemented here, on world
sweeps (the first 20 scenes): a blind sector up to 180 degrees, receiver saturation (intensity
gain up to 32x, clipped at full scale) and multipath ghosts (up to 30 % extra returns, mirrored
about the road); six severities each, rho per scene between severity and lidar score, its mean
and worst. Target: rho <= -0.8 per kind.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before numpy loads

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adaptive_fusion.core.frames import CORRUPTIONS, MODALITIES  # noqa: E402
from adaptive_fusion.lab.real_data import middlebury_depth, real_photos  # noqa: E402
from adaptive_fusion.quality import camera_quality, depth_quality, lidar_quality, measure  # noqa: E402
from adaptive_fusion.sim import World, WorldConfig  # noqa: E402
from adaptive_fusion.sim.corruptions import (  # noqa: E402
    REAL_WORLD_FAULTS,
    SCENE_EVENTS,
    camera_colour_cast,
    camera_jpeg,
    corrupt,
    corrupt_lidar,
    depth_band_loss,
    depth_flying_pixels,
)

TARGET_OWN, TARGET_OTHER = 0.9, 0.2


def corruption_types() -> list[tuple[str, str]]:
    """(spec key, kind) for every per-modality corruption and every scene event."""
    per_modality = [(m, kind) for m, kinds in CORRUPTIONS.items() for kind in kinds]
    return per_modality + [("scene", event) for event in SCENE_EVENTS]


def time_quality(frames, repeats: int) -> dict[str, dict[str, float]]:
    """Median milliseconds per call of each modality's measure on one thread: CPU time of the
    process (the cost on one core, robust to other programs sharing the machine) and wall."""
    calls = {
        "camera": lambda: camera_quality(frames.image),
        "depth": lambda: depth_quality(frames.depth),
        "lidar": lambda: lidar_quality(frames.points, frames.lidar),
        "total": lambda: measure(frames),
    }
    result = {}
    for name, call in calls.items():
        call()
        cpu, wall = [], []
        for _ in range(repeats):
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            call()
            cpu.append(time.process_time() - cpu_start)
            wall.append(time.perf_counter() - wall_start)
        result[name] = {"cpu_ms": 1e3 * float(np.median(cpu)),
                        "wall_ms": 1e3 * float(np.median(wall))}
    return result


def rank_correlation(severities: np.ndarray, scores: list[float]) -> float:
    """Spearman rho; 0 when the scores do not move at all (a constant has no correlation, and
    an untouched healthy sensor scores exactly 1 in every scene)."""
    if np.ptp(scores) == 0:
        return 0.0
    return float(spearmanr(severities, scores).statistic)


def correlations(scenes: list, seed: int) -> dict:
    """For each corruption type: severities, scores per modality and Spearman rho."""
    rng = np.random.default_rng(seed)
    table = {}
    for key, kind in tqdm(corruption_types(), desc="corruptions", unit="type"):
        if kind == "dead":  # half the scenes dead, half clean
            severities = rng.permutation(np.arange(len(scenes)) % 2).astype(float)
        else:
            severities = rng.uniform(0.0, 1.0, len(scenes))
        scores = {m: [] for m in MODALITIES}
        for i, (frames, severity) in enumerate(zip(scenes, severities, strict=True)):
            quality = measure(corrupt(frames, {key: (kind, float(severity))}, seed=i))
            for m in MODALITIES:
                scores[m].append(quality[m].score)
        rho = {m: rank_correlation(severities, scores[m]) for m in MODALITIES}
        table[f"{key}:{kind}"] = {
            "modality": key,
            "rho": rho,
            "severities": severities.tolist(),
            "scores": scores,
        }
    return table


def passes(name: str, entry: dict) -> bool:
    own = MODALITIES if entry["modality"] == "scene" else (entry["modality"],)
    return all(
        (entry["rho"][m] <= -TARGET_OWN) if m in own else (abs(entry["rho"][m]) < TARGET_OTHER)
        for m in MODALITIES
    )


def print_table(table: dict, n_scenes: int) -> None:
    print(f"\nSpearman rho(severity, quality score), {n_scenes} scenes")
    print(f"{'corruption':<22}" + "".join(f"{m:>9}" for m in MODALITIES) + "   target met")
    for name, entry in table.items():
        cells = "".join(f"{entry['rho'][m]:>9.3f}" for m in MODALITIES)
        print(f"{name:<22}{cells}   {'yes' if passes(name, entry) else 'NO'}")


DARK_CELL_RHO = 0.6  # |rho| past which the RdBu colour map is dark


def plot(table: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    cols = 4
    rows = int(np.ceil(len(names) / cols)) + 1
    fig = plt.figure(figsize=(4 * cols, 3.1 * rows))
    ax = fig.add_subplot(rows, 1, 1)
    rho = np.array([[table[n]["rho"][m] for m in MODALITIES] for n in names]).T
    ax.imshow(rho, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(len(MODALITIES)), MODALITIES)
    for (r, c), value in np.ndenumerate(rho):
        ink = "white" if abs(value) > DARK_CELL_RHO else "black"  # readable on dark cells
        ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7, color=ink)
    ax.set_title("Spearman rho between injected severity and measured quality")
    colours = dict(zip(MODALITIES, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, cols + i + 1)
        entry = table[name]
        for m in MODALITIES:
            ax.scatter(entry["severities"], entry["scores"][m], s=3, color=colours[m], label=m)
        ax.set_title(name, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("severity", fontsize=8)
        if i == 0:
            ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


PHOTO_SEVERITIES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def photo_fault(image: np.ndarray, kind: str, severity: float, rng) -> np.ndarray:
    """A real camera fault at a severity in [0, 1], on an RGB uint8 photo."""
    f = image.astype(np.float32)
    if kind == "jpeg":  # quality 95 at 0 down to 5 at 1
        return camera_jpeg(image, severity)
    if kind == "colour_cast":  # the blue channel down to 30 %
        return camera_colour_cast(image, severity, channel=2)
    if kind == "noise":  # white noise up to sigma 30 grey levels
        f += rng.normal(0.0, 30.0 * severity, f.shape)
    elif kind == "blur":  # defocus up to sigma 4 px
        if severity > 0:
            f = cv2.GaussianBlur(f, (0, 0), 4.0 * severity)
    elif kind == "low_light":  # exposure down 4 stops, with shot and 1 DN read noise
        gain = 2.0 ** (-4.0 * severity)
        f = rng.poisson(f * gain * 8.0) / 8.0 + rng.normal(0.0, 1.0, f.shape)
    elif kind == "haze":  # airlight up to 80 %
        f = f * (1.0 - 0.8 * severity) + 200.0 * 0.8 * severity
    elif kind == "lens_blob":  # a dark defocused blob over up to 40 % of the view, 1 DN noise
        h, w = f.shape[:2]
        mask = np.zeros((h, w), np.float32)
        radius = np.sqrt(0.4 * severity * h * w / np.pi)
        cv2.circle(mask, (w // 2, h // 2), int(radius), 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), 0.02 * w)[..., None]
        f = f * (1.0 - mask) + 8.0 * mask + rng.normal(0.0, 1.0, f.shape)
    return np.clip(np.round(f), 0, 255).astype(np.uint8)


PHOTO_FAULTS = ("jpeg", "colour_cast", "noise", "blur", "low_light", "haze", "lens_blob")


def real_photo_table(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    photos = real_photos()
    clean = {name: camera_quality(photo).score for name, photo in photos.items()}
    table = {}
    for kind in tqdm(PHOTO_FAULTS, desc="real photos", unit="kind"):
        rhos, rises = {}, {}
        for name, photo in photos.items():
            scores = [camera_quality(photo_fault(photo, kind, s, rng)).score
                      for s in PHOTO_SEVERITIES]  # fmt: skip
            rhos[name] = rank_correlation(np.array(PHOTO_SEVERITIES), scores)
            rises[name] = max(scores[1:]) - clean[name]
        values = np.array(list(rhos.values()))
        table[kind] = {"rho_per_photo": rhos, "rho_mean": float(np.nanmean(values)),
                       "rho_worst": float(np.nanmax(values)),
                       "rise_above_clean": float(max(rises.values()))}  # fmt: skip
    return {"clean": clean, "faults": table}


def print_photo_table(photos: dict) -> None:
    print("\nreal photographs (camera score): clean " + ", ".join(
        f"{name} {score:.2f}" for name, score in photos["clean"].items()))
    print(f"  {'fault':<12}{'rho mean':>9}{'rho worst':>10}{'above clean':>12}"
          "  target rho <= -0.8, never above clean")
    for kind, entry in photos["faults"].items():
        met = "yes" if entry["rho_worst"] <= -0.8 and entry["rise_above_clean"] <= 1e-6 else "no"
        print(f"  {kind:<12}{entry['rho_mean']:9.2f}{entry['rho_worst']:10.2f}"
              f"{max(entry['rise_above_clean'], 0.0):12.3f}  {met}")


def depth_fault(depth: np.ndarray, kind: str, severity: float, rng) -> np.ndarray:
    """A real depth-camera fault at a severity in [0, 1] on a depth image in metres."""
    if kind == "quantisation":  # steps up to 20 cm (about 6 % of the median 3.3 m)
        step = 0.2 * severity
        return depth.copy() if step == 0 else (np.round(depth / step) * step).astype(np.float32)
    if kind == "noise":  # range-proportional, sigma up to 5 %
        return (depth * (1 + rng.normal(0, 0.05 * severity, depth.shape))).astype(np.float32)
    if kind == "flying_pixels":
        return depth_flying_pixels(depth, severity, rng)
    if kind == "speckle":  # up to 30 % of the pixels lost at random
        return np.where(rng.random(depth.shape) < 0.3 * severity, np.nan, depth)
    return depth_band_loss(depth, severity, {"top_band": "top", "side_band": "left"}[kind])


DEPTH_FAULTS = ("quantisation", "noise", "flying_pixels", "speckle", "top_band", "side_band")


def real_depth_table(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    depth = middlebury_depth()
    clean = depth_quality(depth).score
    table = {}
    for kind in DEPTH_FAULTS:
        scores = [depth_quality(depth_fault(depth, kind, s, rng)).score for s in PHOTO_SEVERITIES]
        table[kind] = {"scores": scores,
                       "rho": rank_correlation(np.array(PHOTO_SEVERITIES), scores),
                       "above_clean": max(scores[1:]) > clean + 1e-6}  # fmt: skip
    return {"clean": clean, "faults": table}


def print_depth_table(depths: dict) -> None:
    print(f"\nreal depth (Middlebury motorcycle ground truth, depth score): clean "
          f"{depths['clean']:.2f}")
    print(f"  {'fault':<14}{'rho':>6}  scores at severity {PHOTO_SEVERITIES}  target rho <= -0.8")
    for kind, entry in depths["faults"].items():
        scores = " ".join(f"{s:.2f}" for s in entry["scores"])
        met = "yes" if entry["rho"] <= -0.8 and not entry["above_clean"] else "no"
        print(f"  {kind:<14}{entry['rho']:6.2f}  {scores}  {met}")


# sim/corruptions.py: a blind sector up to 180 degrees in a random direction, receiver gain up
# to 2^5, up to 30 % ghost returns below the road
LIDAR_FAULTS = REAL_WORLD_FAULTS["lidar"]
LIDAR_FAULT_SCENES = 20


def lidar_fault_table(scenes: list, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    scenes = scenes[:LIDAR_FAULT_SCENES]
    clean = [lidar_quality(f.points, f.lidar).score for f in scenes]
    table = {}
    for kind in LIDAR_FAULTS:
        rhos, worst_scores = [], []
        for frames in scenes:
            scores = [lidar_quality(corrupt_lidar(frames.points, kind, s, rng),
                                    frames.lidar).score for s in PHOTO_SEVERITIES]  # fmt: skip
            rhos.append(rank_correlation(np.array(PHOTO_SEVERITIES), scores))
            worst_scores.append(scores[-1])
        table[kind] = {"rho_mean": float(np.nanmean(rhos)), "rho_worst": float(np.nanmax(rhos)),
                       "score_at_1_mean": float(np.mean(worst_scores))}  # fmt: skip
    return {"scenes": len(scenes), "clean_min": float(min(clean)), "faults": table}


def print_lidar_fault_table(faults: dict) -> None:
    print(f"\nlidar faults on {faults['scenes']} world sweeps (lidar score): clean at least "
          f"{faults['clean_min']:.2f}")
    print(f"  {'fault':<12}{'rho mean':>9}{'rho worst':>10}{'score at 1':>11}  target rho <= -0.8")
    for kind, entry in faults["faults"].items():
        met = "yes" if entry["rho_worst"] <= -0.8 else "no"
        print(f"  {kind:<12}{entry['rho_mean']:9.2f}{entry['rho_worst']:10.2f}"
              f"{entry['score_at_1_mean']:11.2f}  {met}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=300, help="timing repetitions")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="also write the results as JSON (to FILE, or stdout when bare; "
                             "the table then goes to stderr)")
    parser.add_argument("--png", type=Path, default=Path("docs/quality_correlation.png"))
    args = parser.parse_args()

    json_out = sys.stdout
    if args.json == "-":  # keep stdout machine-readable: the table goes to stderr
        sys.stdout = sys.stderr
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    world = World(WorldConfig())
    results: dict = {"scenes": args.scenes, "seed": args.seed}
    if not args.skip_timing:
        timing = time_quality(world.render(args.seed), args.repeats)
        results["timing_ms"] = timing
        print("quality measure per frame set, one thread, 320x240 camera/depth, 32x1024 lidar")
        print(f"  {'':<8}{'cpu ms':>8}{'wall ms':>9}   (medians; target total <= 2 ms)")
        for name, ms in timing.items():
            print(f"  {name:<8}{ms['cpu_ms']:8.3f}{ms['wall_ms']:9.3f}")
    scenes = [
        world.render(args.seed * 100_000 + i)
        for i in tqdm(range(args.scenes), desc="rendering", unit="scene")
    ]
    table = correlations(scenes, args.seed)
    print_table(table, args.scenes)
    photos = real_photo_table(args.seed)
    print_photo_table(photos)
    results["real_photos"] = photos
    depths = real_depth_table(args.seed)
    print_depth_table(depths)
    results["real_depth"] = depths
    lidar_faults = lidar_fault_table(scenes, args.seed)
    print_lidar_fault_table(lidar_faults)
    results["lidar_faults"] = lidar_faults
    plot(table, args.png)
    print(f"plot: {args.png}")
    results["correlation"] = {
        name: {"rho": e["rho"], "target_met": passes(name, e)} for name, e in table.items()
    }
    if args.json == "-":
        json.dump(results, json_out, indent=2)
        json_out.write("\n")
    elif args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"json: {args.json}")
    return 0 if all(passes(n, e) for n, e in table.items()) else 1


if __name__ == "__main__":
    sys.exit(main())
