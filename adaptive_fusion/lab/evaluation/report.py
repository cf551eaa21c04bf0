"""An evaluation report: one model, one layer allocation, a fixed set of rendered test scenes, and
a list of conditions (clean, dead sensors, corruptions at severities, several at once). Gives mAP
per condition and class plus the allocation's FLOPs and latency; renders a PNG bar chart. For
chosen conditions it adds the breakdown of breakdown.py (AP by distance and visibility, class
confusion, localisation errors) from the same predictions. The budget sweep (sweep.py) reuses its
conditions and test scenes."""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from tqdm import tqdm

from adaptive_fusion.core.frames import CORRUPTIONS, FrameSet
from adaptive_fusion.lab.evaluation.breakdown import (
    DISTANCE_BANDS,
    VISIBILITY_BANDS,
    Bands,
    breakdown,
)
from adaptive_fusion.lab.evaluation.metrics import evaluate_detections
from adaptive_fusion.lab.evaluation.protocol import check_protocol, nuscenes_view
from adaptive_fusion.lab.evaluation.runner import allocation_flops, detect_frames, measure_latency
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.sim.config import WorldConfig
from adaptive_fusion.sim.corruptions import SCENE_EVENTS, corrupt
from adaptive_fusion.sim.world import World

TEST_FIRST_SEED = 2_000_000  # test scenes never overlap training (0..) or validation (1e6..)


# The corruption kept out of the controller's training: its conditions are labelled "held out".
HELD_OUT = (("camera", "motion_blur"),)
# "mixed": two sensors degraded at once, a night with rain: the camera in low light and the lidar
# losing most returns, while the active depth camera still works.
MIXED = "camera:low_light+lidar:dropout"


@dataclass(frozen=True)
class Condition:
    """A corruption spec for `corrupt`; the clean condition has an empty spec."""

    name: str
    spec: tuple  # ((key, kind, severity), ...)

    def as_spec(self) -> dict:
        return {key: (kind, severity) for key, kind, severity in self.spec}

    @property
    def held_out(self) -> bool:
        return any((key, kind) in HELD_OUT for key, kind, _ in self.spec)

    @property
    def label(self) -> str:
        return f"{self.name} (held out)" if self.held_out else self.name


CLEAN = Condition("clean", ())


def parse_conditions(text: str, severities: Sequence[float]) -> list[Condition]:
    """'clean', 'dead' (each modality dead), 'single' (every non-dead kind of every modality),
    'all' (those and scene fog), 'mixed' (MIXED), explicit 'modality:kind' / 'scene:fog' items,
    or several joined by '+' ('camera:noise+depth:holes': corrupted together); comma separated
    and combinable. Corruptions other than dead come at each of the severities."""
    conditions: list[Condition] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        if item == "clean":
            conditions.append(CLEAN)
        elif item == "dead":
            conditions += [Condition(f"{m}:dead", ((m, "dead", 1.0),)) for m in CORRUPTIONS]
        elif item in ("single", "all"):
            pairs = [(m, k) for m, kinds in CORRUPTIONS.items() for k in kinds if k != "dead"]
            pairs += [("scene", event) for event in SCENE_EVENTS] if item == "all" else []
            conditions += [
                Condition(f"{m}:{k}@{s:g}", ((m, k, s),)) for m, k in pairs for s in severities
            ]
        else:
            item = MIXED if item == "mixed" else item
            pairs = [_corruption(part) for part in item.split("+")]
            if len(pairs) == 1 and pairs[0][1] == "dead":
                conditions.append(Condition(item, ((*pairs[0], 1.0),)))
            else:
                conditions += [Condition(f"{item}@{s:g}", tuple((m, k, s) for m, k in pairs))
                               for s in severities]
    return list(dict.fromkeys(conditions))  # de-duplicated, order kept


def _corruption(item: str) -> tuple[str, str]:
    key, _, kind = item.strip().partition(":")
    known = CORRUPTIONS.get(key, SCENE_EVENTS if key == "scene" else ())
    if kind not in known:
        raise ValueError(f"unknown condition {item!r}: use clean, dead, single, all, mixed, "
                         "modality:kind, scene:fog, or items joined by '+'")
    return key, kind


def render_test_set(count: int, first_seed: int = TEST_FIRST_SEED,
                    world_config: WorldConfig | None = None,
                    show_progress: bool = False) -> list[FrameSet]:
    world = World(world_config or WorldConfig())
    seeds = range(first_seed, first_seed + count)
    return [world.render(s) for s in tqdm(seeds, desc="render test", disable=not show_progress)]


def evaluate_conditions(
    model: AdaptiveFusionDetector, frame_sets: Sequence[FrameSet], conditions: Sequence[Condition],
    allocation: Mapping[str, Sequence[int]] | None, latency_runs: int = 50,
    show_progress: bool = False, breakdown_for: Collection[str] = (),
    distance: Bands = DISTANCE_BANDS, visibility: Bands = VISIBILITY_BANDS,
    protocol: str = "all",
) -> dict:
    """The full report as a JSON-ready dict; the conditions named in `breakdown_for` also get a
    "breakdown" (breakdown.py, with these bands). `protocol` (protocol.PROTOCOLS) says which
    boxes count."""
    classes = model.config.classes
    check_protocol(protocol, classes)
    results = {}
    for condition in tqdm(conditions, desc="conditions", disable=not show_progress):
        corrupted = (
            corrupt(frames, condition.as_spec(), seed=i) if condition.spec else frames
            for i, frames in enumerate(frame_sets)
        )
        run = detect_frames(model, corrupted, allocation)
        if protocol == "nuscenes":
            run = nuscenes_view(run, frame_sets, classes)
        metrics = evaluate_detections(run.predictions, run.truths, classes)
        results[condition.name] = metrics.to_dict(nuscenes=protocol == "nuscenes")
        if condition.name in breakdown_for:
            results[condition.name]["breakdown"] = breakdown(run, classes, distance, visibility)
    inputs = prepare_inputs(frame_sets[0], model.config)
    flops = allocation_flops(model, inputs, allocation)
    full_flops = allocation_flops(model, inputs, None)
    return {
        "allocation": {m: list(b) for m, b in (allocation or {}).items()} or "full",
        "protocol": protocol,
        "frames": len(frame_sets),
        "flops": flops,
        "flops_fraction_of_full": flops / full_flops,
        "latency": measure_latency(model, inputs, allocation, runs=latency_runs),
        "conditions": results,
    }


def plot_report(report: dict, path: str) -> None:
    """Bar chart of mAP per condition, with the allocation's cost in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["conditions"])
    values = [report["conditions"][n]["mAP"] or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 4.5))
    colours = ["tab:green" if n == "clean" else "tab:red" if "dead" in n else "tab:blue"
               for n in names]
    ax.bar(range(len(names)), values, color=colours)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mAP (BEV centre distance 0.5/1/2/4 m)")
    latency = report["latency"]["median_ms"]
    allocation = report["allocation"]
    blocks = (", ".join(f"{m} {len(b)}" for m, b in allocation.items())
              if isinstance(allocation, dict) else allocation)
    ax.set_title(f"blocks run: {blocks}\n{report['flops'] / 1e9:.2f} GFLOPs "
                 f"({100 * report['flops_fraction_of_full']:.0f}% of full), "
                 f"{latency:.1f} ms median, {report['frames']} scenes", fontsize=9)
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
