"""The README's controller table from a budget sweep's JSON (`adaptive-fusion evaluate
--methods ... --json`): mAP per condition for each method at 25% and 50% of the blocks' compute,
and the controller's mean blocks per modality there.

    .venv/bin/python scripts/sweep_table.py docs/controller_sweep.json
"""

import json
import sys

COLUMNS = [("full depth", "full", "1"), ("equal split 25%", "equal_split", "0.25"),
           ("random 25%", "random", "0.25"),
           ("modality selection 25%", "modality_selection", "0.25"),
           ("controller 25%", "controller", "0.25"), ("blocks", "controller", "0.25"),
           ("equal split 50%", "equal_split", "0.5"), ("controller 50%", "controller", "0.5"),
           ("blocks", "controller", "0.5")]


def cell(methods: dict, title: str, method: str, budget: str) -> str:
    result = methods[method][budget]
    if title == "blocks":
        return " / ".join(f"{blocks:.1f}" for blocks in result["mean_blocks"].values())
    text = f"{result['mAP']:.3f}"
    return f"**{text}**" if method == "controller" and budget == "0.25" else text


def main() -> None:
    sweep = json.loads(open(sys.argv[1]).read())
    titles = [("controller blocks at 25% (camera/depth/lidar)" if t == "blocks" and b == "0.25"
               else "controller blocks at 50%" if t == "blocks" else t) for t, _, b in COLUMNS]
    print("| condition (severity 1) | " + " | ".join(titles) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for condition in sweep["conditions"].values():
        name = condition["label"].split("@")[0] + (" (held out)" if condition["held_out"] else "")
        cells = [cell(condition["methods"], *column) for column in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
