"""Evaluate a detector checkpoint: 3D mAP per class, corruption and severity, FLOPs and latency.

Renders a fixed set of test scenes (seeds from 2,000,000, never used in training), applies each
condition (clean, dead sensors, corruptions at severities, two at once), and scores the model
with nuScenes-style matching by BEV centre distance (0.5, 1, 2, 4 m): at one layer allocation
(--layers), or, given --methods/--budgets/--controller, as a budget sweep comparing allocation
methods (full, equal_split, random, oracle, controller, dynmm) at fractions of the
blocks' compute, with the blocks each gives each modality. The oracle tries every prefix
combination, (layers + 1)^3 per scene and condition (several seconds each on one core): it sets
the sweep's time. With --breakdown (one allocation) it also says why mAP is what it is: AP per
distance and visibility band, what class confusion costs, and the radial/lateral, yaw and size
errors of the true positives (lab/evaluation/breakdown.py), in the JSON, the text and a second PNG
<plot stem>_breakdown.png. The sweep table of docs/model.md:

  adaptive-fusion evaluate --methods full,equal_split,random,oracle,controller,dynmm
      --budgets 0.125,0.25,0.5,0.75,1 --conditions clean,single,mixed,dead --severities 1
      --controller runs/controller/best --plot runs/sweep.png --json > runs/sweep.json
"""

import argparse
import json


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint (.safetensors or .json); default: shipped")
    parser.add_argument("--architecture",
                        help="architecture JSON of the subnet to evaluate (adaptive-fusion "
                             "search); --layers then counts its blocks; default: the full model")
    parser.add_argument("--frames", type=int, default=100, help="number of test scenes")
    parser.add_argument("--first-seed", type=int, help="first test scene seed (default 2000000)")
    parser.add_argument("--layers",
                        help="allocation: 'camera=2,depth=4,lidar=6' (0 = modality off) or a "
                             "fraction of every modality's blocks, e.g. 0.25 (default 1.0)")
    parser.add_argument("--conditions", default="clean,dead",
                        help="comma list of clean, dead, single (every one-sensor corruption), "
                             "all (single + scene fog), mixed (camera:low_light+lidar:dropout), "
                             "modality:kind, scene:fog, or kinds joined by '+'")
    parser.add_argument("--severities", default="0.5,1.0", help="severities for corruptions")
    parser.add_argument("--latency-runs", type=_at_least_one, default=50,
                        help="timed forward passes (at least 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (latency)")
    parser.add_argument("--methods",
                        help="budget sweep: comma list of full, equal_split, random, oracle, "
                             "controller, dynmm (default: all but controller and dynmm, plus the "
                             "controller with --controller, the gate with --gate)")
    parser.add_argument("--budgets",
                        help="budget sweep: fractions of the blocks' cost "
                             "(default 0.125,0.25,0.5,0.75,1)")
    parser.add_argument("--controller", help="budget sweep: controller checkpoint to compare")
    parser.add_argument("--gate", help="budget sweep: DynMM gate checkpoint for method dynmm "
                                       "(default: the packaged gate)")
    parser.add_argument("--costs",
                        help="budget sweep: cost table JSON from `adaptive-fusion profile` (ms); "
                             "default: the model's FLOPs per block")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random allocator")
    parser.add_argument("--plot", help="write a PNG here: mAP per condition (or, in a sweep, mAP "
                                       "against budget per condition and blocks per modality)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--protocol", choices=("all", "nuscenes"), default="all",
                        help="which boxes count: 'all' objects in the camera's view within "
                             "max_depth (default), or 'nuscenes': also drop ground truth without "
                             "a lidar return and boxes past nuScenes' class ranges (single "
                             "allocation only; the table adds nuScenes' own AP definition)")
    parser.add_argument("--breakdown", nargs="?", const="clean", metavar="CONDITIONS",
                        help="one allocation: break the score down (AP by distance and "
                             "visibility band, class confusion, localisation errors) for these "
                             "evaluated conditions, comma separated, or 'all' (default: clean); "
                             "with --plot also writes <plot stem>_breakdown[_condition].png")
    parser.add_argument("--distance-bands", default="0,10,20,30",
                        help="breakdown: BEV distance band edges in metres (last band open)")
    parser.add_argument("--visibility-bands", default="0,0.1,0.5,0.8",
                        help="breakdown: visibility band edges (last band up to 1)")
    parser.add_argument("--bag", help="score a rosbag2's recorded detections against its "
                        "recorded ground truth instead (adaptive-fusion record), paired by stamp")
    parser.add_argument("--detections-topic", default="/detections", help="with --bag")
    parser.add_argument("--truth-topic", default="/ground_truth", help="with --bag")


def run(args: argparse.Namespace) -> int:
    if args.bag:
        return run_bag(args)
    import torch

    from adaptive_fusion.model.architecture import Architecture
    from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, CheckpointError, load_checkpoint

    torch.set_num_threads(args.threads)
    sweep = any(value is not None for value in (args.methods, args.budgets, args.controller,
                                                 args.gate))
    try:
        if sweep and args.layers is not None:
            raise ValueError("--layers sets one allocation; a sweep (--methods, --budgets, "
                             "--controller, --gate) lets each method choose its own")
        if not sweep and args.costs is not None:
            raise ValueError("--costs prices the budgets of a sweep: add --methods or --budgets")
        if sweep and args.breakdown is not None:
            raise ValueError("--breakdown explains one allocation's score: drop --methods, "
                             "--budgets, --controller and --gate")
        if sweep and args.architecture is not None:
            raise ValueError("--architecture evaluates one subnet: a sweep compares the full "
                             "model's allocations; drop --methods, --budgets, --controller and "
                             "--gate")
        if sweep and args.protocol != "all":
            raise ValueError("--protocol nuscenes scores one allocation: drop --methods, "
                             "--budgets, --controller and --gate")
        if args.frames < 1:
            raise ValueError("--frames must be at least 1")
        model, _ = load_checkpoint(args.model or DEFAULT_MODEL)
        if args.architecture is not None:
            model.use_architecture(Architecture.load(args.architecture, model.config))
    except (CheckpointError, ValueError) as error:
        print(f"error: {error}")
        return 2
    return (run_sweep_command if sweep else run_single)(args, model)


def run_bag(args: argparse.Namespace) -> int:
    from adaptive_fusion.core.frames import CLASSES
    from adaptive_fusion.lab.evaluation.recorded import score_bag
    from adaptive_fusion.ros.bags import BagError

    try:
        score = score_bag(args.bag, CLASSES, args.detections_topic, args.truth_topic)
    except BagError as error:
        print(f"error: {error}")
        return 2
    report = {"bag": args.bag, "frames": score.frames, "unpaired_detections": score.unpaired,
              **score.metrics.to_dict()}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        aps = ", ".join(f"{c} {'-' if a is None else f'{a:.3f}'}"
                        for c, a in report["AP_per_class"].items())  # fmt: skip
        print(f"{args.bag}: {score.frames} detection messages paired with ground truth "
              f"({score.unpaired} without); mAP {report['mAP'] or 0:.3f} ({aps})")
    return 0


def _test_scenes(args: argparse.Namespace):
    from adaptive_fusion.lab.evaluation.report import TEST_FIRST_SEED, render_test_set

    first_seed = TEST_FIRST_SEED if args.first_seed is None else args.first_seed
    return render_test_set(args.frames, first_seed, show_progress=not args.json)


def _conditions(args: argparse.Namespace):
    from adaptive_fusion.lab.evaluation.report import parse_conditions

    return parse_conditions(args.conditions, [float(s) for s in args.severities.split(",")])


def run_single(args: argparse.Namespace, model) -> int:
    from adaptive_fusion.lab.evaluation.breakdown import Bands
    from adaptive_fusion.lab.evaluation.protocol import check_protocol
    from adaptive_fusion.lab.evaluation.report import evaluate_conditions
    from adaptive_fusion.model.allocation import AllocationError, parse_allocation
    from adaptive_fusion.model.checkpoint import DEFAULT_MODEL

    config = model.config
    try:
        check_protocol(args.protocol, config.classes)
        allocation = parse_allocation(args.layers or "1.0", config.modalities, model.depths)
        conditions = _conditions(args)
        explained = _breakdown_conditions(args.breakdown, [c.name for c in conditions])
        distance = Bands.parse(args.distance_bands, " m")
        visibility = Bands.parse(args.visibility_bands)
    except (AllocationError, ValueError) as error:
        print(f"error: {error}")
        return 2
    frame_sets = _test_scenes(args)
    report = evaluate_conditions(model, frame_sets, conditions, allocation,
                                 latency_runs=args.latency_runs, show_progress=not args.json,
                                 breakdown_for=explained, distance=distance,
                                 visibility=visibility, protocol=args.protocol)
    report["model"] = str(args.model or DEFAULT_MODEL)
    report["architecture"] = model.architecture.to_dict()
    if args.plot and explained:
        report["breakdown_plots"] = _breakdown_plot_paths(args.plot, explained)
    return _output(args, report, lambda r, path: _plot_single(r, path, config),
                   lambda: _single_summary(report, config, args))


def _breakdown_conditions(text: str | None, evaluated: list[str]) -> list[str]:
    """The condition names --breakdown asks for, checked against those evaluated."""
    if text is None:
        return []
    names = evaluated if text.strip() == "all" else [n.strip() for n in text.split(",")
                                                     if n.strip()]
    unknown = [n for n in names if n not in evaluated]
    if unknown or not names:
        raise ValueError(f"--breakdown: {', '.join(unknown) or 'nothing'} is not among the "
                         f"evaluated conditions ({', '.join(evaluated)})")
    return list(dict.fromkeys(names))


def _breakdown_plot_paths(plot: str, conditions: list[str]) -> dict[str, str]:
    """<stem>_breakdown.png for one condition, <stem>_breakdown_<condition>.png for several."""
    import re
    from pathlib import Path

    path = Path(plot)
    if len(conditions) == 1:
        return {conditions[0]: str(path.with_name(f"{path.stem}_breakdown.png"))}
    safe = {name: re.sub(r"[^\w.@-]+", "_", name) for name in conditions}  # ':' and '+' out
    return {name: str(path.with_name(f"{path.stem}_breakdown_{safe[name]}.png"))
            for name in conditions}


def _plot_single(report: dict, path: str, config) -> None:
    from pathlib import Path

    from adaptive_fusion.lab.evaluation.breakdown import plot_breakdown
    from adaptive_fusion.lab.evaluation.report import plot_report

    plot_report(report, path)
    for name, breakdown_path in report.get("breakdown_plots", {}).items():
        metrics = report["conditions"][name]
        plot_breakdown(metrics["breakdown"], config.classes, breakdown_path,
                       title=f"why mAP is {metrics['mAP'] or 0:.3f}: condition {name}, "
                             f"{report['frames']} scenes, model {Path(report['model']).name}")


def _single_summary(report: dict, config, args: argparse.Namespace) -> str:
    from adaptive_fusion.lab.evaluation.breakdown import format_breakdown

    lines = [
        f"model {report['model']}, {report['frames']} scenes, layers {report['allocation']}, "
        f"protocol {report['protocol']}",
        f"FLOPs {report['flops'] / 1e9:.3f} G ({100 * report['flops_fraction_of_full']:.0f}% "
        f"of full); latency median {report['latency']['median_ms']:.1f} ms, "
        f"p95 {report['latency']['p95_ms']:.1f} ms ({args.threads} threads)",
    ]
    classes = list(config.classes)
    nuscenes = report["protocol"] == "nuscenes"
    if nuscenes:  # the number papers report: nuScenes' AP, above 10% recall and precision
        lines.append("mAP: the package's all-point AP; nuScenes mAP: nuScenes' own AP definition "
                     "on the same matches (compare this one with papers)")
    lines.append(f"{'condition':<28}{'mAP':>7}" + (f"{'nuScenes mAP':>14}" if nuscenes else "")
                 + "".join(f"{c:>12}" for c in classes))  # fmt: skip
    for name, metrics in report["conditions"].items():
        aps = [metrics["AP_per_class"][c] for c in classes]
        cells = "".join(f"{'-' if a is None else f'{a:.3f}':>12}" for a in aps)
        official = f"{metrics['nuscenes_official_mAP'] or 0:>14.3f}" if nuscenes else ""
        lines.append(f"{name:<28}{metrics['mAP'] or 0:>7.3f}{official}{cells}")
    for name, metrics in report["conditions"].items():
        if "breakdown" in metrics:
            lines += ["", f"== breakdown of {name}",
                      format_breakdown(metrics["breakdown"], classes)]
    for name, path in report.get("breakdown_plots", {}).items():
        lines.append(f"breakdown plot of {name} written to {path}")
    return "\n".join(lines)


def _output(args: argparse.Namespace, report: dict, plot, summary) -> int:
    """The plot (if asked), then the report as JSON or as the text `summary()` gives."""
    if args.plot:
        plot(report, args.plot)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(summary())
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0


def run_sweep_command(args: argparse.Namespace, model) -> int:
    from adaptive_fusion.core.errors import BudgetError, check_fraction
    from adaptive_fusion.lab.evaluation.allocators import BASELINES, PrefixOracle
    from adaptive_fusion.lab.evaluation.sweep import (
        DEFAULT_BUDGETS,
        build_methods,
        check_methods,
        check_table,
        format_sweep,
        plot_sweep_and_tradeoff,
        run_sweep,
    )
    from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, CheckpointError
    from adaptive_fusion.policies.costs import CostTable, CostTableError, flop_cost_table

    default_methods = [*BASELINES, PrefixOracle.name]
    default_methods += ["controller"] if args.controller else []
    default_methods += ["dynmm"] if args.gate else []
    try:
        names = (args.methods.split(",") if args.methods else default_methods)
        names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
        budgets = ([check_fraction(float(b)) for b in args.budgets.split(",") if b.strip()]
                   if args.budgets else list(DEFAULT_BUDGETS))
        conditions = _conditions(args)
        check_methods(names, args.controller)
        flop_table = flop_cost_table(model)
        table = CostTable.load(args.costs) if args.costs else flop_table
        check_table(table, model)
        methods = build_methods(names, model, table, args.controller, args.seed, args.gate)
    except (CheckpointError, CostTableError, BudgetError, ValueError) as error:
        print(f"error: {error}")
        return 2
    frame_sets = _test_scenes(args)
    # progress goes to stderr, so it shows even when stdout carries the JSON of a long sweep
    report = run_sweep(model, frame_sets, conditions, methods, budgets, table, flop_table,
                       show_progress=True)
    report["model"] = str(args.model or DEFAULT_MODEL)
    report["architecture"] = model.architecture.to_dict()
    report["controller"] = args.controller
    report["gate"] = args.gate
    return _output(args, report, plot_sweep_and_tradeoff,
                   lambda: f"model {report['model']}\n{format_sweep(report)}")
