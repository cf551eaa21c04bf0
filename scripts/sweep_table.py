"""The docs' sweep table from a budget sweep's JSON (`adaptive-fusion evaluate --methods ...
--json`): mAP per condition for each method at 25% and 50% of the blocks' cost, the sensors the
DynMM gate ran at 25%, the mean over the conditions, and each method's measured and expected
time per frame.

    .venv/bin/python scripts/sweep_table.py docs/dynmm_sweep.json
"""

import json
import sys

BUDGETS = ("0.25", "0.5")


def paths_cell(result: dict, modalities: list[str]) -> str:
    """The gate's most frequent sets of sensors: "cdl 40%, dl 30%" (c/d/l: camera/depth/lidar)."""
    shares: dict[str, int] = {}
    for path, frames in result["paths"].items():
        running = "".join(m[0] for m, blocks in zip(modalities, path.split("/"), strict=True)
                          if blocks != "0")
        shares[running] = shares.get(running, 0) + frames
    total = sum(shares.values())
    top = sorted(shares.items(), key=lambda item: -item[1])[:3]
    return ", ".join(f"{name} {100 * count / total:.0f}%" for name, count in top)


def main() -> None:
    sweep = json.loads(open(sys.argv[1]).read())
    methods = [m for m in ("equal_split", "random", "controller", "dynmm", "oracle")
               if m in sweep["methods"]]
    conditions = list(sweep["conditions"].values())
    modalities = list(conditions[0]["mean_quality"])
    titles = ["full depth"] + [f"{m} {100 * float(b):g}%" for b in BUDGETS for m in methods]
    titles.append("dynmm sensors at 25% (c/d/l)")
    print("| condition (severity 1) | " + " | ".join(titles) + " |")
    print("|---" * (len(titles) + 1) + "|")
    means = {title: [] for title in titles[:-1]}
    for condition in conditions:
        name = condition["label"].split("@")[0] + (" (held out)" if condition["held_out"] else "")
        full = next(iter(condition["methods"]["full"].values()))  # the same at every budget
        scores = [full["mAP"]] + [
            condition["methods"][m][b]["mAP"] for b in BUDGETS for m in methods]
        for title, score in zip(titles, scores, strict=False):
            means[title].append(score)
        cells = [f"{s:.3f}" for s in scores]
        if "dynmm" in methods:
            cells.append(paths_cell(condition["methods"]["dynmm"]["0.25"], modalities))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| **mean** | " + " | ".join(f"**{sum(v) / len(v):.3f}**" for v in means.values())
          + " | |")
    print()
    print("| method | budget | measured ms per frame (forward + decode), mean of conditions | "
          "expected from the cost table | allocator ms |")
    print("|---|---|---|---|---|")
    for method in ["full", *methods]:
        for budget in ([next(iter(conditions[0]["methods"]["full"]))] if method == "full"
                       else BUDGETS):
            results = [c["methods"][method][budget] for c in conditions]
            measured = sum(r["latency_ms"] for r in results) / len(results)
            expected = (f"{sum(r['predicted_ms'] for r in results) / len(results):.1f}"
                        if "predicted_ms" in results[0] else "-")
            allocator = sum(r["allocate_ms"] for r in results) / len(results)
            shown = "100%" if method == "full" else f"{100 * float(budget):g}%"
            print(f"| {method} | {shown} | {measured:.1f} | {expected} | "
                  f"{allocator:.2f} |")


if __name__ == "__main__":
    main()
