"""Run the simulated sensors and the fusion node through a scenario, with a live table and a plot.

Starts `sim_sensors` (with the scenario file: clean -> camera fog -> budget cut -> lidar dies ->
recovery -> a latency budget -> another process takes a core, by default) and `fusion_node` as
two processes over DDS, listens to /diagnostics, detections and ground truth, prints one row a
second (budget, layers and quality per modality, latency, mAP over the last frames against
ground truth), and writes a PNG timeline at the end.
"""

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARE_CONFIG = ROOT / "config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint (.safetensors or .json); default: shipped")
    parser.add_argument(
        "--scenario",
        default=str(SHARE_CONFIG / "scenarios" / "demo.yaml"),
        help="sim_sensors scenario file (default: config/scenarios/demo.yaml)",
    )
    # Every block by default, unlike fusion_node: the demo shows the allocation moving over
    # all 24 blocks as the budget, the deadline and the load change.
    parser.add_argument("--architecture", default="full",
                        help="fusion_node's architecture: 'full' (default), '' for the node's "
                             "default subnet, or an architecture file")
    parser.add_argument("--duration", type=float, default=47.0, help="seconds to run")
    parser.add_argument("--params", default=str(SHARE_CONFIG / "fusion_node.yaml"),
                        help="fusion_node params file")  # fmt: skip
    parser.add_argument("--rig", default=str(SHARE_CONFIG / "sim_rig.yaml"),
                        help="fusion_node params file with the simulated rig, passed after "
                             "--params")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads of fusion_node")
    parser.add_argument("--policy",
                        choices=("controller", "dynmm", "quality_weighted", "equal_split"),
                        help="fusion_node's layer allocation policy (default: the params "
                             "file's); 'controller' and 'dynmm' need a network trained for "
                             "the model")
    parser.add_argument("--plot", default="runs/demo/timeline.png", help="PNG timeline path")
    parser.add_argument("--record", metavar="BAG",
                        help="also record the run's topics (inputs, outputs, ground truth) to "
                             "this rosbag2 folder, in MCAP (as `adaptive-fusion record`)")
    parser.add_argument("--foxglove", metavar="PORT", type=int, nargs="?", const=8765,
                        help="also serve the Foxglove live view on ws://127.0.0.1:PORT "
                             "(default 8765; open it with config/foxglove_layout.json)")
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON")


def run(args: argparse.Namespace) -> int:
    from adaptive_fusion.lab.demo_session import DemoSession, summarise
    from adaptive_fusion.lab.timeline import plot_timeline
    from adaptive_fusion.ros import transport

    session = DemoSession(args)
    try:
        rows = session.run()
    finally:
        session.stop()
    if rows is None:
        return 1
    plot_timeline(rows, session.events, args.plot)
    if args.json:
        profile = transport.profile_environment()[transport.PROFILE_VARIABLE]
        report = {"summary": summarise(rows), "rows": rows, "plot": args.plot, "profile": profile}
        print(json.dumps(_without_nan(report)))
    else:
        print(f"timeline: {args.plot}")
    return 0


def _without_nan(value):
    """NaN (no measurement, e.g. a dead sensor's quality) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nan(item) for item in value]
    return value
