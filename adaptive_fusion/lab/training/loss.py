"""Detection loss: CenterNet's penalty-reduced focal loss on the class heatmap, L1 on the box
regression at the cells that own a box, and the negative log-likelihood of the head's choice of
depth reference (ModelConfig.depth_window). Each part is a sum over cells divided by a count
(peaks or box cells): the batch loss divides the batch's sums, the per-sample loss each sample's
own. Training adds the loss of the head's depth confidence (training_loss); the per-sample loss,
which scores allocations for the controller, leaves it out: it measures detection, not
self-doubt."""

import torch
import torch.nn.functional as F

from adaptive_fusion.model.detector import REGRESSION_CHANNELS

# Per regression group weight; the log-depth error dominates BEV centre error, so it counts more.
REGRESSION_WEIGHTS = {"offset": 1.0, "log_depth": 2.0, "log_size": 1.0, "yaw": 1.0}
# At 1.0 the choice's cross-entropy (ln 26 at the start) outweighed the heatmap's focal loss in
# the first epoch and slowed it: validation mAP 0.31 against 0.36 without a choice.
DEPTH_CHOICE_WEIGHT = 0.5
# Candidates within this (log) of the one to choose are as good: a surface spans several cells.
SAME_SURFACE = 0.02
# A box's visible surface lies in front of its centre, by up to about half its extent: the
# reference to learn is the farthest available measurement at most BEHIND_TOLERANCE (log) behind
# the centre and at most FRONT_TOLERANCE in front of it; none in front, the nearest behind within
# FRONT_TOLERANCE; none at all, the free slot.
BEHIND_TOLERANCE = 0.05
FRONT_TOLERANCE = 0.7
# ... unless the cell's own measurement (the window's centre) lies on the box itself: in front of
# its centre by at most half its footprint's diagonal. Then that is the reference, even if a
# neighbour measures a surface nearer the centre: for a visible object the head learns "my own
# cell" and looks elsewhere only where its own cell sees an occluder. The window-5 head without
# this rule lost 0.858 -> 0.704 mAP within 10 m, picking among a near object's surfaces.
# The depth-confidence channel is the log scale s of a Laplace density over the absolute error e
# of the log depth the head outputs at inference (its own choice of reference, not the teacher's):
# loss e exp(-s) + s, minimised at s = log e. The error is detached, so this channel learns how
# wrong the depth is without pulling the depth itself towards easy cells, as an uncertainty-
# weighted depth loss would (GUPNet, MonoFlex).
DEPTH_SCALE_WEIGHT = 0.5
LOG_SCALE_RANGE = (-7.0, 2.0)
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


def detection_terms(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                    teacher_forcing: bool = True) -> Terms:
    """The loss parts as (sum, count) per sample. Without teacher_forcing a head that chooses its
    depth reference is scored on the depth it outputs (its own choice), with no choice term:
    the loss of the detector as deployed, which is what a controller's decisions change."""
    terms = {"heatmap": focal_terms(outputs["heatmap"], targets["heatmap"])}
    mask = targets["mask"].unsqueeze(1)  # (B, 1, rows, cols)
    count = mask.sum(dim=(1, 2, 3))
    start = 0
    for name, channels in REGRESSION_CHANNELS.items():
        target = targets["regression"][:, start : start + channels]
        start += channels
        predicted = outputs[name]
        if name == "log_depth" and "depth_choice" in outputs and teacher_forcing:
            choice = depth_reference_choice(outputs, target, footprint_radius(targets))
            # The residual is learnt against the reference it should have chosen (teacher
            # forcing), so that a wrong choice early in training does not teach a wrong residual.
            predicted = outputs["depth_residual"] + outputs["depth_candidates"].gather(1, choice)
            wrong = choice_loss(outputs, choice) * mask
            terms["depth_choice"] = DEPTH_CHOICE_WEIGHT * wrong.sum(dim=(1, 2, 3)), count
        error = F.l1_loss(predicted, target, reduction="none") * mask
        terms[name] = REGRESSION_WEIGHTS[name] * error.sum(dim=(1, 2, 3)), count * channels
    return terms


def choice_loss(outputs: dict[str, torch.Tensor], choice: torch.Tensor) -> torch.Tensor:
    """(B, 1, rows, cols) -log of the probability the head gives to the candidates as good as
    `choice`: the available ones within SAME_SURFACE of it (the free slot alone for the free
    slot). Not the cross-entropy of the one index: neighbouring cells on one surface measure
    nearly the same depth, and picking any of them is right."""
    logits = outputs["depth_choice"].float()
    candidates = outputs["depth_candidates"].float()
    free = candidates.shape[1] - 1
    target = candidates.gather(1, choice)
    good = (outputs["depth_available"] > 0.5) & ((candidates - target).abs() <= SAME_SURFACE)
    good[:, free:] = False
    good = torch.where(choice == free, F.one_hot(choice.squeeze(1), free + 1).permute(0, 3, 1, 2)
                       .bool(), good)
    chosen = torch.logsumexp(logits.masked_fill(~good, float("-inf")), dim=1, keepdim=True)
    return torch.logsumexp(logits, dim=1, keepdim=True) - chosen


def regression_target(targets: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """The channels of one REGRESSION_CHANNELS group in the packed regression target."""
    names = list(REGRESSION_CHANNELS)
    start = sum(REGRESSION_CHANNELS[n] for n in names[: names.index(name)])
    return targets["regression"][:, start : start + REGRESSION_CHANNELS[name]]


def footprint_radius(targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, 1, rows, cols) half the diagonal of each box cell's footprint, metres."""
    length_width = regression_target(targets, "log_size")[:, :2].float().exp()
    return 0.5 * length_width.norm(dim=1, keepdim=True)


def depth_reference_choice(
    outputs: dict[str, torch.Tensor], log_depth: torch.Tensor, radius: torch.Tensor
) -> torch.Tensor:
    """(B, 1, rows, cols) index of the depth candidate each cell should choose for a box whose
    centre is at `log_depth` with a footprint of `radius` metres (each (B, 1, rows, cols)): its
    own cell's measurement (outputs["depth_own"]; of several, the one nearest the centre from
    the front) if that lies on the box, else see BEHIND_TOLERANCE."""
    candidates = outputs["depth_candidates"][:, :-1].float()
    available = outputs["depth_available"][:, :-1] > 0.5
    in_front = log_depth.float() - candidates  # > 0: the measurement is nearer than the centre
    key = torch.where(in_front >= -BEHIND_TOLERANCE, in_front, 10.0 - in_front)
    usable = available & (in_front.abs() <= FRONT_TOLERANCE)
    key = torch.where(usable, key, torch.full_like(key, float("inf")))
    best, index = key.min(dim=1, keepdim=True)
    free = candidates.shape[1]
    index = torch.where(torch.isfinite(best), index, torch.full_like(index, free))
    depth = log_depth.float().exp()
    # log z - log(z - r): how far in front of the centre the box's nearest point can be
    on_box = -torch.log1p(-(radius.float() / depth).clamp(max=0.99))
    own = (outputs["depth_own"][:, :-1] > 0.5) & available
    # in_front, not key: a near box's own surface may lie beyond FRONT_TOLERANCE and still on it
    own_key = torch.where(own & (in_front >= -BEHIND_TOLERANCE) & (in_front <= on_box), in_front,
                          torch.full_like(in_front, float("inf")))
    own_best, own_index = own_key.min(dim=1, keepdim=True)
    return torch.where(torch.isfinite(own_best), own_index, index)


def detection_loss(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
    teacher_forcing: bool = True,
) -> dict[str, torch.Tensor]:
    """Returns the total ("loss") and its parts, all scalars (teacher_forcing: detection_terms)."""
    terms = detection_terms(outputs, targets, teacher_forcing)
    parts = {name: total.sum() / count.sum().clamp(min=1.0)
             for name, (total, count) in terms.items()}
    parts["loss"] = sum(parts.values())
    return parts


def training_loss(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """detection_loss, plus the depth-confidence part ("depth_scale")."""
    parts = detection_loss(outputs, targets)
    parts["depth_scale"] = DEPTH_SCALE_WEIGHT * depth_scale_loss(outputs, targets)
    parts["loss"] = parts["loss"] + parts["depth_scale"]
    return parts


def depth_scale_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
                     ) -> torch.Tensor:
    """Laplace negative log-likelihood of the inference-time log-depth error under the predicted
    log scale, averaged over box cells (see DEPTH_SCALE_WEIGHT)."""
    target = regression_target(targets, "log_depth").float()
    error = (outputs["log_depth"].float() - target).abs().detach()
    log_scale = outputs["depth_log_scale"].float().clamp(*LOG_SCALE_RANGE)
    mask = targets["mask"].unsqueeze(1)
    nll = (error * torch.exp(-log_scale) + log_scale) * mask
    return nll.sum() / mask.sum().clamp(min=1.0)


def per_sample_detection_loss(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
    teacher_forcing: bool = True,
) -> torch.Tensor:
    """(B,) the detection loss of each sample on its own (its own peaks and box cells)."""
    return sum(total / count.clamp(min=1.0)
               for total, count in detection_terms(outputs, targets, teacher_forcing).values())
