"""Train the detector as a weight-sharing supernet (sandwich sampling), from a YAML config.

Each step trains, on one batch, the largest subnet, the smallest and a few random ones
(elastic depth, MLP width, attention heads, token resolution per modality, and the fusion
operator; adaptive_fusion/model/architecture.py), with LayerDrop, modality dropout and
corruptions as `train` does, starting from the shipped weights wherever they fit. Writes
<out_dir>/last.{safetensors,json} and the training state every few minutes and per epoch, and
<out_dir>/best.* by the mean validation mAP of the largest, the smallest and today's subnet.
Continue a stopped run with --resume.
"""

import argparse

from adaptive_fusion.cli import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train.add_arguments(parser)  # --config: config/supernet/default.yaml or tiny.yaml


def run(args: argparse.Namespace) -> int:
    from adaptive_fusion.lab.supernet.config import load_supernet_config
    from adaptive_fusion.lab.supernet.trainer import SupernetTrainer

    return train.train_with(args, load_supernet_config, SupernetTrainer)
