"""Corruption labels of a training sample, from the spec the augmentation applied, and the loss
of the controller's corruption head against them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from adaptive_fusion.policies.network import CLEAN, corruption_kinds

UNNAMED = -100  # torch's cross_entropy ignore_index: no kind class to learn
LABEL_KEYS = ("corrupted", "severity", "kind", "fog", "quality")


def corruption_labels(spec: Mapping, modalities: Sequence[str]) -> dict[str, np.ndarray]:
    """Spec {modality: (kind, severity), "scene": ("fog", severity)} -> per modality whether it is
    corrupted and how badly (scene fog counts for every sensor, with the larger severity),
    the index of its own corruption kind (clean when only fog hit it; UNNAMED for a real-world
    fault outside the kind head's classes, which the kind loss skips), and the scene fog flag."""
    fog = float(spec["scene"][1]) if "scene" in spec else 0.0
    corrupted, severity, kind = [], [], []
    for name in modalities:
        own_kind, own_severity = spec.get(name, (CLEAN, 0.0))
        worst = max(float(own_severity), fog)
        corrupted.append(float(worst > 0))
        severity.append(worst)
        kinds = corruption_kinds(name)
        kind.append(kinds.index(own_kind) if own_kind in kinds else UNNAMED)
    return {"corrupted": np.array(corrupted, np.float32),
            "severity": np.array(severity, np.float32),
            "kind": np.array(kind, np.int64), "fog": np.array(float(fog > 0), np.float32)}


def corruption_loss(
    outputs: Mapping, labels: Mapping[str, torch.Tensor], live: torch.Tensor,
    modalities: Sequence[str],
) -> dict[str, torch.Tensor]:
    """Binary cross-entropy on corrupted and on scene fog, L1 on severity (sigmoid of its logit),
    cross-entropy on the kind; per modality only where it is live (no data, nothing to see)."""
    weight = live.float()
    count = weight.sum().clamp(min=1.0)
    corrupted = F.binary_cross_entropy_with_logits(
        outputs["corrupted"], labels["corrupted"], reduction="none")
    severity = (torch.sigmoid(outputs["severity"]) - labels["severity"]).abs()
    kind = torch.stack([
        F.cross_entropy(outputs["kind"][name], labels["kind"][:, m], reduction="none",
                        ignore_index=UNNAMED)
        for m, name in enumerate(modalities)], dim=1)
    parts = {
        "corrupted": (corrupted * weight).sum() / count,
        "severity": (severity * weight).sum() / count,
        "kind": (kind * weight).sum() / count,
        "fog": F.binary_cross_entropy_with_logits(outputs["fog"], labels["fog"]),
    }
    parts["total"] = sum(parts.values())
    return parts
