"""Entry point of `adaptive-fusion`: one subcommand per module in this package.

Each subcommand module (named like the command, "-" as "_") defines `add_arguments(parser)` and
`run(args) -> int`; its docstring's first line is the command's help. Heavy imports (torch,
rclpy) belong inside `run`, so that `adaptive-fusion --help` stays fast.
"""

import argparse
import importlib
import sys

COMMANDS = (
    "generate",
    "train",
    "evaluate",
    "profile",
    "preview",
    "doctor",
    "demo",
    "train-controller",
    "train-gate",
    "train-supernet",
    "search",
    "record",
    "replay",
    "nuscenes",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptive-fusion",
        description="Adaptive-depth camera + depth + lidar fusion, outside ROS.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"adaptive_fusion.cli.{name.replace('-', '_')}")
        summary = (module.__doc__ or "").strip().splitlines()[0]
        sub = subparsers.add_parser(name, help=summary, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
