"""Train the adaptive-depth fusion detector from a YAML config (also under torchrun).

Renders the synthetic training and validation data once into the config's cache directory (or
with data.nuscenes, reads a nuScenes dataroot's splits into it: config/training/nuscenes_mini.yaml),
then trains with LayerDrop, modality dropout and corruption augmentation, writing
<out_dir>/last.{safetensors,json} every few minutes and per epoch and <out_dir>/best.* by
validation mAP. Data-parallel: `torchrun --nproc_per_node N -m adaptive_fusion.cli.main train
--config FILE` (gloo on CPU, nccl on GPU).
"""

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training YAML (see config/training/)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out_dir>/last.* after a stop")
    parser.add_argument("--out-dir", help="override the config's out_dir")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (smoke runs)")
    parser.add_argument("--json", action="store_true", help="print the final summary as JSON")


def run(args: argparse.Namespace) -> int:
    from adaptive_fusion.lab.training.config import load_config
    from adaptive_fusion.lab.training.trainer import Trainer

    return train_with(args, load_config, Trainer)


def train_with(args: argparse.Namespace, load_config, trainer_class) -> int:
    """The command's work for a trainer (Trainer or a subclass) and its config reader: shared
    with train-supernet."""
    from adaptive_fusion.lab.training.cache import CacheError
    from adaptive_fusion.lab.training.config import ConfigError
    from adaptive_fusion.lab.training.trainer import ResumeError
    from adaptive_fusion.model.checkpoint import CheckpointError

    try:
        config = load_config(args.config)
        if args.out_dir:
            config.out_dir = args.out_dir
        if args.max_steps is not None:
            config.schedule.max_steps = args.max_steps
        trainer = trainer_class(config, resume=args.resume)
    except (ConfigError, ResumeError, CacheError, CheckpointError) as error:
        print(f"error: {error}")
        return 2
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    if trainer.context.is_main:
        summary = {"out_dir": config.out_dir, **summary}
        print(json.dumps(summary, indent=2) if args.json else
              f"trained {summary['step']} steps; checkpoints in {config.out_dir}")
    return 0
