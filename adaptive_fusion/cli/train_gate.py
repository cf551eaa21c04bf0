"""Train the DynMM gate over a frozen detector, from a YAML config.

Loads the detector checkpoint of the config (frozen), reads the detector's training cache
(rendering it first if missing), builds the table of every path's detection loss per corrupted
sample (resumed chunk by chunk if stopped), measures the cost table on this machine, and trains
one gate for every budget; writes <out_dir>/last.{safetensors,json} every epoch and
<out_dir>/best.* by the validation loss of its paths. Run it again to resume a stopped build.
"""

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="gate YAML (see config/gate/)")
    parser.add_argument("--out-dir", help="override the config's out_dir")
    parser.add_argument("--detector", help="override the config's detector checkpoint")
    parser.add_argument("--json", action="store_true", help="print the final summary as JSON")


def run(args: argparse.Namespace) -> int:
    from adaptive_fusion.lab.gate.config import load_gate_config
    from adaptive_fusion.lab.gate.trainer import GateTrainer
    from adaptive_fusion.lab.training.cache import CacheError
    from adaptive_fusion.lab.training.config import ConfigError
    from adaptive_fusion.model.checkpoint import CheckpointError

    try:
        config = load_gate_config(args.config)
        if args.out_dir:
            config.out_dir = args.out_dir
        if args.detector:
            config.detector = args.detector
        trainer = GateTrainer(config)
    except (ConfigError, CacheError, CheckpointError) as error:
        print(f"error: {error}")
        return 2
    summary = {"out_dir": config.out_dir, **trainer.train()}
    print(json.dumps(summary, indent=2) if args.json else
          f"trained the gate {summary['epochs']} epochs (best validation loss "
          f"{summary['best_val_gate']:.4f}); checkpoints in {config.out_dir}")
    return 0
