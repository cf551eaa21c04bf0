"""Approximate-time synchronizer throughput: messages per second for 3 inputs at 30/15/10 Hz
(2 ms stamp jitter, up to 5 ms transport latency, 50 ms slop) fed straight through
signalMessage, at queue sizes 10, 100 and 1000; target >= 50,000 msg/s at every size. A second
scenario drops the lidar input, so the other queues fill up to queue_size.

    .venv/bin/python bench/bench_sync.py
    .venv/bin/python bench/bench_sync.py --seconds 120 --json out.json

Each row also checks that the emitted sets equal those of the reference policy
(test/sync_reference.py, the tests' oracle: upstream message_filters' algorithm written out, with
`<= slop`), run on the same workload, and times that reference alongside (reading stamps
from the same messages, but without the filter dispatch, lock and drop accounting). For scale,
upstream's own Python synchronizer manages about 17,800 / 2,700 / 770 msg/s here (issue #2);
the reference is faster than upstream because it uses int stamps, not rclpy Time objects.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from sensor_msgs.msg import Image, PointCloud2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))  # sync_reference

from sync_reference import ReferencePolicy, jittered_workload  # noqa: E402

from adaptive_fusion.sync import ApproximateTimeSynchronizer, SimpleFilter, stamp_ns  # noqa: E402

RATES_HZ = (30.0, 15.0, 10.0)
MESSAGE_TYPES = (Image, Image, PointCloud2)  # camera, depth, lidar; empty payloads
SLOP_S = 0.05
TARGET = 50_000


def make_messages(events):
    msgs = []
    for index, stamp in events:
        msg = MESSAGE_TYPES[index]()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        msgs.append(msg)
    return msgs


def run_ours(events, msgs, queue_size):
    inputs = [SimpleFilter() for _ in RATES_HZ]
    sync = ApproximateTimeSynchronizer(inputs, queue_size, SLOP_S)
    sets = []
    sync.registerCallback(lambda *m: sets.append(tuple(map(id, m))))
    feeds = [inputs[index].signalMessage for index, _ in events]
    start = time.perf_counter()
    for feed, msg in zip(feeds, msgs, strict=True):
        feed(msg)
    return time.perf_counter() - start, sets, sync


def run_reference(events, msgs, queue_size):
    policy = ReferencePolicy(len(RATES_HZ), queue_size, round(SLOP_S * 1e9))
    sets = []
    start = time.perf_counter()
    for (index, _), msg in zip(events, msgs, strict=True):
        emitted = policy.add(index, stamp_ns(msg), msg)
        if emitted is not None:
            sets.append(tuple(map(id, emitted)))
    return time.perf_counter() - start, sets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="workload length (stamps)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    events = jittered_workload(RATES_HZ, args.seconds, 0.002, 0.005, seed=args.seed)
    scenarios = {
        "all live": events,
        # queues of the live inputs fill up to queue_size: the case where cost could grow
        "lidar silent": [event for event in events if event[0] != 2],
    }
    rows = []
    for scenario, workload in scenarios.items():
        msgs = make_messages(workload)
        for queue_size in (10, 100, 1000):
            runs = [run_ours(workload, msgs, queue_size) for _ in range(args.repeats)]
            seconds, sets, sync = min(runs, key=lambda run: run[0])
            ref_runs = [run_reference(workload, msgs, queue_size) for _ in range(args.repeats)]
            ref_seconds, ref_sets = min(ref_runs, key=lambda run: run[0])
            rows.append(
                {
                    "scenario": scenario,
                    "queue_size": queue_size,
                    "messages": len(workload),
                    "sets": len(sets),
                    "drops": dict(sync.drop_counts),
                    "msg_per_s": len(workload) / seconds,
                    "reference_msg_per_s": len(workload) / ref_seconds,
                    "same_sets": sets == ref_sets,
                }
            )
    print(f"{args.seconds:.0f} s of stamps: 3 inputs at 30/15/10 Hz, 2 ms jitter, 50 ms slop")
    print(
        f"{'scenario':<13} {'queue':>5} {'msgs':>6} {'sets':>5} {'ours msg/s':>11}"
        f" {'ref msg/s':>10} {'x ref':>6} {'same sets':>9} {'>= 50k':>6}  drops"
    )
    for r in rows:
        print(
            f"{r['scenario']:<13} {r['queue_size']:>5} {r['messages']:>6} {r['sets']:>5}"
            f" {r['msg_per_s']:>11,.0f} {r['reference_msg_per_s']:>10,.0f}"
            f" {r['msg_per_s'] / r['reference_msg_per_s']:>6.1f} {str(r['same_sets']):>9}"
            f" {str(r['msg_per_s'] >= TARGET):>6}  {r['drops']}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    ok = all(r["same_sets"] and r["msg_per_s"] >= TARGET for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
