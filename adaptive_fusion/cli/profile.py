"""Measure what every block of every modality costs on this machine and write the cost table.

Times each block at batch size 1 (median over --runs rounds, every block and a full frame once
per round) and the fixed rest of a frame (stems, fusion, head, decode), with --threads torch
threads. The JSON table (default runs/costs.json) lets budgets be given in milliseconds and
fills them with the slots worth most per millisecond: `adaptive-fusion evaluate --costs FILE`,
controller.costs.CostTable.load(FILE). Re-run it whenever the machine or its load changes.
"""

import argparse
import json

DEFAULT_OUT = "runs/costs.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint (.safetensors or .json); default: shipped")
    parser.add_argument("--runs", type=int, default=50, help="timed rounds (median taken)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads while timing")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"cost table JSON (default {DEFAULT_OUT})")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")


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
    try:
        model, _ = load_checkpoint(args.model or DEFAULT_MODEL)
    except CheckpointError as error:
        print(f"error: {error}")
        return 2
    table = measure_cost_table(model, runs=args.runs, threads=args.threads,
                               progress=not args.json)
    path = table.save(args.out)
    if args.json:
        print(json.dumps(table.to_dict(), indent=2))
        return 0
    print(f"model {args.model or DEFAULT_MODEL}, {args.threads} threads, median of {args.runs}")
    print(format_table(table))
    print(f"cost table written to {path}")
    return 0
