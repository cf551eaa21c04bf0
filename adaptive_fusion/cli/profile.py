"""Measure what every block of every modality costs on this machine and write the cost table.

Times each block at batch size 1 (median over --runs rounds, every block and a full frame once
per round) and the fixed rest of a frame (stems, fusion, head, decode), with --threads torch
threads. The JSON table (default runs/costs.json) lets budgets be given in milliseconds and
fills them with the slots worth most per millisecond: `adaptive-fusion evaluate --costs FILE`,
controller.costs.CostTable.load(FILE). Re-run it whenever the machine or its load changes.

With --units, for the architecture search (`adaptive-fusion search --costs FILE`): every elastic
unit of the model's search space instead (each block at each MLP width, heads and token grid,
each stem, the fusion operators, the head, decoding, input preparation and quality), timed inside
the pipeline's frames of subnets that together run every unit, --runs rounds over --scenes
validation scenes, median and p90, and energy from RAPL where the host exposes it (default
runs/unit_costs.json); then --check N random subnets' end-to-end pipeline latency, predicted as
the sum of their units against measured, and the median absolute relative error.
"""

import argparse
import json

DEFAULT_OUT = "runs/costs.json"
DEFAULT_UNITS_OUT = "runs/unit_costs.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint (.safetensors or .json); default: shipped")
    parser.add_argument("--runs", type=int, default=50, help="timed rounds (median taken)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads while timing")
    parser.add_argument("--out", help=f"cost table JSON (default {DEFAULT_OUT}, with --units "
                                      f"{DEFAULT_UNITS_OUT})")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.add_argument("--units", action="store_true",
                        help="time every elastic unit of the search space (for `search`)")
    parser.add_argument("--check", type=int, default=20, metavar="N",
                        help="with --units: predict and measure N random subnets end to end "
                             "(default 20; 0 = no check)")
    parser.add_argument("--check-rounds", type=int, default=5,
                        help="with --units: timed rounds over the scenes per checked subnet")
    parser.add_argument("--scenes", type=int, default=2,
                        help="with --units: validation scenes the profile and the check run on")


def format_table(table) -> str:
    """ms per block per modality, their sum, the fixed part and a full frame."""
    layers = max(len(costs) for costs in table.block.values())
    lines = [f"{'modality':<10}" + "".join(f"{f'block {i}':>9}" for i in range(layers))
             + f"{'sum':>9}"]
    for name, costs in table.block.items():
        lines.append(f"{name:<10}" + "".join(f"{c:>9.3f}" for c in costs) + f"{sum(costs):>9.3f}")
    lines.append(f"fixed (stems, fusion, head, decode) {table.fixed:.3f} {table.unit}")
    lines.append(f"full frame {table.fixed + table.block_total():.3f} {table.unit} "
                 f"(blocks {table.block_total():.3f})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, CheckpointError, load_checkpoint
    from adaptive_fusion.policies.costs import measure_cost_table

    if args.runs < 1 or args.threads < 1:
        print("error: --runs and --threads must be at least 1")
        return 2
    if args.units and (args.check < 0 or args.check_rounds < 1 or args.scenes < 1):
        print("error: --check must be at least 0, --check-rounds and --scenes at least 1")
        return 2
    try:
        model, _ = load_checkpoint(args.model or DEFAULT_MODEL)
    except CheckpointError as error:
        print(f"error: {error}")
        return 2
    if args.units:
        return run_units(args, model)
    table = measure_cost_table(model, runs=args.runs, threads=args.threads,
                               progress=not args.json)
    path = table.save(args.out or DEFAULT_OUT)
    if args.json:
        print(json.dumps(table.to_dict(), indent=2))
        return 0
    print(f"model {args.model or DEFAULT_MODEL}, {args.threads} threads, median of {args.runs}")
    print(format_table(table))
    print(f"cost table written to {path}")
    return 0


def run_units(args: argparse.Namespace, model) -> int:
    from adaptive_fusion.lab.search.costs import check_additive, measure_unit_costs
    from adaptive_fusion.lab.search.nsga import VALIDATION_FIRST_SEED, as_sensor_frame
    from adaptive_fusion.sim.world import World

    world = World()
    frames = [as_sensor_frame(world.render(VALIDATION_FIRST_SEED + i)) for i in range(args.scenes)]
    costs = measure_unit_costs(model, frames, runs=args.runs, threads=args.threads,
                               progress=not args.json)
    path = costs.save(args.out or DEFAULT_UNITS_OUT)
    check = (check_additive(model, costs, frames, args.check, args.check_rounds)
             if args.check else None)
    if args.json:
        print(json.dumps({"costs": costs.to_dict(), "check": check}, indent=2))
        return 0
    print(f"model {args.model or 'shipped'}, {args.threads} threads, {args.runs} runs per unit")
    print(f"{'unit':<28}{'median ms':>10}{'p90 ms':>9}")
    for unit, cost in costs.latency_ms.items():
        print(f"{unit:<28}{cost['median']:>10.3f}{cost['p90']:>9.3f}")
    print(f"energy: {costs.energy_note}")
    print(f"unit costs written to {path}")
    if check:
        errors = [row["relative_error"] for row in check["subnets"]]
        print(f"additive model on {len(errors)} random subnets (predicted / measured - 1): "
              f"median |error| {100 * check['median_absolute_relative_error']:.1f}%, "
              f"range {100 * min(errors):+.1f}% .. {100 * max(errors):+.1f}%")
    return 0
