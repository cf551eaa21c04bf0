"""Listen to fusion_node's input topics for a few seconds and say what will go wrong.

Run it on the robot before launching the node (same ROS_DOMAIN_ID, same environment). Per
input it prints the rate, message size, the publishers and their QoS (reliability and
durability; history where DDS reports it), stamp offsets between the streams and against this
machine's clock, and frame_ids; then every problem found (QoS mismatch, publishers matched but
samples lost, stamps that never fall within the slop, clock offsets, frame or size mismatches)
with its fix. Exits 1 when something will keep the node from producing output, 0 otherwise.
"""

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topics",
        default="",
        help="INPUT=TOPIC,... to listen elsewhere than fusion_node's topic names; inputs: "
        "camera, camera_info, depth, lidar, compute_budget",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds to listen")
    parser.add_argument("--slop", type=float, default=0.05, help="the node's sync_slop (s)")
    parser.add_argument(
        "--lidar-frame",
        default="",
        help="frame_id the node's camera_from_lidar is configured for ('' = not checked)",
    )
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="do not load the shipped Fast DDS profile in this process (the node's launch "
        "file and demo load it)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def parse_topics(text: str) -> dict[str, str]:
    from adaptive_fusion.ros.topics import INPUTS

    topics = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, topic = item.partition("=")
        if not sep or name not in INPUTS or not topic:
            raise SystemExit(
                f"--topics: {item!r} is not INPUT=TOPIC with INPUT one of "
                f"{', '.join(INPUTS)}"
            )
        topics[name] = topic
    return topics


def run(args: argparse.Namespace) -> int:
    if args.duration <= 0 or args.slop < 0:
        raise SystemExit("--duration must be > 0 and --slop >= 0")
    topics = parse_topics(args.topics)
    from adaptive_fusion.ros import transport

    if not args.no_profile:
        transport.use_profile()  # before the first participant: Fast DDS reads it once
    report = listen(topics, args.duration, args.slop, args.lidar_frame or None, not args.json)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(report, args.duration)
    return 1 if report.failing else 0


def listen(topics, duration: float, slop: float, lidar_frame, progress: bool):
    import time

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from tqdm import tqdm

    from adaptive_fusion.ros.doctor import Doctor
    from adaptive_fusion.ros.input_monitor import MonitorConfig, fusion_inputs

    # a sample missing for half the listening time counts as silence
    config = MonitorConfig(slop_s=slop, silence_s=duration / 2, no_set_s=duration / 2)
    context = Context()
    rclpy.init(context=context)
    doctor = Doctor(context, fusion_inputs(topics, lidar_frame), config)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(doctor.node)
    try:
        end = time.monotonic() + duration
        bar_format = "listening {bar} {n:.1f}/{total:.1f} s"
        with tqdm(total=duration, bar_format=bar_format, disable=not progress, leave=False) as bar:
            while (left := end - time.monotonic()) > 0:
                executor.spin_once(timeout_sec=min(left, 0.05))
                bar.n = round(duration - max(left, 0), 1)
                bar.refresh()
        return doctor.report()
    finally:
        executor.shutdown()
        doctor.destroy()
        rclpy.shutdown(context=context)


def _size(text: str) -> str:
    size = float(text)
    for unit in ("B", "KB", "MB"):
        if size < 1000 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return text


def print_report(report, duration: float) -> None:
    from adaptive_fusion.ros.doctor import LEVEL_NAMES

    rmw, profile = report.transport["rmw"], report.transport["profile"]
    print(f"adaptive-fusion doctor: listened {duration:g} s; {rmw}, Fast DDS profile {profile}")
    header = ("input", "topic", "Hz", "size", "offset s", "age s", "frame_id", "status")
    rows = []
    for name, values in report.inputs.items():
        offset = values.get("stamp_offset_s", "")
        rows.append(
            (
                name,
                values["topic"],
                f"{float(values['rate_hz']):.1f}",
                _size(values["size_bytes"]) if values["size_bytes"] != "0" else "-",
                "" if offset in ("", "nan") else f"{float(offset):+.3f}",
                "" if values["stamp_age_s"] == "nan" else f"{float(values['stamp_age_s']):.3f}",
                values["frame_id"],
                values["level"],
            )
        )
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    print("publishers (reliability, durability, history depth):")
    for name, values in report.inputs.items():
        matched, lost = values["matched"], values["lost"]
        print(f"  {name}: {values['publishers']}  [matched {matched}, lost {lost}]")
    if report.synchronizer is not None:
        sync = report.synchronizer
        print(f"synchronizer: {sync['sets']} sets at sync_slop {sync['slop_s']} s")
    if not report.findings:
        print("no problem found")
        return
    print("problems:")
    for finding in report.findings:
        level = LEVEL_NAMES[finding.level[0]]
        print(f"  {level} {finding.input} [{finding.kind}]: {finding.message}")
        print(f"      fix: {finding.fix}")
