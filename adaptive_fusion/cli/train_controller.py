"""Train the layer controller through a frozen detector, from a YAML config.

Loads the detector checkpoint of the config (frozen), reads the detector's training cache
(rendering it first if missing), and trains one controller for every budget on heavily corrupted
samples with a random budget per sample; writes <out_dir>/last.{safetensors,json} every few
minutes and per epoch, and <out_dir>/best.* by the validation mAP of the learned allocator.
"""

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="controller YAML (see config/controller/)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out_dir>/last.* after a stop")
    parser.add_argument("--out-dir", help="override the config's out_dir")
    parser.add_argument("--detector", help="override the config's detector checkpoint")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (smoke runs)")
    parser.add_argument("--json", action="store_true", help="print the final summary as JSON")


def run(args: argparse.Namespace) -> int:
    from adaptive_fusion.lab.controller.config import load_controller_config
    from adaptive_fusion.lab.controller.trainer import ControllerTrainer
    from adaptive_fusion.lab.training.cache import CacheError
    from adaptive_fusion.lab.training.config import ConfigError
    from adaptive_fusion.lab.training.trainer import ResumeError
    from adaptive_fusion.model.checkpoint import CheckpointError

    try:
        config = load_controller_config(args.config)
        if args.out_dir:
            config.out_dir = args.out_dir
        if args.detector:
            config.detector = args.detector
        if args.max_steps is not None:
            config.schedule.max_steps = args.max_steps
        trainer = ControllerTrainer(config, resume=args.resume)
    except (ConfigError, ResumeError, CacheError, CheckpointError) as error:
        print(f"error: {error}")
        return 2
    summary = {"out_dir": config.out_dir, **trainer.train()}
    print(json.dumps(summary, indent=2) if args.json else
          f"trained the controller {summary['step']} steps; checkpoints in {config.out_dir}")
    return 0
