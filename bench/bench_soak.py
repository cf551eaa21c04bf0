"""Soak: sim_sensors at 30 Hz camera / 10 Hz lidar feeding fusion_node for N minutes, both as
processes over DDS on the shipped Fast DDS profile, as a user runs them. Reports the resident
memory of each process (after a warm-up minute, and its growth from there) and the node's
counters from /diagnostics: frames, stale sets dropped, messages received, errors, sync drops.

    .venv/bin/python bench/bench_soak.py [--minutes 10] [--model PATH] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from tqdm import tqdm  # noqa: E402

from adaptive_fusion.ros import transport  # noqa: E402
from adaptive_fusion.ros.diagnostics import values_of  # noqa: E402
from adaptive_fusion.ros.spin import interrupt, spinning  # noqa: E402

BIN = Path(sys.executable).parent
SAMPLE_S = 5.0
WARM_UP_S = 60.0  # allocator pools, DDS history and torch caches fill during the first minute


def rss_mib(pid: int) -> float:
    """Resident set size from /proc (Linux), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Diagnostics:
    def __init__(self, context):
        self.node = rclpy.create_node("soak_listener", context=context)
        self.latest: dict[str, dict[str, str]] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on, 10)

    def _on(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("/fusion_node: "):
                self.latest[status.name.split(": ", 1)[1]] = values_of(status)


def start(name: str, ros_args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / name), "--ros-args", *ros_args],
                            env=transport.profile_environment(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def stop(process: subprocess.Popen) -> str:
    [(_, err)] = interrupt(process)
    return err


def counters(diag: dict[str, dict[str, str]]) -> dict[str, int]:
    fusion = diag.get("fusion", {})
    out = {"frames": int(fusion.get("frames", 0)),
           "stale sets dropped": int(fusion.get("stale_sets_dropped", 0))}  # fmt: skip
    for modality in ("camera", "depth", "lidar"):
        values = diag.get(modality, {})
        out[f"{modality} received"] = int(values.get("received", 0))
        out[f"{modality} sync drops"] = sum(
            int(v) for k, v in values.items() if k.startswith("sync_drops.")
        )
        out[f"{modality} errors"] = sum(
            int(v) for k, v in values.items() if k.startswith("errors.")
        )
    out["set errors"] = sum(int(v) for k, v in fusion.items() if k.startswith("errors.set."))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", default="", help="checkpoint; default: the shipped model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of fusion_node")
    args = parser.parse_args()
    transport.use_profile()
    model = ["-p", f"model_path:={Path(args.model).resolve()}"] if args.model else []
    fusion = start("fusion_node", ["--params-file", "config/fusion_node.yaml",
                                   "--params-file", "config/sim_rig.yaml",
                                   "-p", f"threads:={args.threads}", *model])  # fmt: skip
    sim = start("sim_sensors", ["--params-file", "config/sim_sensors.yaml",
                                "-p", "camera_rate:=30.0", "-p", "lidar_rate:=10.0"])  # fmt: skip
    context = Context()
    rclpy.init(context=context)
    listener = Diagnostics(context)
    samples = []  # (t, fusion MiB, sim MiB)
    at_warm_up = None  # the counters after the warm-up minute
    try:
        with spinning(context, (listener.node,)):
            deadline = time.monotonic() + 120
            while int(listener.latest.get("fusion", {}).get("frames", 0)) == 0:
                if time.monotonic() > deadline or fusion.poll() is not None:
                    print("fusion_node produced no frame:\n" + stop(fusion) + stop(sim))
                    return 1
                time.sleep(0.5)
            begin = time.monotonic()
            total = args.minutes * 60
            with tqdm(total=int(total), unit="s", desc="soak") as bar:
                while (elapsed := time.monotonic() - begin) < total:
                    samples.append((elapsed, rss_mib(fusion.pid), rss_mib(sim.pid)))
                    if elapsed >= WARM_UP_S and at_warm_up is None:
                        at_warm_up = counters(listener.latest)
                    time.sleep(SAMPLE_S)
                    bar.update(int(time.monotonic() - begin) - bar.n)
            samples.append((time.monotonic() - begin, rss_mib(fusion.pid), rss_mib(sim.pid)))
            end = counters(listener.latest)
    finally:
        rclpy.shutdown(context=context)
        errors = {name: stop(p) for name, p in (("fusion_node", fusion), ("sim_sensors", sim))}
    warm = next(s for s in samples if s[0] >= min(WARM_UP_S, samples[-1][0]))
    last = samples[-1]
    minutes_after = max((last[0] - warm[0]) / 60, 1e-9)
    print(f"\nsoak {args.minutes:g} min, camera 30 Hz / lidar 10 Hz, threads {args.threads}, "
          f"profile {transport.profile_in_effect()}")  # fmt: skip
    print(f"{'process':12} {'RSS start MiB':>14} {'RSS at 1 min':>13} {'RSS end':>9} "
          f"{'growth after 1 min':>19} {'MiB/min':>8}")  # fmt: skip
    for index, name in ((1, "fusion_node"), (2, "sim_sensors")):
        first = samples[0][index]
        growth = last[index] - warm[index]
        print(f"{name:12} {first:14.1f} {warm[index]:13.1f} {last[index]:9.1f} {growth:19.1f} "
              f"{growth / minutes_after:8.2f}")  # fmt: skip
    print(f"\n{'counter':22} {'total':>8} {'after 1 min':>12}")
    base = at_warm_up or dict.fromkeys(end, 0)
    for key, value in end.items():
        print(f"{key:22} {value:8d} {value - base[key]:12d}")
    seconds = last[0]
    print(f"\nfusion frames/s {end['frames'] / seconds:.1f}; camera msgs/s "
          f"{end['camera received'] / seconds:.1f}; lidar msgs/s "
          f"{end['lidar received'] / seconds:.1f}")  # fmt: skip
    for name, err in errors.items():
        if "Traceback" in err:
            print(f"{name} raised:\n{err}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
