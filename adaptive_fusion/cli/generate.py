"""Render synthetic camera + depth + lidar scenes with ground truth into a KITTI-layout dataset.

Writes <out>/{image_2,depth_2,velodyne,calib,label_2}/<id>.* and <out>/meta.json (lidar beam
pattern, generator settings, the corruption applied to each frame). Scene i is reproducible from
--seed alone. Corruptions: --corruption-mix F gives a share F of the frames one random corruption
(any modality, kind and severity, or scene fog); --corrupt MODALITY:KIND:SEVERITY (repeatable)
applies a fixed one to every frame.
"""

import argparse
import json


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"camera size {text!r} is too small (min 16x16)")
    return width, height


def _corruption(text: str) -> tuple[str, str, float]:
    parts = text.split(":")
    try:
        modality, kind, severity = parts[0], parts[1], float(parts[2])
    except (IndexError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected MODALITY:KIND:SEVERITY (e.g. camera:noise:0.5), got {text!r}"
        ) from None
    if len(parts) != 3 or not 0.0 <= severity <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: severity must be in [0, 1]")
    return modality, kind, severity


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--scenes", type=int, default=100, help="number of frame sets")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument(
        "--camera-size", type=_size, default=(320, 240), metavar="WxH", help="camera image size"
    )
    parser.add_argument("--beams", type=int, default=32, help="lidar beams")
    parser.add_argument(
        "--corruption-mix",
        type=float,
        default=0.0,
        metavar="F",
        help="share of frames given one random corruption, in [0, 1]",
    )
    parser.add_argument(
        "--corrupt",
        type=_corruption,
        action="append",
        default=[],
        metavar="MODALITY:KIND:SEVERITY",
        help="corrupt every frame (repeatable)",
    )
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from adaptive_fusion.sim.config import WorldConfig
    from adaptive_fusion.sim.generate import generate_dataset

    if args.scenes < 0 or args.beams < 1 or args.workers < 1:
        print("error: --scenes must be >= 0, --beams and --workers >= 1")
        return 2
    if not 0.0 <= args.corruption_mix <= 1.0:
        print(f"error: --corruption-mix {args.corruption_mix} is not in [0, 1]")
        return 2
    fixed: dict = {}
    if args.corrupt or args.corruption_mix > 0:
        try:
            from adaptive_fusion.core.frames import CORRUPTIONS
        except ImportError as error:
            print(f"error: corruptions are not available ({error})")
            return 2
        for modality, kind, severity in args.corrupt:
            if kind not in CORRUPTIONS.get(modality, ()):
                print(f"error: unknown corruption {modality}:{kind}; known: {CORRUPTIONS}")
                return 2
            fixed.setdefault(modality, []).append((kind, severity))
    width, height = args.camera_size
    config = WorldConfig(camera_width=width, camera_height=height, lidar_beams=args.beams)
    start = time.perf_counter()
    summary = generate_dataset(
        args.out,
        args.scenes,
        seed=args.seed,
        config=config,
        corruption_mix=args.corruption_mix,
        corruption=fixed,
        workers=args.workers,
        progress=lambda it: tqdm(it, total=args.scenes, desc="generate", unit="scene"),
    )
    seconds = time.perf_counter() - start
    summary["seconds"] = round(seconds, 2)
    summary["scenes_per_second"] = round(args.scenes / max(seconds, 1e-9), 1)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        objects = ", ".join(f"{n} {name}" for name, n in summary["objects"].items())
        print(
            f"wrote {args.scenes} frame sets to {args.out} ({objects}; "
            f"{summary['corrupted_frames']} corrupted) in {seconds:.1f} s"
        )
    return 0
