"""nuScenes: score the detector on a nuScenes-layout dataroot with the devkit, or write the world.

  adaptive-fusion nuscenes evaluate DATAROOT [--version v1.0-mini] [--split mini_val]
      runs the model (all blocks) on CAM_FRONT + LIDAR_TOP of every sample of the split, writes
      OUT/submission.json (nuScenes' detection results format) and prints nuscenes-devkit's mAP
      and NDS (DetectionEval, detection_cvpr_2019 narrowed to car, pedestrian, bicycle) beside
      the package's own mAP on the same detections.
  adaptive-fusion nuscenes export-world DATAROOT [--scenes 50] [--train-scenes N --val-scenes M]
      renders the world's test scenes and writes them as a nuScenes dataroot (version
      v1.0-world, custom split world_test) that `evaluate` reads like nuScenes itself; with
      --train-scenes / --val-scenes also training and validation scenes (splits world_train,
      world_val) that `adaptive-fusion train` reads like nuScenes' (data.nuscenes).

The numbers of docs/model.md:

  adaptive-fusion nuscenes export-world runs/nuscenes-world --scenes 50
  adaptive-fusion nuscenes evaluate runs/nuscenes-world --version v1.0-world --split world_test
"""

import argparse
import json

WORLD_VERSION = "v1.0-world"
WORLD_SPLIT = "world_test"
# Training and validation splits of the export, from the seeds the trainers use for each (0..
# and 1e6..; lab/training/config.py), so that they never share a scene with world_test.
WORLD_SPLIT_SEEDS = {"world_train": 0, "world_val": 1_000_000}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    evaluate = actions.add_parser("evaluate", help="score the model on a nuScenes dataroot with "
                                                   "the devkit's DetectionEval")
    evaluate.add_argument("dataroot", help="nuScenes dataroot (holds samples/ and <version>/)")
    evaluate.add_argument("--version", default="v1.0-mini", help="table folder (default "
                                                                 "v1.0-mini)")
    evaluate.add_argument("--split", default="mini_val",
                          help="nuScenes split (mini_val, val, ...) or one of "
                               "<dataroot>/<version>/splits.json (default mini_val)")
    evaluate.add_argument("--depth", choices=("absent", "lidar"), default="absent",
                          help="the depth camera nuScenes lacks: left out (default), or the "
                               "lidar returns projected into the camera")
    evaluate.add_argument("--model", help="checkpoint (.safetensors or .json); default: shipped")
    evaluate.add_argument("--out", default="runs/nuscenes",
                          help="folder for submission.json (default runs/nuscenes)")
    evaluate.add_argument("--threads", type=int, default=2, help="torch threads")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    export = actions.add_parser("export-world", help="write the world's test scenes as a "
                                                     "nuScenes dataroot")
    export.add_argument("dataroot", help="folder to write")
    export.add_argument("--scenes", type=int, default=50, help="number of test scenes (50)")
    export.add_argument("--first-seed", type=int, help="first scene seed (default: the test "
                                                        "scenes', 2000000)")
    export.add_argument("--train-scenes", type=int, default=0,
                        help="also write this many training scenes as split world_train (0)")
    export.add_argument("--val-scenes", type=int, default=0,
                        help="also write this many validation scenes as split world_val (0)")


def run(args: argparse.Namespace) -> int:
    return run_evaluate(args) if args.action == "evaluate" else run_export(args)


def run_export(args: argparse.Namespace) -> int:
    from adaptive_fusion.lab.evaluation.report import TEST_FIRST_SEED, render_test_set
    from adaptive_fusion.lab.nuscenes.world_export import export_world
    from adaptive_fusion.sim.config import WorldConfig

    counts = {WORLD_SPLIT: args.scenes, "world_train": args.train_scenes,
              "world_val": args.val_scenes}
    if args.scenes < 1 or min(counts.values()) < 0:
        print("error: --scenes must be at least 1, --train-scenes and --val-scenes at least 0")
        return 2
    first = {WORLD_SPLIT: TEST_FIRST_SEED if args.first_seed is None else args.first_seed,
             **WORLD_SPLIT_SEEDS}
    world = WorldConfig()
    splits = {split: list(zip(range(first[split], first[split] + count),
                              render_test_set(count, first[split], world, show_progress=True),
                              strict=True))
              for split, count in counts.items() if count}
    export_world(args.dataroot, WORLD_VERSION, splits, world.lidar_height)
    written = ", ".join(f"{split} ({len(scenes)} scenes)" for split, scenes in splits.items())
    print(f"{args.dataroot}: nuScenes version {WORLD_VERSION}, splits {written}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from adaptive_fusion.lab.nuscenes.reader import NuScenesFrames, open_nuscenes
    from adaptive_fusion.lab.nuscenes.scoring import score_split
    from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, CheckpointError, load_checkpoint

    torch.set_num_threads(args.threads)
    try:
        model, _ = load_checkpoint(args.model or DEFAULT_MODEL)
        frames = NuScenesFrames(open_nuscenes(args.dataroot, args.version), args.split,
                                args.depth)
    except (CheckpointError, ValueError, KeyError) as error:
        print(f"error: {error}")
        return 2
    report = score_split(model, frames, args.out, show_progress=not args.json)
    report["model"] = str(args.model or DEFAULT_MODEL)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    devkit, package = report["devkit"], report["package"]
    official = report["package_nuscenes_protocol"]["nuscenes_official_mAP"]
    errors = ", ".join(f"{name} {value:.3f}" for name, value in devkit["tp_errors"].items())
    aps = ", ".join(f"{name} {ap:.3f}" for name, ap in devkit["AP_per_class"].items())
    print(f"{args.dataroot} ({args.version}, split {args.split}): {report['samples']} samples, "
          f"depth {args.depth}, {report['detections']} detections -> {report['submission']}\n"
          f"nuscenes-devkit: mAP {devkit['mAP']:.3f}, NDS {devkit['NDS']:.3f} ({aps})\n"
          f"  TP errors: {errors}\n"
          f"package: mAP {package['mAP'] or 0:.3f} (its own protocol); nuScenes protocol with "
          f"nuScenes' AP {official or 0:.3f}")
    return 0
