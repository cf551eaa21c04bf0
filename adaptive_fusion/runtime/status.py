"""What a host of the pipeline reports about itself (the content of fusion_node's /diagnostics,
without ROS): one status for the fusion step and one per modality, values as plain numbers and
strings. The ROS layer only turns them into diagnostic_msgs."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from adaptive_fusion.core.frames import MODALITIES
from adaptive_fusion.runtime.pipeline import FusionPipeline, FusionResult

OK, WARN, ERROR = "ok", "warn", "error"
HEALTHY_QUALITY = 0.5  # a live modality below this is reported as a warning
ERROR_SOURCES = (*MODALITIES, "camera_info", "compute_budget", "set")


@dataclass
class Status:
    name: str
    hardware_id: str
    level: str  # OK, WARN or ERROR
    message: str
    values: dict[str, object]


@dataclass
class Counters:
    """What the host counts: bad inputs per source and kind, messages the synchronizer dropped
    per modality and reason, frames done, sets skipped before the first camera_info."""

    errors: dict[str, Counter[str]] = field(
        default_factory=lambda: {name: Counter() for name in ERROR_SOURCES})
    sync_drops: dict[str, Counter[str]] = field(
        default_factory=lambda: {m: Counter() for m in MODALITIES})
    frames: int = 0
    sets_before_camera_info: int = 0  # start-up, not an error: topics match one by one
    # points dropped from accepted clouds as NaN or infinite, in all and the share of the last
    dropped_points: Counter[str] = field(default_factory=Counter)
    dropped_share_last: dict[str, float] = field(default_factory=dict)


def prefixed(prefix: str, counts: Counter) -> dict[str, int]:
    return {prefix + kind: count for kind, count in sorted(counts.items())}


def fusion_status(
    pipeline: FusionPipeline,
    result: FusionResult | None,
    counters: Counters,
    latency: dict[str, float],
    *,
    active: bool,
    live: tuple[str, ...],
    budget: dict[str, object],
    stale_sets: int,
) -> Status:
    """`budget`: budget_in_force, compute_budget_param, compute_budget_topic, latency_budget_ms."""
    layers = _layers(pipeline, result)
    costs = pipeline.costs
    estimates = pipeline.stream_estimates(result) if result else {}
    values = {
        "state": "active" if active else "inactive",
        "policy": pipeline.policy.name,
        **budget,
        "blocks_in_use": sum(layers.values()),
        "blocks_full": pipeline.full_blocks,
        "budget_binding": result.budget.binding if result else "none",
        "live": " ".join(live) or "none",
        "frames": counters.frames,
        "stale_sets_dropped": stale_sets,
        "sets_before_camera_info": counters.sets_before_camera_info,
        **latency,
        "block_cost_ms": 1e3 * (costs.block_s or math.nan),
        "frame_overhead_ms": 1e3 * (costs.overhead_s or math.nan),
        "stream_scheduling": pipeline.stream_scheduling,
        "streams_last": result.streams if result else "none",
        **{f"model_ms.{mode}": 1e3 * seconds for mode, seconds in estimates.items()},
        "detections_last": len(result.boxes) if result else 0,
        **{key: count for source in ("set", "compute_budget", "camera_info")
           for key, count in prefixed(f"errors.{source}.", counters.errors[source]).items()},
    }  # fmt: skip
    level = OK if counters.frames else WARN
    message = f"{counters.frames} frames, {sum(layers.values())} blocks"
    return Status("fusion", "fusion", level, message, values)


def modality_status(
    modality: str,
    pipeline: FusionPipeline,
    result: FusionResult | None,
    counters: Counters,
    *,
    live: bool,
    received: int,
) -> Status:
    layers = _layers(pipeline, result)[modality]
    score = result.quality.get(modality) if result else None
    if not live:
        level, message = ERROR, "timed out"
    elif score is None:
        level, message = OK, "waiting"
    else:
        level = OK if score >= HEALTHY_QUALITY else WARN
        message = (f"{layers} layers, quality {score:.2f}" if layers
                   else f"switched off by the policy, quality {score:.2f}")  # fmt: skip
    values = {
        "alive": live,
        "layers": layers,
        "quality": "none" if score is None else score,
        "received": received,
        **prefixed("errors.", counters.errors[modality]),
        **prefixed("sync_drops.", counters.sync_drops[modality]),
    }
    if modality in counters.dropped_share_last:
        values["nan_points_dropped"] = counters.dropped_points[modality]
        values["nan_points_share_last"] = counters.dropped_share_last[modality]
    return Status(modality, modality, level, message, values)


def _layers(pipeline: FusionPipeline, result: FusionResult | None) -> dict[str, int]:
    modalities = pipeline.config.modalities
    return result.layers(modalities) if result else dict.fromkeys(modalities, 0)
