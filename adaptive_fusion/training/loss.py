"""Detection loss: CenterNet's penalty-reduced focal loss on the class heatmap, L1 on the box
regression at the cells that own a box. Each part is a sum over cells divided by a count (peaks
or box cells): the batch loss divides the batch's sums, the per-sample loss each sample's own."""

import torch
import torch.nn.functional as F

from ..model.detector import REGRESSION_CHANNELS

# Per regression group weight; the log-depth error dominates BEV centre error, so it counts more.
REGRESSION_WEIGHTS = {"offset": 1.0, "log_depth": 2.0, "log_size": 1.0, "yaw": 1.0}
FOCAL_ALPHA = 2.0
FOCAL_BETA = 4.0

Terms = dict[str, tuple[torch.Tensor, torch.Tensor]]  # part -> (sum (B,), count (B,))


def focal_terms(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CenterNet focal loss per sample, (B,) summed over cells, and its peaks (target == 1)."""
    prob = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    pos_loss = -torch.log(prob) * (1 - prob) ** FOCAL_ALPHA * positive
    neg_weight = (1 - target) ** FOCAL_BETA * (1 - positive)
    neg_loss = -torch.log(1 - prob) * prob**FOCAL_ALPHA * neg_weight
    cells = tuple(range(1, logits.dim()))
    return (pos_loss + neg_loss).sum(dim=cells), positive.sum(dim=cells)


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet focal loss, normalised by the number of peaks (cells where target == 1)."""
    total, peaks = focal_terms(logits, target)
    return total.sum() / peaks.sum().clamp(min=1.0)


def detection_terms(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> Terms:
    terms = {"heatmap": focal_terms(outputs["heatmap"], targets["heatmap"])}
    mask = targets["mask"].unsqueeze(1)  # (B, 1, rows, cols)
    count = mask.sum(dim=(1, 2, 3))
    start = 0
    for name, channels in REGRESSION_CHANNELS.items():
        target = targets["regression"][:, start : start + channels]
        start += channels
        error = F.l1_loss(outputs[name], target, reduction="none") * mask
        terms[name] = REGRESSION_WEIGHTS[name] * error.sum(dim=(1, 2, 3)), count * channels
    return terms


def detection_loss(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Returns the total ("loss") and its parts, all scalars."""
    parts = {name: total.sum() / count.sum().clamp(min=1.0)
             for name, (total, count) in detection_terms(outputs, targets).items()}
    parts["loss"] = sum(parts.values())
    return parts


def per_sample_detection_loss(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> torch.Tensor:
    """(B,) the detection loss of each sample on its own (its own peaks and box cells)."""
    return sum(total / count.clamp(min=1.0)
               for total, count in detection_terms(outputs, targets).values())
