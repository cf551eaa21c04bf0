"""The gate's training table: per training sample, what the gate reads (the pooled views of its
rasters, the measured quality, the live flags) and the frozen detector's detection loss on every
path of the menu (policies/gate.path_counts).

The detector is frozen, so the loss of a path on a sample is a fixed number. DynMM's trainer
runs the chosen branch of every sample at every step; with the branches frozen that computes the
same numbers again each epoch. Here each (sample, path) loss is computed once, and the gate
trains on the table: the same gradient (a straight-through one-hot times the losses), thousands
of times cheaper per step. Each sample runs its live streams once, keeping every prefix
(evaluation/allocators.stream_prefixes); a path then costs only the fusion and the head.

The losses are those of the detector as deployed (no teacher forcing, see controller/usage.py).
Next to them each path's decoded boxes are scored against the frame's ground truth: 1 minus the
frame's AP, the oracle's measure (evaluation/allocators.frame_score), so that the gate can be
trained on what mAP sees (GateTrainConfig.task).
A path that runs a modality the sample does not have (a dead sensor) has NaN for both: the
trainer never offers it.

The table is written in chunks of `chunk` samples (`<out>/<first sample>.safetensors`), so an
interrupted build resumes at the first missing chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from adaptive_fusion.lab.evaluation.allocators import frame_score, prefix_outputs, stream_prefixes
from adaptive_fusion.lab.evaluation.runner import batch_of_one, evaluation_truth
from adaptive_fusion.lab.evaluation.sweep import live_modalities
from adaptive_fusion.lab.training.augment import CorruptionSampler
from adaptive_fusion.lab.training.cache import load_frames
from adaptive_fusion.lab.training.data import frame_targets
from adaptive_fusion.lab.training.loss import per_sample_detection_loss
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.model.tokenizers import RASTER_CHANNELS
from adaptive_fusion.policies.gate import ModalityGate
from adaptive_fusion.quality import measure

HEAD_BATCH = 64  # paths fused and scored at once


@torch.inference_mode()
def sample_row(detector: AdaptiveFusionDetector, gate: ModalityGate, frames) -> dict:
    """One sample's row: "view_<modality>" of each modality, "quality", "live" (modalities,),
    "detection_loss" (paths,) and "ap_misses" (paths,): 1 - the frame's AP of each path's
    decoded boxes (evaluation/allocators.frame_score, what the oracle ranks by)."""
    config = detector.config
    modalities = tuple(config.modalities)
    live = live_modalities(frames)
    inputs = prepare_inputs(frames, config)
    quality = measure(frames)
    targets = {name: torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(0)
               for name, array in frame_targets(frames, inputs, config).items()}
    paths = gate.paths.numpy()
    on_live = (paths[:, [m for m, name in enumerate(modalities) if name not in live]] == 0).all(1)
    losses = torch.full((len(paths),), float("nan"))
    prefixes = stream_prefixes(detector, inputs, live)
    chosen = np.flatnonzero(on_live)
    misses = torch.full((len(paths),), float("nan"))
    truth = evaluation_truth(frames, inputs, config)
    for start in range(0, len(chosen), HEAD_BATCH):
        index = chosen[start : start + HEAD_BATCH]
        outputs = prefix_outputs(detector, inputs, paths[index], prefixes)
        expanded = {name: t.expand(len(index), *t.shape[1:]) for name, t in targets.items()}
        losses[index] = per_sample_detection_loss(
            {k: v.float() for k, v in outputs.items()}, expanded, teacher_forcing=False)
        for row, path in enumerate(index):
            boxes = decode(outputs, inputs.K, inputs.T_cam_lidar, config, index=row)
            misses[path] = 1.0 - frame_score(boxes, truth, config.classes)[0]
    rasters = {name: raster for name, raster in batch_of_one(inputs, detector).items()
               if name in live}
    views = gate.views(rasters)
    # zeros where a sensor is not live: the gate reads its live flag, never that view
    row = {f"view_{name}": (views[name][0] if name in views
                            else torch.zeros(2 * RASTER_CHANNELS[name], *config.head_grid)).half()
           for name in modalities}
    row.update(quality=torch.tensor([quality[name].score if name in quality else 0.0
                                     for name in modalities]),
               live=torch.tensor([float(name in live) for name in modalities]),
               detection_loss=losses, ap_misses=misses)
    return row


def build_table(detector: AdaptiveFusionDetector, gate: ModalityGate, files: Sequence[Path],
                corruptions: CorruptionSampler, seed: tuple[int, ...], out: Path,
                chunk: int = 100, show_progress: bool = True) -> dict[str, torch.Tensor]:
    """The table of `files` (sample i corrupted by `corruptions` with seed (*seed, i)), built
    chunk by chunk into `out` (existing chunks are kept), then read back whole."""
    out.mkdir(parents=True, exist_ok=True)
    progress = tqdm(total=len(files), desc=f"gate table {out.name}", disable=not show_progress)
    for first in range(0, len(files), chunk):
        path = out / f"{first:07d}.safetensors"
        count = min(chunk, len(files) - first)
        if not path.exists():
            rows = []
            for index in range(first, first + count):
                rng = np.random.default_rng([*seed, index])
                frames, _ = corruptions.apply_with_spec(load_frames(files[index]), rng)
                rows.append(sample_row(detector, gate, frames))
                progress.update()
            stacked = {key: torch.stack([row[key] for row in rows]) for key in rows[0]}
            save_file(stacked, str(path.with_suffix(".partial")))
            path.with_suffix(".partial").rename(path)  # a chunk exists only when complete
        else:
            progress.update(count)
    progress.close()
    return read_table(out, len(files), chunk)


def read_table(out: Path, samples: int, chunk: int) -> dict[str, torch.Tensor]:
    parts = [load_file(str(out / f"{first:07d}.safetensors"))
             for first in range(0, samples, chunk)]
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
