"""Publish a rosbag2 (MCAP or sqlite3) over ROS with its recorded timing.

--rate scales the timing (2 = twice as fast), --loop starts again at the end (Ctrl-C stops),
--remap OLD:=NEW renames a topic (repeatable), --clock also publishes /clock with the bag's time
for nodes running with use_sim_time.
"""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="bag folder (metadata.yaml and its .mcap or .db3 files)")
    parser.add_argument("--rate", type=float, default=1.0, help="speed factor (> 0)")
    parser.add_argument("--loop", action="store_true", help="play again from the start")
    parser.add_argument("--remap", action="append", default=[], metavar="OLD:=NEW",
                        help="publish topic OLD as NEW (repeatable)")
    parser.add_argument("--clock", action="store_true", help="publish /clock with the bag time")


def parse_remaps(items: list[str]) -> dict[str, str]:
    remap = {}
    for item in items:
        old, sep, new = item.partition(":=")
        if not sep or not old or not new:
            raise SystemExit(f"--remap: {item!r} is not OLD:=NEW")
        remap[old if old.startswith("/") else f"/{old}"] = new
    return remap


def run(args: argparse.Namespace) -> int:
    if args.rate <= 0:
        raise SystemExit("--rate must be > 0")
    remap = parse_remaps(args.remap)
    import rclpy

    from adaptive_fusion.ros import transport
    from adaptive_fusion.ros.bags import BagError, play

    transport.use_profile()
    rclpy.init()
    node = rclpy.create_node("adaptive_fusion_player")
    try:
        published = play(node, args.bag, args.rate, args.loop, remap, args.clock)
    except BagError as error:
        print(f"error: {error}")
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(f"published {published} messages from {args.bag}")
    return 0
