"""pareto.png: the search's front, validation mAP (and test mAP where scored) against measured
pipeline latency, beside reference points (the full architecture; any other method measured the
same way, such as the equal split or the controller at their budgets, by the label it is
given)."""

from pathlib import Path

REFERENCE_MARKERS = "s^Dv<>"


def plot_front(document: dict, path: str | Path) -> Path:
    """document: pareto.json's content; its "references" map a label to a point (or a list of
    points, one per budget) with validation_map and measured_ms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    # Points, not a line: the front is non-dominated in predicted latency, and measured
    # latencies may order its members a little differently.
    members = document["members"]
    axes.plot([m["measured_ms"] for m in members], [m["validation_map"] for m in members],
              "o", label=f"Pareto front ({len(members)} subnets)")
    tested = [m for m in members if "test_map" in m]
    if tested:
        axes.plot([m["measured_ms"] for m in tested], [m["test_map"] for m in tested], "o",
                  markerfacecolor="none", color="C0",
                  label="hollow: the same subnet or reference, test mAP")
    for marker, (label, points) in zip(REFERENCE_MARKERS, document["references"].items(),
                                       strict=False):
        points = points if isinstance(points, list) else [points]
        [line] = axes.plot([p["measured_ms"] for p in points],
                           [p["validation_map"] for p in points], marker,
                           linestyle="--" if len(points) > 1 else "", markersize=8, label=label)
        tested = [p for p in points if "test_map" in p]
        axes.plot([p["measured_ms"] for p in tested], [p["test_map"] for p in tested], marker,
                  markersize=8, markerfacecolor="none", color=line.get_color())
    settings = document["settings"]
    axes.set_xlabel("measured pipeline latency per frame (ms, batch 1)")
    axes.set_ylabel(f"mAP (validation: {settings['scenes']} scenes)")
    axes.set_title(f"architecture search: {document['evaluated']} subnets evaluated")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
