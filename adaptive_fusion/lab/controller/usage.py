"""Whether running a live sensor helps: the supervised target of the controller's use head, and
its loss.

The detection loss alone, through the straight-through presence weight, may not teach the
controller to switch a sensor off (as it alone does not teach it to track quality). So every
training sample also gets a label from the frozen detector: per live modality, "dropping it
helps" when the sample's own detection loss is lower with that modality absent than present,
the other live modalities present, everything at full depth.

At full depth rather than at the sampled allocation: the label then says whether the sensor's
data misleads the detector even with every block run on it, which is what its corruption
decides, not the budget or the controller's current sampling. A sampled-allocation label would
move with the policy, and would judge a modality the controller already switched off by its
block 0 alone, reinforcing the switch. What a merely weak sensor is worth at a small budget is
left to the detection loss, through the presence weight. Full depth is also cheap: the streams
run once, and only the fusion and the head run again per dropped modality.

The losses are those of the detector as deployed (detection_terms without teacher forcing): its
depth is scored where its own choice of depth reference puts it. Teacher-forced, a lidar full of
fake returns costs little, since the teacher picks the true reference among the fake ones; on 32
validation scenes with spurious returns at severity 0.5, "dropping it helps" fired on 19 of them
(24 as deployed), and with range noise at 0.8 on 12 (4), while by mAP (64 scenes) dropping that
lidar helps (0.44 -> 0.61) and dropping the noisy one hurts (0.63 -> 0.61). The controller
trainer's detection loss is the deployed one too, for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from adaptive_fusion.lab.training.loss import per_sample_detection_loss
from adaptive_fusion.model.detector import AdaptiveFusionDetector


@torch.no_grad()
def absent_losses(
    detector: AdaptiveFusionDetector, rasters: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor], live: torch.Tensor, modalities: Sequence[str],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample detection losses of the frozen detector at full depth: (B,) with every live
    modality present, and (B, modalities) with that modality absent instead (equal to the first
    where it is not live: nothing to drop)."""
    streams = detector.run_streams(rasters)
    present = {name: live[:, m] for m, name in enumerate(modalities)}

    def loss(presence: Mapping[str, torch.Tensor]) -> torch.Tensor:
        outputs = detector.fuse_streams(streams, rasters, presence)
        return per_sample_detection_loss({k: v.float() for k, v in outputs.items()}, targets,
                                         teacher_forcing=False)

    with_all = loss(present)
    dropped = with_all[:, None].repeat(1, len(modalities))
    for m, name in enumerate(modalities):
        if live[:, m].any():
            dropped[:, m] = loss({**present, name: torch.zeros_like(live[:, m])})
    return with_all, dropped


def dropping_helps(with_all: torch.Tensor, dropped: torch.Tensor,
                   live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(helps, counted), both bool (B, modalities): helps where the loss without the modality is
    lower than with it; counted where the modality is live next to another live one (the only
    live sensor runs whatever its use logit says, see selection.run_mask)."""
    counted = live & (live.sum(dim=1, keepdim=True) >= 2)
    return counted & (dropped < with_all[:, None]), counted


def use_loss(use_logits: torch.Tensor, helps: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the use logits (B, modalities) against "run it" = not helps,
    averaged over the counted entries."""
    loss = F.binary_cross_entropy_with_logits(use_logits, (~helps).to(use_logits.dtype),
                                              reduction="none")
    weight = counted.to(loss.dtype)
    return (loss * weight).sum() / weight.sum().clamp(min=1.0)
