"""Detection loss: CenterNet's penalty-reduced focal loss on the class heatmap, L1 on the box
regression at the cells that own a box."""

import torch
import torch.nn.functional as F

from ..model.detector import REGRESSION_CHANNELS

# Per regression group weight; the log-depth error dominates BEV centre error, so it counts more.
REGRESSION_WEIGHTS = {"offset": 1.0, "log_depth": 2.0, "log_size": 1.0, "yaw": 1.0}
FOCAL_ALPHA = 2.0
FOCAL_BETA = 4.0


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet focal loss, normalised by the number of peaks (cells where target == 1)."""
    prob = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    pos_loss = -torch.log(prob) * (1 - prob) ** FOCAL_ALPHA * positive
    neg_weight = (1 - target) ** FOCAL_BETA * (1 - positive)
    neg_loss = -torch.log(1 - prob) * prob**FOCAL_ALPHA * neg_weight
    return (pos_loss.sum() + neg_loss.sum()) / positive.sum().clamp(min=1.0)


def detection_loss(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Returns the total ("loss") and its parts, all scalars."""
    parts = {"heatmap": focal_loss(outputs["heatmap"], targets["heatmap"])}
    mask = targets["mask"].unsqueeze(1)  # (B, 1, rows, cols)
    count = mask.sum().clamp(min=1.0)
    start = 0
    for name, channels in REGRESSION_CHANNELS.items():
        target = targets["regression"][:, start : start + channels]
        start += channels
        error = F.l1_loss(outputs[name], target, reduction="none") * mask
        parts[name] = REGRESSION_WEIGHTS[name] * error.sum() / (count * channels)
    parts["loss"] = sum(parts.values())
    return parts
