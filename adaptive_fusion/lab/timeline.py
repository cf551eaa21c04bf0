"""The demo's timeline: one row a second (budget, layers and quality per modality, latency, running
mAP) as a terminal table and as a PNG with the scenario's events marked."""

from __future__ import annotations

import math
from pathlib import Path

from adaptive_fusion.core.frames import MODALITIES

COLUMNS = (
    "t", "budget",
    *(f"layers_{m}" for m in MODALITIES),
    *(f"quality_{m}" for m in MODALITIES),
    "latency_ms", "deadline_ms", "mAP",
)  # fmt: skip
SHORT = {"camera": "cam", "depth": "dep", "lidar": "lid"}


def format_header() -> str:
    layers = " ".join(f"{SHORT[m]:>3s}" for m in MODALITIES)
    quality = " ".join(f"{SHORT[m]:>4s}" for m in MODALITIES)
    return f"{'t s':>5s} {'budget':>6s} | layers {layers} | quality {quality} | {'ms':>6s} | mAP"


def _text(value: float, width: int, digits: int) -> str:
    return f"{'-':>{width}s}" if math.isnan(value) else f"{value:{width}.{digits}f}"


def format_row(row: dict) -> str:
    layers = " ".join(f"{row[f'layers_{m}']:3d}" for m in MODALITIES)
    quality = " ".join(_text(row[f"quality_{m}"], 4, 2) for m in MODALITIES)
    budget, latency = _text(row["budget"], 6, 2), _text(row["latency_ms"], 6, 1)
    return (
        f"{row['t']:5.1f} {budget} | layers {layers} | quality {quality} | {latency} | "
        f"{_text(row['mAP'], 4, 3)}"
    )


def plot_timeline(rows: list[dict], events, path: str) -> None:
    """Four stacked panels against time: layers, quality, latency (with the deadline, if any),
    running mAP; a dotted line at each scenario event, a shaded span while cores are busy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [row["t"] for row in rows]
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    layers, quality, latency, accuracy = axes
    layers.stackplot(t, *([row[f"layers_{m}"] for row in rows] for m in MODALITIES),
                     labels=MODALITIES, step="post")  # fmt: skip
    layers.set_ylabel("layers in use")
    layers.legend(loc="upper right", fontsize=8)
    for m in MODALITIES:
        quality.plot(t, [row[f"quality_{m}"] for row in rows], label=m)
    quality.set_ylabel("measured quality")
    quality.set_ylim(-0.05, 1.05)
    latency.plot(t, [row["latency_ms"] for row in rows], label="pipeline latency")
    # no deadline (0) is left blank rather than drawn at 0 ms
    deadlines = [d if d > 0 else math.nan for d in (row["deadline_ms"] for row in rows)]
    if not all(math.isnan(d) for d in deadlines):
        latency.plot(t, deadlines, "k--", label="deadline")
    latency.set_ylabel("ms")
    latency.legend(loc="upper right", fontsize=8)
    accuracy.plot(t, [row["mAP"] for row in rows], color="tab:purple")
    accuracy.set_ylabel("mAP (last frames)")
    accuracy.set_xlabel("seconds")
    budget_axis = layers.twinx()
    budget_axis.plot(t, [row["budget"] for row in rows], "k:", label="budget")
    budget_axis.set_ylim(0, 1.05)
    budget_axis.set_ylabel("compute budget")
    busy_since = None  # shade the spans where other processes held cores
    for event in [*events, None]:
        if event is not None and event.action != "busy_cores":
            continue
        end = t[-1] if event is None else event.at
        if busy_since is not None:
            for axis in axes:
                axis.axvspan(busy_since, end, color="tab:red", alpha=0.08, linewidth=0)
            busy_since = None
        if event is not None and event.value:
            busy_since = event.at
    labels: dict[float, list[str]] = {}  # events at one time share a line and a label
    for event in events:
        labels.setdefault(event.at, []).append(event.label)
    for at, names in labels.items():
        for axis in axes:
            axis.axvline(at, color="grey", linestyle=":", linewidth=1)
        layers.annotate(" + ".join(names), (at, 0), rotation=90, fontsize=7, va="bottom")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
