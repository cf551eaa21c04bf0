"""Why mAP is what it is: the metric of metrics.py broken down by distance and visibility, what
class confusion costs, and how far off the true positives are (along and across the line of sight,
yaw, size).

Bands, the convention (KITTI's handling of ground truth outside a difficulty level):
detections are matched exactly as for the plain metric, per class, against ALL ground truth of the
frame; then only the ground truth inside the band counts (recall's
denominator), a detection matched to ground truth outside the band is ignored (neither TP nor FP),
and an unmatched detection is a false positive only if it lies in the band itself. Why: matching
against all truth keeps a correct detection of an object just across a band edge from turning into
a false positive, and judging unmatched detections by their own position makes the distance bands
partition the plain evaluation: every TP and FP of the plain metric lands in exactly one band (the
first edge being 0). The alternative, filtering truth and detections separately before matching
(as nuScenes applies its per-class range limit), turns every such edge case into a miss plus a
false positive. Visibility is a property of the truth only, so an
unmatched detection has none: it counts as a false positive in every visibility band, as KITTI
counts it at every occlusion level. A visibility band's AP therefore holds the whole run's false
positives against its own recall; `recall_per_threshold_m` (found / ground truth in the band at
the lowest score) is free of that and says where objects go missing.

Distances are bird's-eye-view ranges from the camera centre (the detector's viewpoint; the lidar
sits 0.27 m behind it in the default rig), and the line of sight of an error is the direction from
the camera centre to the ground truth centre.
"""

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.lab.evaluation.metrics import (
    DISTANCE_THRESHOLDS,
    assign_frame,
    hit_table,
    summarise,
)
from adaptive_fusion.lab.evaluation.runner import DetectedFrames

DEFAULT_DISTANCE_EDGES = (0.0, 10.0, 20.0, 30.0)  # metres; the last band is open
DEFAULT_VISIBILITY_EDGES = (0.0, 0.1, 0.5, 0.8)  # unoccluded fraction of the object's outline
DEFAULT_RETURN_EDGES = (0.0, 3.0, 10.0, 30.0)  # lidar returns inside the ground truth box
LOCALISATION_THRESHOLD = 2.0  # metres: the true positives whose errors are measured
YAW_BIN_EDGES_DEG = tuple(range(0, 181, 15))  # histogram of the yaw errors (front/back flips)
AGNOSTIC = ("object",)  # the one class of the class-agnostic evaluation


class BandError(ValueError):
    """Band edges that do not make bands."""


@dataclass(frozen=True)
class Bands:
    """Half-open bands [edges[i], edges[i+1]), the last one open above."""

    edges: tuple[float, ...]
    unit: str = ""

    def __post_init__(self):
        edges = np.asarray(self.edges, dtype=float)
        if len(edges) == 0 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
            raise BandError(f"band edges must be increasing finite numbers, got {self.edges}")

    @staticmethod
    def parse(text: str, unit: str = "") -> "Bands":
        try:
            return Bands(tuple(float(v) for v in text.split(",") if v.strip()), unit)
        except ValueError as error:
            raise BandError(f"band edges {text!r}: {error}") from None

    @property
    def labels(self) -> list[str]:
        upper = [f"-{e:g}" for e in self.edges[1:]] + ["+"]
        return [f"{lo:g}{hi}{self.unit}" for lo, hi in zip(self.edges, upper, strict=True)]

    def index(self, values: np.ndarray) -> np.ndarray:
        """Band of each value; -1 below the first edge (in no band)."""
        return np.searchsorted(self.edges, values, side="right") - 1


def bev_range(boxes: Boxes3D, viewpoint: np.ndarray) -> np.ndarray:
    return np.linalg.norm(boxes.centers[:, :2] - viewpoint[:2], axis=1)


def band_metrics(
    predictions: Sequence[Boxes3D], truths: Sequence[Boxes3D], classes: Sequence[str],
    bands: Bands, truth_band: Sequence[np.ndarray],
    prediction_band: Sequence[np.ndarray] | None,
) -> dict[str, dict]:
    """metrics.py's report per band (the module's convention), with the recall reached at each
    threshold pooled over classes. `truth_band` / `prediction_band` give each box's band per
    frame; no prediction_band: unmatched detections are false positives in every band."""
    result = {}
    for b, label in enumerate(bands.labels):
        counted_truth = [band == b for band in truth_band]
        counted_predictions = (None if prediction_band is None
                               else [band == b for band in prediction_band])
        table = hit_table(predictions, truths, len(classes), DISTANCE_THRESHOLDS,
                          counted_truth, counted_predictions)
        report = summarise(table, classes).to_dict()
        found = np.array([[int(hits.true_positive.sum()) for hits in row] for row in table])
        total = sum(report["ground_truth_per_class"].values())
        report["recall_per_threshold_m"] = {
            str(t): round(float(found[:, i].sum()) / total, 4) if total else None
            for i, t in enumerate(DISTANCE_THRESHOLDS)}
        result[label] = report
    return result


def class_confusion(run: DetectedFrames, classes: Sequence[str]) -> dict:
    """What wrong labels cost. "mAP" is the plain per-class metric; "mAP_label_free" the same
    mean over classes when a detection of any label may find an object (per class: its ground
    truth counts, an unmatched detection is a false positive of its own label); the gap is the
    cost of class confusion alone. "mAP_class_agnostic" pools every object into one class (the
    usual class-agnostic AP: also weights classes by their frequency). "confusion_2m": per truth
    class, the label of the detection that takes it in class-agnostic matching at 2 m (highest
    score first), or missed."""
    anonymous = [replace(p, labels=np.zeros_like(p.labels)) for p in run.predictions]
    anonymous_truths = [replace(t, labels=np.zeros_like(t.labels)) for t in run.truths]
    per_class = summarise(hit_table(run.predictions, run.truths, len(classes)), classes)
    # Label-free AP of a class is a band AP on unlabelled boxes, the band being the class index.
    label_bands = Bands(tuple(float(c) for c in range(len(classes))))
    label_free = band_metrics(anonymous, anonymous_truths, AGNOSTIC, label_bands,
                              [t.labels for t in run.truths], [p.labels for p in run.predictions])
    label_free_ap = {name: band["mAP"] for name, band in zip(classes, label_free.values(),
                                                            strict=True)}
    known = [ap for ap in label_free_ap.values() if ap is not None]
    pooled = summarise(hit_table(anonymous, anonymous_truths, 1), AGNOSTIC)
    return {
        "mAP": per_class.to_dict()["mAP"],
        "mAP_label_free": round(float(np.mean(known)), 4) if known else None,
        "mAP_class_agnostic": pooled.to_dict()["mAP"],
        "AP_per_class": per_class.to_dict()["AP_per_class"],
        "AP_label_free_per_class": label_free_ap,
        "confusion_2m": confusion_counts(run, classes),
    }


def confusion_counts(run: DetectedFrames, classes: Sequence[str]) -> dict[str, dict[str, int]]:
    counts = np.zeros((len(classes), len(classes) + 1), np.int64)  # last column: missed
    for pred, truth in zip(run.predictions, run.truths, strict=True):
        assigned = assign_frame(pred.centers, pred.scores, truth.centers, LOCALISATION_THRESHOLD)
        taken = assigned >= 0
        np.add.at(counts, (truth.labels[assigned[taken]], pred.labels[taken]), 1)
        found = np.zeros(len(truth), bool)
        found[assigned[taken]] = True
        np.add.at(counts[:, -1], truth.labels[~found], 1)
    columns = [*classes, "missed"]
    return {name: dict(zip(columns, map(int, row), strict=True))
            for name, row in zip(classes, counts, strict=True)}


@dataclass
class MatchedErrors:
    """Per true positive at LOCALISATION_THRESHOLD (class-aware matching, as the metric)."""

    labels: np.ndarray
    ranges: np.ndarray  # truth's BEV range from the viewpoint, metres
    radial: np.ndarray  # signed, metres: positive = detection farther than the truth
    lateral: np.ndarray  # signed, metres: positive = to the left seen from the viewpoint
    yaw_deg: np.ndarray  # absolute, wrapped to [0, 180]
    size_error: np.ndarray  # 1 - IoU of the boxes aligned on centre and yaw (nuScenes ASE)

    def select(self, mask: np.ndarray) -> "MatchedErrors":
        return MatchedErrors(*(getattr(self, f.name)[mask] for f in fields(self)))


def matched_errors(run: DetectedFrames, num_classes: int) -> MatchedErrors:
    parts = []
    for pred, truth, viewpoint in zip(run.predictions, run.truths, run.viewpoints, strict=True):
        for c in range(num_classes):
            p, g = pred.select(pred.labels == c), truth.select(truth.labels == c)
            assigned = assign_frame(p.centers, p.scores, g.centers, LOCALISATION_THRESHOLD)
            p, g = p.select(assigned >= 0), g.select(assigned[assigned >= 0])
            parts.append(box_errors(p, g, viewpoint))
    if not parts:
        return box_errors(Boxes3D.empty(), Boxes3D.empty(), np.zeros(3))
    return MatchedErrors(*(np.concatenate([getattr(e, f.name) for e in parts])
                           for f in fields(MatchedErrors)))


def box_errors(pred: Boxes3D, truth: Boxes3D, viewpoint: np.ndarray) -> MatchedErrors:
    """Errors of paired boxes (pred[i] is truth[i]'s detection)."""
    sight = truth.centers[:, :2].astype(np.float64) - viewpoint[:2]
    ranges = np.linalg.norm(sight, axis=1)
    along = sight / np.maximum(ranges, 1e-9)[:, None]
    delta = pred.centers[:, :2] - truth.centers[:, :2]
    yaw = np.abs(np.angle(np.exp(1j * (pred.yaws.astype(np.float64) - truth.yaws))))
    overlap = np.prod(np.minimum(pred.sizes, truth.sizes), axis=1)
    union = np.prod(pred.sizes, axis=1) + np.prod(truth.sizes, axis=1) - overlap
    return MatchedErrors(
        labels=truth.labels, ranges=ranges,
        radial=np.sum(delta * along, axis=1),
        lateral=along[:, 0] * delta[:, 1] - along[:, 1] * delta[:, 0],  # z of along x delta
        yaw_deg=np.degrees(yaw), size_error=1.0 - overlap / np.maximum(union, 1e-12),
    )


def error_summary(errors: MatchedErrors) -> dict:
    """Medians of the errors (None without true positives)."""
    def median(values: np.ndarray) -> float | None:
        return round(float(np.median(values)), 4) if len(values) else None

    return {
        "true_positives": len(errors.labels),
        "radial_m": median(np.abs(errors.radial)),
        "radial_signed_m": median(errors.radial),
        "radial_relative": median(np.abs(errors.radial) / np.maximum(errors.ranges, 1e-9)),
        "lateral_m": median(np.abs(errors.lateral)),
        "yaw_deg": median(errors.yaw_deg),
        "yaw_over_90deg": round(float(np.mean(errors.yaw_deg > 90)), 4) if len(errors.labels)
        else None,
        "size_error": median(errors.size_error),
    }


def localisation(errors: MatchedErrors, classes: Sequence[str], distance: Bands) -> dict:
    """error_summary of the 2 m true positives per class (and all classes), overall and per
    distance band of the truth."""
    band = distance.index(errors.ranges)
    return {
        name: {"all": error_summary(errors.select(mask)),
               **{label: error_summary(errors.select(mask & (band == b)))
                  for b, label in enumerate(distance.labels)}}
        for name, mask in _class_masks(errors, classes).items()
    }


def yaw_histogram(errors: MatchedErrors, classes: Sequence[str]) -> dict:
    """Counts of the 2 m true positives' yaw errors per class in YAW_BIN_EDGES_DEG bins: a peak
    at the last bin is the front/back ambiguity."""
    counts = {name: np.histogram(errors.yaw_deg[mask], YAW_BIN_EDGES_DEG)[0].tolist()
              for name, mask in _class_masks(errors, classes).items()}
    return {"bin_edges_deg": list(YAW_BIN_EDGES_DEG), **counts}


def _class_masks(errors: MatchedErrors, classes: Sequence[str]) -> dict[str, np.ndarray]:
    masks = {name: errors.labels == c for c, name in enumerate(classes)}
    masks["all classes"] = np.ones(len(errors.labels), bool)
    return masks


DISTANCE_BANDS = Bands(DEFAULT_DISTANCE_EDGES, " m")
VISIBILITY_BANDS = Bands(DEFAULT_VISIBILITY_EDGES)
RETURN_BANDS = Bands(DEFAULT_RETURN_EDGES)


def breakdown(
    run: DetectedFrames, classes: Sequence[str], distance: Bands = DISTANCE_BANDS,
    visibility: Bands = VISIBILITY_BANDS,
) -> dict:
    """The whole breakdown of one run as a JSON-ready dict."""
    errors = matched_errors(run, len(classes))
    truth_range = [bev_range(t, v) for t, v in zip(run.truths, run.viewpoints, strict=True)]
    prediction_range = [bev_range(p, v) for p, v in zip(run.predictions, run.viewpoints,
                                                        strict=True)]
    return {
        "distance_bands": band_metrics(
            run.predictions, run.truths, classes, distance,
            [distance.index(r) for r in truth_range],
            [distance.index(r) for r in prediction_range]),
        "visibility_bands": band_metrics(
            run.predictions, run.truths, classes, visibility,
            [visibility.index(v) for v in run.visibility], None),
        # How much the lidar saw of each object: like visibility, a property of the truth only.
        "lidar_return_bands": band_metrics(
            run.predictions, run.truths, classes, RETURN_BANDS,
            [RETURN_BANDS.index(n) for n in run.lidar_returns], None),
        "class_confusion": class_confusion(run, classes),
        "localisation_2m": localisation(errors, classes, distance),
        "yaw_error_histogram_2m": yaw_histogram(errors, classes),
    }


def format_breakdown(result: dict, classes: Sequence[str]) -> str:
    """The breakdown as text tables: AP per band and class with the ground truth count and the
    recall at 2 m, class confusion, and the 2 m true positives' errors per distance band."""
    lines = []
    for title, key in (("distance (BEV from camera)", "distance_bands"),
                       ("visibility", "visibility_bands"),
                       ("lidar returns in the box", "lidar_return_bands")):
        lines.append(f"{'AP by ' + title:<30}{'mAP':>7}" + "".join(f"{c:>12}" for c in classes)
                     + f"{'objects':>9}{'recall@2m':>11}")
        for label, band in result[key].items():
            cells = "".join(f"{_number(band['AP_per_class'][c]):>12}" for c in classes)
            count = sum(band["ground_truth_per_class"].values())
            lines.append(f"  {label:<28}{_number(band['mAP']):>7}{cells}{count:>9}"
                         f"{_number(band['recall_per_threshold_m']['2.0']):>11}")
    confusion = result["class_confusion"]
    lines.append(f"class confusion: mAP {_number(confusion['mAP'])} per class, "
                 f"{_number(confusion['mAP_label_free'])} if any label may find an object, "
                 f"{_number(confusion['mAP_class_agnostic'])} class-agnostic (pooled)")
    lines.append(f"{'localisation of 2 m TPs':<30}{'TPs':>6}{'|radial|':>10}{'radial':>9}"
                 f"{'|lateral|':>11}{'rel.rad.':>10}{'yaw deg':>9}{'yaw>90':>8}{'1-IoU':>8}")
    for name, per_band in result["localisation_2m"].items():
        for label, e in per_band.items():
            lines.append(f"  {name + ' ' + label:<28}{e['true_positives']:>6}"
                         f"{_number(e['radial_m']):>10}{_number(e['radial_signed_m']):>9}"
                         f"{_number(e['lateral_m']):>11}{_number(e['radial_relative']):>10}"
                         f"{_number(e['yaw_deg'], 1):>9}{_number(e['yaw_over_90deg'], 2):>8}"
                         f"{_number(e['size_error']):>8}")
    return "\n".join(lines)


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot_breakdown(result: dict, classes: Sequence[str], path: str, title: str = "") -> None:
    """Seven panels. Top: AP per distance band, per visibility band and per band of lidar
    returns in the box (per class, with the objects in each band and the recall reached at 2 m),
    per-class AP with and without the label having to be right. Bottom: median radial and
    lateral error of the 2 m true positives per distance band, their yaw errors, and which label
    takes each object (2 m, any label)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(22, 9))
    axes[1, 3].remove()
    for ax, key, name in ((axes[0, 0], "distance_bands", "BEV distance from the camera"),
                          (axes[0, 1], "visibility_bands", "visibility (unoccluded fraction)"),
                          (axes[0, 2], "lidar_return_bands", "lidar returns in the box")):
        bands = result[key]
        groups = [f"{label}\n{sum(b['ground_truth_per_class'].values())} obj."
                  for label, b in bands.items()]
        values = {c: [b["AP_per_class"][c] for b in bands.values()] for c in classes}
        values["mAP"] = [b["mAP"] for b in bands.values()]
        _grouped_bars(ax, groups, values)
        recall = [b["recall_per_threshold_m"]["2.0"] for b in bands.values()]
        ax.plot(range(len(groups)), [np.nan if r is None else r for r in recall], "kD:",
                markersize=6, label="recall at 2 m (all classes)")
        ax.legend(fontsize=7, loc="upper center", ncol=3)
        ax.set_title(f"AP by {name}", fontsize=10)
        ax.set_ylabel("AP (0.5/1/2/4 m), recall")
    _plot_confusion_cost(axes[0, 3], result["class_confusion"], classes)
    _plot_sight_errors(axes[1, 0], result["localisation_2m"], classes)
    _plot_yaw(axes[1, 1], result["yaw_error_histogram_2m"], classes)
    _plot_confusion_matrix(axes[1, 2], result["class_confusion"]["confusion_2m"], classes)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


MIN_PLOTTED_TRUE_POSITIVES = 3  # a median of fewer is noise on the error plot


def _plot_sight_errors(ax, localisation: dict, classes: Sequence[str]) -> None:
    labels = [label for label in localisation["all classes"] if label != "all"]
    for c, name in enumerate([*classes, "all classes"]):
        colour = "black" if name == "all classes" else f"C{c}"
        for key, style, what in (("radial_m", "-o", "radial"), ("lateral_m", "--s", "lateral")):
            y = [e[key] if e["true_positives"] >= MIN_PLOTTED_TRUE_POSITIVES else np.nan
                 for e in (localisation[name][label] for label in labels)]
            ax.plot(range(len(labels)), y, style, color=colour, label=f"{name} {what}",
                    markersize=4)
    counts = [localisation["all classes"][label]["true_positives"] for label in labels]
    ax.set_xticks(range(len(labels)), [f"{lb}\n{n} TPs" for lb, n in zip(labels, counts,
                                                                          strict=True)],
                  fontsize=8)
    ax.set_ylabel("median |error| (m)")
    ax.set_title("2 m true positives: error along (radial) and across (lateral) the line of "
                 f"sight\n(points from >= {MIN_PLOTTED_TRUE_POSITIVES} TPs)", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def _plot_yaw(ax, histogram: dict, classes: Sequence[str]) -> None:
    edges = np.asarray(histogram["bin_edges_deg"], float)
    width = np.diff(edges) / (len(classes) + 0.5)
    for c, name in enumerate(classes):
        counts = np.asarray(histogram[name], float)
        share = counts / max(counts.sum(), 1)
        ax.bar(edges[:-1] + (c + 0.25) * width, share, width, align="edge", color=f"C{c}",
               label=f"{name} ({int(counts.sum())} TPs)")
    ax.set_xticks(edges[::2])
    ax.set_xlabel("|yaw error| (deg)")
    ax.set_ylabel("share of the class's 2 m TPs")
    ax.set_title("yaw error of 2 m true positives (180 = front/back flipped)", fontsize=9)
    ax.legend(fontsize=7)


def _plot_confusion_cost(ax, confusion: dict, classes: Sequence[str]) -> None:
    _grouped_bars(ax, list(classes), {
        "label must match": [confusion["AP_per_class"][c] for c in classes],
        "any label finds it": [confusion["AP_label_free_per_class"][c] for c in classes]})
    ax.legend(fontsize=7, loc="upper center", ncol=2)
    ax.set_title(f"class confusion: mAP {_number(confusion['mAP'])} -> "
                 f"{_number(confusion['mAP_label_free'])} if any label counts\n"
                 f"(class-agnostic, pooled: {_number(confusion['mAP_class_agnostic'])})",
                 fontsize=9)
    ax.set_ylabel("AP (0.5/1/2/4 m)")


def _plot_confusion_matrix(ax, counts: dict, classes: Sequence[str]) -> None:
    columns = [*classes, "missed"]
    table = np.array([[counts[row][col] for col in columns] for row in classes], float)
    share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (r, c), n in np.ndenumerate(table):
        ax.text(c, r, f"{int(n)}\n{share[r, c]:.0%}", ha="center", va="center", fontsize=8,
                color="white" if share[r, c] > 0.6 else "black")
    ax.set_xticks(range(len(columns)), [f"as {c}" for c in columns], fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_title("which label takes each object (2 m, any label, highest score first)",
                 fontsize=9)


def _grouped_bars(ax, groups: list[str], values: dict[str, list[float | None]]) -> None:
    """One bar per series in each group, value written on top; None (no ground truth) as a gap."""
    width = 0.8 / len(values)
    for i, (name, series) in enumerate(values.items()):
        x = np.arange(len(groups)) + (i - (len(values) - 1) / 2) * width
        heights = [0.0 if v is None else v for v in series]
        colour = "black" if name == "mAP" else f"C{i}"
        ax.bar(x, heights, width, label=name, color=colour, alpha=0.85)
        for xi, v in zip(x, series, strict=True):
            if v is not None:
                ax.text(xi, v + 0.01, f"{v:.2f}", ha="center", fontsize=6)
    ax.set_xticks(np.arange(len(groups)), groups, fontsize=8)
    ax.set_ylim(0, 1.2)  # room for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
