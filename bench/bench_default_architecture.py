"""Which subnet should fusion_node run by default: today's full detector, or a searched subnet,
each under its allocation policies, scored over the sweep's 17 conditions and timed side by side.

Every setting (an architecture, a policy, a compute budget) runs through FusionPipeline, the
node's own path, on the same test scenes under each condition (clean, every single corruption at
severity 1, the mixed one and each sensor dead, as docs/model.md's sweep); the settings take
turns scene by scene, so the host's load hits them alike. Prints per setting the clean mAP, the
mean over the conditions, the worst condition and the median end-to-end latency (at the
evaluation's score threshold, 0.05), with its ratio to the full detector's.

    .venv/bin/python bench/bench_default_architecture.py [--scenes 48]
        [--architecture adaptive_fusion/models/default_architecture.json] [--json FILE]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from bench_model import host_matmul_gflops
from tqdm import tqdm

from adaptive_fusion.lab.evaluation.report import TEST_FIRST_SEED, parse_conditions
from adaptive_fusion.lab.search.costs import PipelineSetting
from adaptive_fusion.lab.search.report import mean_ap, pipeline_detections
from adaptive_fusion.model.architecture import Architecture, SearchSpace
from adaptive_fusion.model.checkpoint import DEFAULT_ARCHITECTURE, DEFAULT_MODEL, load_checkpoint
from adaptive_fusion.sim import World
from adaptive_fusion.sim.corruptions import corrupt


def settings_for(model, subnet: Architecture) -> dict[str, PipelineSetting]:
    full = SearchSpace.of(model.config).full()
    return {
        "full, controller @1": PipelineSetting(full, "controller", 1.0),
        "full, controller @0.5": PipelineSetting(full, "controller", 0.5),
        "full, controller @0.25": PipelineSetting(full, "controller", 0.25),
        "full, equal split @0.25": PipelineSetting(full, "equal_split", 0.25),
        "subnet, controller @1": PipelineSetting(subnet, "controller", 1.0),
        "subnet, equal split @1": PipelineSetting(subnet, "equal_split", 1.0),
        "subnet, controller @0.5": PipelineSetting(subnet, "controller", 0.5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--architecture", type=Path, default=DEFAULT_ARCHITECTURE,
                        help="the searched subnet to compare with the full detector (default: "
                             "the packaged one, fusion_node's default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gflops = host_matmul_gflops(args.threads)
    print("host matmul: " + ", ".join(f"{g:.0f} GFLOP/s at {t} thread(s)"
                                      for t, g in gflops.items()))
    model, _ = load_checkpoint(DEFAULT_MODEL)
    model.eval()
    subnet = Architecture.load(args.architecture, model.config)
    settings = settings_for(model, subnet)
    world = World()
    scenes = [world.render(TEST_FIRST_SEED + i) for i in tqdm(range(args.scenes), desc="render")]
    conditions = parse_conditions("clean,single,mixed,dead", [1.0])
    # Every condition's scenes in one run: the settings' policies are made once.
    faulted = [corrupt(frames, condition.as_spec(), seed=seed) if condition.spec else frames
               for condition in conditions for seed, frames in enumerate(scenes)]
    detections, times = pipeline_detections(model, list(settings.values()), faulted,
                                            args.threads, "frames")
    maps = {name: {condition.name: mean_ap(model, faulted[i * len(scenes):(i + 1) * len(scenes)],
                                           boxes[i * len(scenes):(i + 1) * len(scenes)])
                   for i, condition in enumerate(conditions)}
            for name, boxes in zip(settings, detections, strict=True)}
    times = dict(zip(settings, times, strict=True))
    full_ms = float(np.median(times["full, controller @1"]))
    print(f"{len(conditions)} conditions x {args.scenes} test scenes; subnet: {args.architecture}")
    print(f"{'setting':<26}{'clean':>7}{'mean':>7}{'worst':>7}{'ms':>8}{'/ full':>8}")
    rows = {}
    for name in settings:
        values = list(maps[name].values())
        median_ms = float(np.median(times[name]))
        rows[name] = {"clean": maps[name]["clean"], "mean": float(np.mean(values)),
                      "worst": float(np.min(values)), "median_ms": median_ms,
                      "conditions": maps[name]}
        print(f"{name:<26}{rows[name]['clean']:>7.3f}{rows[name]['mean']:>7.3f}"
              f"{rows[name]['worst']:>7.3f}{median_ms:>8.1f}{median_ms / full_ms:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"scenes": args.scenes,
                                         "architecture": str(args.architecture),
                                         "settings": rows}, indent=1) + "\n")
        print(f"json: {args.json}")


if __name__ == "__main__":
    main()
