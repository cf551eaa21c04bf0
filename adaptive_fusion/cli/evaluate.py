"""Evaluate a detector checkpoint: 3D mAP per class, corruption and severity, FLOPs and latency.

Renders a fixed set of test scenes (seeds from 2,000,000, never used in training), applies each
condition (clean, dead sensors, corruptions at severities), and scores the model at one layer
allocation with nuScenes-style matching by BEV centre distance (0.5, 1, 2, 4 m).
"""

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint (.safetensors or .json); default: shipped")
    parser.add_argument("--frames", type=int, default=100, help="number of test scenes")
    parser.add_argument("--first-seed", type=int, help="first test scene seed (default 2000000)")
    parser.add_argument("--layers", default="1.0",
                        help="allocation: 'camera=2,depth=4,lidar=6' (0 = modality off) or a "
                             "fraction of every modality's blocks, e.g. 0.25 (default 1.0)")
    parser.add_argument("--conditions", default="clean,dead",
                        help="comma list of clean, dead, all, modality:kind, scene:fog")
    parser.add_argument("--severities", default="0.5,1.0", help="severities for corruptions")
    parser.add_argument("--latency-runs", type=int, default=50, help="timed forward passes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (latency)")
    parser.add_argument("--plot", help="write a PNG bar chart of mAP per condition here")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    import torch

    from adaptive_fusion.evaluation.report import (
        TEST_FIRST_SEED,
        evaluate_conditions,
        parse_conditions,
        plot_report,
        render_test_set,
    )
    from adaptive_fusion.model.allocation import AllocationError, parse_allocation
    from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, CheckpointError, load_checkpoint

    torch.set_num_threads(args.threads)
    try:
        model, _ = load_checkpoint(args.model or DEFAULT_MODEL)
        config = model.config
        allocation = parse_allocation(args.layers, config.modalities, config.layers)
        severities = [float(s) for s in args.severities.split(",")]
        conditions = parse_conditions(args.conditions, severities)
    except (CheckpointError, AllocationError, ValueError) as error:
        print(f"error: {error}")
        return 2
    if args.frames < 1:
        print("error: --frames must be at least 1")
        return 2
    first_seed = TEST_FIRST_SEED if args.first_seed is None else args.first_seed
    frame_sets = render_test_set(args.frames, first_seed, show_progress=not args.json)
    report = evaluate_conditions(model, frame_sets, conditions, allocation,
                                 latency_runs=args.latency_runs, show_progress=not args.json)
    report["model"] = str(args.model or DEFAULT_MODEL)
    if args.plot:
        plot_report(report, args.plot)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model {report['model']}, {report['frames']} scenes, layers {report['allocation']}")
    print(f"FLOPs {report['flops'] / 1e9:.3f} G ({100 * report['flops_fraction_of_full']:.0f}% "
          f"of full); latency median {report['latency']['median_ms']:.1f} ms, "
          f"p95 {report['latency']['p95_ms']:.1f} ms ({args.threads} threads)")
    classes = list(config.classes)
    print(f"{'condition':<28}{'mAP':>7}" + "".join(f"{c:>12}" for c in classes))
    for name, metrics in report["conditions"].items():
        aps = [metrics["AP_per_class"][c] for c in classes]
        cells = "".join(f"{'-' if a is None else f'{a:.3f}':>12}" for a in aps)
        print(f"{name:<28}{metrics['mAP'] or 0:>7.3f}{cells}")
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0
