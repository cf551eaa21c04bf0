"""Controller training samples: the detector's training sample (rasters, targets) plus what the
controller sees and learns from: the measured quality scores and the labels of the corruption
the augmentation applied."""

from __future__ import annotations

import torch

from adaptive_fusion.lab.controller.labels import LABEL_KEYS, corruption_labels
from adaptive_fusion.lab.training.data import FrameDataset, make_sample, split_batch
from adaptive_fusion.quality import measure


class ControllerDataset(FrameDataset):
    """FrameDataset items (the same augmentation for the same seed, epoch and index) with
    "quality" (modalities,) and the corruption labels of labels.corruption_labels."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        frames, spec = self.augmented(index)
        sample = make_sample(frames, self.config)
        modalities = self.config.modalities
        quality = measure(frames)
        sample["quality"] = torch.tensor([quality[name].score for name in modalities])
        labels = corruption_labels(spec, modalities)
        sample.update({key: torch.from_numpy(value) for key, value in labels.items()})
        return sample


def split_controller_batch(batch: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
    """Collated batch -> (rasters by modality, detection targets, controller labels)."""
    labels = {key: batch[key] for key in LABEL_KEYS}
    rasters, targets = split_batch({k: v for k, v in batch.items() if k not in LABEL_KEYS})
    return rasters, targets, labels
