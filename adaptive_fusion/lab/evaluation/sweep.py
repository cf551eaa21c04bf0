"""The budget sweep: mAP of every allocation method at every budget under every condition, on one
frozen detector and one set of test scenes, with the blocks each method gives each modality and
the cost of what it chose.

Each condition's scenes are corrupted, rasterised, scored for quality (quality.measure, what the
allocators see) and matched to their ground truth once; every method and budget reuses them, and
a (scene, allocation) pair already run is not run again (full depth is the same at every budget).
Budgets are fractions of the blocks' cost in the allocators' cost table (block_budget).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.core.frames import FrameSet
from adaptive_fusion.lab.evaluation.allocators import Allocator
from adaptive_fusion.lab.evaluation.metrics import evaluate_detections
from adaptive_fusion.lab.evaluation.report import Condition
from adaptive_fusion.lab.evaluation.runner import detect, evaluation_truth
from adaptive_fusion.model.allocation import Allocation
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.flops import count_flops
from adaptive_fusion.model.inputs import ModelInputs, prepare_inputs
from adaptive_fusion.policies.costs import CostTable, block_budget
from adaptive_fusion.quality import measure
from adaptive_fusion.sim.corruptions import corrupt

DEFAULT_BUDGETS = (0.125, 0.25, 0.5, 0.75, 1.0)
BLOCKS_PLOT_BUDGET = 0.25  # the budget of the targets: the blocks panel shows it


def live_modalities(frames: FrameSet) -> tuple[str, ...]:
    """The modalities whose sensor delivered any data: a dead camera is black, a dead depth camera
    all NaN, a dead lidar empty (world/corruptions.py). A badly degraded sensor is still live:
    how much it is worth is the allocators' call, from its quality."""
    delivered = {"camera": frames.image.any(), "depth": np.isfinite(frames.depth).any(),
                 "lidar": len(frames.points) > 0}
    return tuple(name for name, has_data in delivered.items() if has_data)


@dataclass
class PreparedFrame:
    inputs: ModelInputs
    truth: Boxes3D
    quality: dict[str, float]
    live: tuple[str, ...]


def prepare_condition(model: AdaptiveFusionDetector, frame_sets: Sequence[FrameSet],
                      condition: Condition) -> list[PreparedFrame]:
    """The scenes under one condition (scene i corrupted with seed i, as evaluate_conditions
    does), ready for every method and budget."""
    prepared = []
    for seed, frames in enumerate(frame_sets):
        if condition.spec:
            frames = corrupt(frames, condition.as_spec(), seed=seed)
        inputs = prepare_inputs(frames, model.config)
        quality = {name: q.score for name, q in measure(frames).items()}
        prepared.append(PreparedFrame(inputs, evaluation_truth(frames, inputs, model.config),
                                      quality, live_modalities(frames)))
    return prepared


def allocate(allocator: Allocator, frame: PreparedFrame, budget: float) -> Allocation:
    """One allocation; an allocator that needs the ground truth (the oracle) is given it."""
    extra = {"ground_truth": frame.truth} if getattr(allocator, "needs_ground_truth", False) else {}
    return allocator.allocate(frame.inputs, frame.quality, frame.live, budget, **extra)


def allocator_gflops(allocator: Allocator, frame: PreparedFrame, budget: float) -> float:
    """FLOPs of one allocate call (the controller's own cost; 0 for rules)."""
    return count_flops(lambda: allocate(allocator, frame, budget)) / 1e9


def _key(allocation: Allocation) -> tuple:
    return tuple(sorted(allocation.items()))


def _budget_key(fraction: float) -> str:
    return f"{fraction:g}"


def run_sweep(
    model: AdaptiveFusionDetector, frame_sets: Sequence[FrameSet],
    conditions: Sequence[Condition], methods: Mapping[str, Allocator],
    budgets: Sequence[float], table: CostTable, flop_table: CostTable,
    show_progress: bool = False,
) -> dict:
    """The sweep as a JSON-ready dict (see format_sweep for what it holds). `table` prices the
    budgets for the allocators (GFLOPs or ms); `flop_table` gives the GFLOPs of each choice."""
    modalities = tuple(model.config.modalities)
    block_budgets = {fraction: block_budget(table, fraction=fraction) for fraction in budgets}
    report = {
        "frames": len(frame_sets), "budgets": list(budgets), "methods": list(methods),
        "cost_unit": table.unit, "costs": table.to_dict(),
        "full_gflops": flop_table.fixed + flop_table.block_total(),
        "conditions": {},
    }
    progress = tqdm(total=len(conditions) * len(methods) * len(frame_sets), desc="sweep",
                    disable=not show_progress)
    for condition in conditions:
        progress.set_postfix_str(condition.name)
        prepared = prepare_condition(model, frame_sets, condition)
        if "allocator_gflops" not in report:
            report["allocator_gflops"] = {  # not the oracle's: a search, not an allocator
                name: allocator_gflops(allocator, prepared[0], block_budgets[budgets[0]])
                for name, allocator in methods.items()
                if not getattr(allocator, "needs_ground_truth", False)}
        detections: dict[tuple, tuple[Boxes3D, float]] = {}  # (scene, allocation) -> boxes, ms
        per_method = {}
        for name, allocator in methods.items():
            chosen = {fraction: [] for fraction in budgets}
            allocate_ms = []
            for index, frame in enumerate(prepared):
                for fraction in budgets:
                    start = time.perf_counter()
                    allocation = allocate(allocator, frame, block_budgets[fraction])
                    allocate_ms.append((time.perf_counter() - start) * 1e3)
                    chosen[fraction].append(allocation)
                    key = (index, _key(allocation))
                    if key not in detections:
                        start = time.perf_counter()
                        boxes = detect(model, frame.inputs, allocation)
                        detections[key] = boxes, (time.perf_counter() - start) * 1e3
                progress.update()
            per_method[name] = {
                _budget_key(fraction): _summarise(
                    model, prepared, allocations, detections, table, flop_table, modalities,
                    allocate_ms)
                for fraction, allocations in chosen.items()}
        report["conditions"][condition.name] = {
            "label": condition.label, "held_out": condition.held_out,
            "spec": [list(item) for item in condition.spec],
            "mean_quality": {m: float(np.mean([f.quality[m] for f in prepared]))
                             for m in modalities},
            "live_fraction": {m: float(np.mean([m in f.live for f in prepared]))
                              for m in modalities},
            "methods": per_method,
        }
    progress.close()
    return report


def _summarise(model, prepared, allocations, detections, table, flop_table, modalities,
               allocate_ms) -> dict:
    keys = [(index, _key(allocation)) for index, allocation in enumerate(allocations)]
    metrics = evaluate_detections([detections[key][0] for key in keys],
                                  [frame.truth for frame in prepared], model.config.classes)
    summary = metrics.to_dict()
    del summary["AP_per_threshold_m"], summary["ground_truth_per_class"]
    summary["mean_blocks"] = {m: float(np.mean([len(a.get(m, ())) for a in allocations]))
                              for m in modalities}
    # The share of frames in which each sensor ran at all: a switched-off sensor shows here
    # apart from one given few blocks.
    summary["run_fraction"] = {m: float(np.mean([bool(a.get(m)) for a in allocations]))
                               for m in modalities}
    # How often each path ran: blocks per modality, "camera/depth/lidar" ("2/0/1")
    paths = Counter("/".join(str(len(a.get(m, ()))) for m in modalities) for a in allocations)
    summary["paths"] = dict(paths.most_common())
    summary["gflops"] = float(np.mean(
        [flop_table.fixed + flop_table.allocation_cost(a) for a in allocations]))
    summary["block_cost_fraction"] = float(np.mean(
        [table.allocation_cost(a) for a in allocations]) / table.block_total())
    if table.unit == "ms":  # what the profiled cost table predicts for these choices
        summary["predicted_ms"] = float(np.mean(
            [table.fixed + table.allocation_cost(a) for a in allocations]))
    summary["latency_ms"] = float(np.median([detections[key][1] for key in keys]))
    summary["allocate_ms"] = float(np.median(allocate_ms))
    return summary


# ------------------------------------------------------------------------------------ output


def _blocks_cell(blocks: Mapping[str, float]) -> str:
    return "/".join(f"{v:.1f}" for v in blocks.values())


def format_sweep(report: dict) -> str:
    """Per condition: mAP per method and budget, then mean blocks per modality; then the cost of
    each method's choices on clean data."""
    budgets = [_budget_key(b) for b in report["budgets"]]
    header = "".join(f"{100 * float(b):>15g}%" for b in budgets)
    lines = [f"{report['frames']} scenes; budgets are fractions of the blocks' "
             f"{report['cost_unit']}; full model {report['full_gflops']:.3f} GFLOPs"]
    for condition in report["conditions"].values():
        modalities = "/".join(condition["mean_quality"])
        quality = " ".join(f"{m} {q:.2f}" for m, q in condition["mean_quality"].items())
        lines += ["", f"== {condition['label']}   (mean quality: {quality})",
                  f"{'mAP':<20}{header}"]
        for method, results in condition["methods"].items():
            lines.append(f"{method:<20}" + "".join(
                f"{results[b]['mAP'] if results[b]['mAP'] is not None else float('nan'):>16.3f}"
                for b in budgets))
        lines.append(f"{'blocks ' + modalities:<20}{header}")
        for method, results in condition["methods"].items():
            lines.append(f"{method:<20}" + "".join(
                f"{_blocks_cell(results[b]['mean_blocks']):>16}" for b in budgets))
    first = next(iter(report["conditions"].values()), None)
    if first is not None:
        lines += ["", f"cost of the choices under {next(iter(report['conditions']))}: "
                  "GFLOPs / measured forward+decode ms (median)", f"{'method':<20}{header}"]
        for method, results in first["methods"].items():
            lines.append(f"{method:<20}" + "".join(
                f"{results[b]['gflops']:>8.3f} /{results[b]['latency_ms']:>5.1f}"
                for b in budgets))
        lines += ["", "mean of the conditions: measured ms per frame (forward + decode + "
                  "allocator) / mAP", f"{'method':<20}{header}"]
        for method, points in tradeoff(report).items():
            lines.append(f"{method:<20}" + "".join(f"{ms:>8.1f} /{score:>6.3f}"
                                                   for ms, score in points))
        lines.append("allocator's own cost per frame: " + ", ".join(
            f"{m} {g:.4f} GFLOPs {first['methods'][m][budgets[0]]['allocate_ms']:.2f} ms"
            for m, g in report.get("allocator_gflops", {}).items()))
    return "\n".join(lines)


def plot_sweep(report: dict, path: str) -> None:
    """mAP against budget, one panel per condition and one line per method; below, the mean
    blocks per modality per condition at BLOCKS_PLOT_BUDGET for the controller (equal split
    when there is none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = report["conditions"]
    budgets = report["budgets"]
    keys = [_budget_key(b) for b in budgets]
    columns = min(4, len(conditions))
    rows = -(-len(conditions) // columns)
    fig = plt.figure(figsize=(4.0 * columns, 3.2 * rows + 3.6))
    grid = fig.add_gridspec(rows + 1, columns, height_ratios=[1.0] * rows + [1.1])
    methods = report["methods"]
    colours = dict(zip(methods, plt.cm.tab10.colors, strict=False))
    for i, condition in enumerate(conditions.values()):
        ax = fig.add_subplot(grid[i // columns, i % columns])
        for method in methods:
            values = [condition["methods"][method][k]["mAP"] for k in keys]
            ax.plot([100 * b for b in budgets], [np.nan if v is None else v for v in values],
                    marker="o", ms=3, label=method, color=colours[method],
                    linestyle="--" if method in ("oracle", "full") else "-")
        ax.set_title(condition["label"], fontsize=9)
        ax.set_xticks([100 * b for b in budgets], [f"{100 * b:g}" for b in budgets], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if i % columns == 0:
            ax.set_ylabel("mAP", fontsize=8)
        if i + columns >= len(conditions):  # nothing below this panel
            ax.set_xlabel(f"budget, % of block {report['cost_unit']}", fontsize=8)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(methods), fontsize=8)
    shown = "controller" if "controller" in methods else "equal_split"
    if shown in methods:
        budget = min(budgets, key=lambda b: abs(b - BLOCKS_PLOT_BUDGET))
        ax = fig.add_subplot(grid[rows, :])
        names = list(conditions)
        modalities = list(next(iter(conditions.values()))["mean_quality"])
        width = 0.8 / len(modalities)
        for m, modality in enumerate(modalities):
            values = [conditions[n]["methods"][shown][_budget_key(budget)]["mean_blocks"][modality]
                      for n in names]
            ax.bar(np.arange(len(names)) + (m - (len(modalities) - 1) / 2) * width, values,
                   width, label=modality)
        ax.set_xticks(range(len(names)), [conditions[n]["label"] for n in names], rotation=30,
                      ha="right", fontsize=7)
        ax.set_ylabel("mean blocks", fontsize=8)
        ax.set_title(f"{shown}: mean blocks per modality at {100 * budget:g}% of the budget",
                     fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def frame_ms(result: Mapping) -> float:
    """A method's measured time per frame at one budget: its median forward + decode and its
    own allocate call (the controller's or the gate's network; nothing for the rules)."""
    return result["latency_ms"] + result["allocate_ms"]


def tradeoff(report: dict) -> dict[str, list[tuple[float, float]]]:
    """Per method, per budget: (measured ms per frame, mAP), each averaged over the conditions."""
    conditions = list(report["conditions"].values())
    return {method: [(float(np.mean([frame_ms(c["methods"][method][_budget_key(b)])
                                     for c in conditions])),
                      float(np.mean([c["methods"][method][_budget_key(b)]["mAP"] or 0.0
                                     for c in conditions])))
                     for b in report["budgets"]]
            for method in report["methods"]}


def plot_tradeoff(report: dict, path: str, histogram_method: str = "dynmm",
                  histogram_budget: float = 0.25) -> None:
    """Left: mAP averaged over the conditions against the measured time per frame, one line per
    method through its budgets. Right: the paths `histogram_method` chose at the budget nearest
    `histogram_budget` in each condition (share of frames running each set of modalities)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.2),
                                      gridspec_kw={"width_ratios": [1, 1.4]})
    for method, points in tradeoff(report).items():
        ms, score = zip(*points, strict=True)
        style = "--" if method in ("oracle", "full") else "-"
        left.plot(ms, score, style, marker="o", ms=4, label=method)
        for (x, y), budget in zip(points, report["budgets"], strict=True):
            left.annotate(f"{100 * budget:g}%", (x, y), fontsize=6, xytext=(2, 2),
                          textcoords="offset points")
    left.set_xlabel("measured ms per frame (forward + decode + allocator), mean of conditions")
    left.set_ylabel(f"mAP, mean of {len(report['conditions'])} conditions")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    histogram_budget = min(report["budgets"], key=lambda b: abs(b - histogram_budget))
    key = _budget_key(histogram_budget)
    if histogram_method in report["methods"]:
        names = list(report["conditions"])
        modalities = list(next(iter(report["conditions"].values()))["mean_quality"])
        subsets = sorted({_running(p, modalities)
                          for c in report["conditions"].values()
                          for p in c["methods"][histogram_method][key]["paths"]})
        bottom = np.zeros(len(names))
        for subset in subsets:
            share = []
            for name in names:
                paths = report["conditions"][name]["methods"][histogram_method][key]["paths"]
                share.append(sum(n for p, n in paths.items() if _running(p, modalities) == subset)
                             / max(1, sum(paths.values())))
            right.bar(range(len(names)), share, bottom=bottom, label=subset)
            bottom += share
        right.set_xticks(range(len(names)), [report["conditions"][n]["label"] for n in names],
                         rotation=35, ha="right", fontsize=7)
        right.set_ylabel("share of frames")
        right.set_title(f"{histogram_method}: sensors run at {100 * histogram_budget:g}% "
                        "of the blocks", fontsize=9)
        right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_sweep_and_tradeoff(report: dict, path: str) -> None:
    """plot_sweep at `path`, plot_tradeoff beside it at <stem>_tradeoff.png."""
    plot_sweep(report, path)
    target = Path(path)
    plot_tradeoff(report, str(target.with_name(f"{target.stem}_tradeoff.png")))


def _running(path: str, modalities: Sequence[str]) -> str:
    """"2/0/1" -> "camera+lidar"."""
    return "+".join(m for m, blocks in zip(modalities, path.split("/"), strict=True)
                    if blocks != "0")


def check_methods(names: Sequence[str], controller: str | None) -> None:
    """Known method names, and a controller checkpoint when the controller is one of them."""
    from adaptive_fusion.lab.evaluation.allocators import METHODS

    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; known: {', '.join(METHODS)}")
    if "controller" in names and controller is None:
        raise ValueError("method 'controller' needs --controller PATH")


def build_methods(names: Sequence[str], model: AdaptiveFusionDetector, table: CostTable,
                  controller: str | None = None, seed: int = 0, gate: str | None = None,
                  ) -> dict[str, Allocator]:
    """Allocators by name (allocators.METHODS), all pricing budgets with `table`; "dynmm" loads
    `gate` (default: the packaged gate)."""
    from adaptive_fusion.lab.evaluation.allocators import BASELINES, PrefixOracle, RandomSlots
    from adaptive_fusion.policies.checkpoint import DEFAULT_GATE
    from adaptive_fusion.policies.learned import GateAllocator, LearnedAllocator

    check_methods(names, controller)
    methods: dict[str, Allocator] = {}
    for name in names:
        if name == "controller":
            methods[name] = LearnedAllocator(controller, table)
        elif name == GateAllocator.name:
            methods[name] = GateAllocator(gate or DEFAULT_GATE, table)
        elif name == PrefixOracle.name:
            methods[name] = PrefixOracle(model, table)
        elif name == RandomSlots.name:
            methods[name] = RandomSlots(table, seed)
        else:
            methods[name] = BASELINES[name](table)
    return methods


def check_table(table: CostTable, model: AdaptiveFusionDetector) -> None:
    """The table must price every block of this model."""
    config = model.config
    shape = {m: len(table.block.get(m, ())) for m in config.modalities}
    if tuple(table.block) != tuple(config.modalities) or set(shape.values()) != {config.layers}:
        raise ValueError(f"the cost table has blocks {shape} per modality; the model "
                         f"{config.layers} for each of {list(config.modalities)}, in that order")

