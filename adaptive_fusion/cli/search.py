"""Hardware-aware architecture search: NSGA-II over the supernet's subnets, mAP against latency.

Each subnet (genome: per modality depth, MLP width, heads, token grid; the fusion) is scored
with the supernet's shared weights on --scenes validation scenes (seeds from 1,000,000, rendered
once into --cache-dir) and priced with the unit cost table of `adaptive-fusion profile --units`
(the sum of its units, ms; energy too where the table has it). Writes into --out:
archive.json (every evaluated genome, after each generation: rerun the same command to resume),
pareto.json (the front: each member's genome, validation mAP, predicted and measured latency,
and with --test-scenes N its mAP on N test scenes; beside the full architecture and today's
detector measured the same way: its full model, and the equal split and the learned controller
at --reference-budgets) and pareto.png; with --pick-latency MS also the architecture file
of the most accurate member measured within MS, for fusion_node's `architecture` parameter,
`evaluate --architecture` and bench/bench_pipeline.py --architecture.

  adaptive-fusion profile --units --model runs/supernet/best.json --out runs/unit_costs.json
  adaptive-fusion search --supernet runs/supernet/best.json --costs runs/unit_costs.json
      --out runs/search --test-scenes 500 --pick-latency 40
"""

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--supernet", help="supernet checkpoint (.safetensors or .json); "
                                           "default: the shipped model (no cross-attention)")
    parser.add_argument("--costs", required=True,
                        help="unit cost table of `adaptive-fusion profile --units` on this model")
    parser.add_argument("--out", default="runs/search", help="output directory (resumes there)")
    parser.add_argument("--evaluations", type=int, default=300, help="genomes to evaluate")
    parser.add_argument("--population", type=int, default=30, help="NSGA-II population size")
    parser.add_argument("--scenes", type=int, default=150, help="validation scenes per genome")
    parser.add_argument("--cache-dir", default="runs/search-scenes",
                        help="where the validation scenes are rendered once")
    parser.add_argument("--latency-max", type=float, metavar="MS",
                        help="constraint: predicted latency at most MS")
    parser.add_argument("--pick-latency", type=float, metavar="MS",
                        help="write <out>/architecture_<MS>ms.json: the most accurate member "
                             "whose measured latency is at most MS")
    parser.add_argument("--seed", type=int, default=0, help="NSGA-II's seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--measure-scenes", type=int, default=4,
                        help="scenes the front's end-to-end latency is measured on")
    parser.add_argument("--measure-rounds", type=int, default=5, help="rounds over them")
    parser.add_argument("--reference-budgets", default="0.25,0.5", metavar="B,B",
                        help="compute budgets at which today's detector's equal split and "
                             "controller are measured beside the front ('' for none)")
    parser.add_argument("--reference-model", help="today's detector (default: the packaged "
                                                  "model), measured beside the front")
    parser.add_argument("--test-scenes", type=int, default=0, metavar="N",
                        help="score the front's members on N test scenes (evaluate's, seeds "
                             "from 2,000,000), never seen by the search (0 = not)")
    parser.add_argument("--json", action="store_true", help="print pareto.json's content")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from adaptive_fusion.lab.evaluation.runner import score_frames
    from adaptive_fusion.lab.search.costs import UnitCosts, UnitCostsError
    from adaptive_fusion.lab.search.nsga import (
        SearchError,
        SearchSetup,
        held_out_scenes,
        pick_member,
        search,
        validation_scenes,
    )
    from adaptive_fusion.lab.search.plot import plot_front
    from adaptive_fusion.lab.search.report import (
        reference_points,
        score_members_on_test,
        today_label,
    )
    from adaptive_fusion.lab.training.cache import CacheError
    from adaptive_fusion.model.architecture import Architecture
    from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, CheckpointError, load_checkpoint

    counts = {"--evaluations": args.evaluations, "--population": args.population,
              "--scenes": args.scenes, "--threads": args.threads,
              "--measure-scenes": args.measure_scenes, "--measure-rounds": args.measure_rounds}
    small = [name for name, value in counts.items() if value < 1]
    if small or args.population < 2:
        print(f"error: {', '.join(small) or '--population'} must be at least "
              f"{1 if small else 2}")
        return 2
    try:
        budgets = [float(b) for b in args.reference_budgets.split(",") if b.strip()]
    except ValueError:
        budgets = [-1.0]
    if args.test_scenes < 0 or not all(0 < b <= 1 for b in budgets):
        print("error: --test-scenes must be at least 0 and --reference-budgets fractions in "
              f"(0, 1], got {args.test_scenes} and {args.reference_budgets!r}")
        return 2
    torch.set_num_threads(args.threads)
    supernet = args.supernet or str(DEFAULT_MODEL)
    try:
        model, _ = load_checkpoint(supernet)
        costs = UnitCosts.load(args.costs, model.config)
        scenes = validation_scenes(args.scenes, args.cache_dir, progress=not args.json)
        # What the archive's mAPs depend on: a resume must match them (the costs and the
        # limit only price genomes, recomputed every run).
        settings = {"supernet": str(Path(supernet).resolve()), "scenes": args.scenes,
                    "seed": args.seed, "population": args.population}
        setup = SearchSetup(model.eval(), costs, scenes, args.latency_max, args.threads)
        today = (load_checkpoint(args.reference_model or DEFAULT_MODEL)[0].eval()
                 if budgets else None)

        def report(document: dict) -> None:
            if today is not None:
                document["references"].update(reference_points(
                    today, scenes, budgets, args.measure_scenes, args.measure_rounds,
                    args.threads, progress=not args.json))
            if args.test_scenes:
                test = held_out_scenes(args.test_scenes, args.cache_dir, progress=not args.json)
                score_members_on_test(
                    model, [*document["members"], document["references"]["full architecture"]],
                    test, progress=not args.json)
                if today is not None:
                    with torch.inference_mode():
                        document["references"][today_label(today)]["test_map"] = float(
                            score_frames(today, test).mean_ap)

        document = search(setup, args.out, settings, args.evaluations, args.population,
                          args.seed, args.measure_scenes, args.measure_rounds,
                          progress=not args.json, report=report)
    except (CheckpointError, UnitCostsError, SearchError, CacheError) as error:
        print(f"error: {error}")
        return 2
    out = Path(args.out)
    plot_front(document, out / "pareto.png")
    picked = None
    if args.pick_latency is not None:
        member = pick_member(document["members"], args.pick_latency)
        if member is None:
            fastest = min(m["measured_ms"] for m in document["members"])
            print(f"error: no member of the front is measured within {args.pick_latency} ms "
                  f"(the fastest takes {fastest:.1f} ms)")
            return 1
        picked = Architecture.from_dict(member["architecture"]).save(
            out / f"architecture_{args.pick_latency:g}ms.json")
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    full = document["references"]["full architecture"]
    print(f"{document['evaluated']} subnets evaluated on {args.scenes} validation scenes; "
          f"front of {len(document['members'])}:")
    print(f"{'val mAP':>8}{'test mAP':>9}{'pred ms':>9}{'meas ms':>9}  genome")
    for member in [*document["members"], full]:
        label = "  (full architecture)" if member is full else ""
        test = f"{member['test_map']:>9.3f}" if "test_map" in member else f"{'':>9}"
        print(f"{member['validation_map']:>8.3f}{test}{member['predicted_ms']:>9.1f}"
              f"{member['measured_ms']:>9.1f}  {member['genome']}{label}")
    for label, points in document["references"].items():
        if label != "full architecture":
            points = points if isinstance(points, list) else [points]
            print(f"{label}: " + ", ".join(f"{p['validation_map']:.3f} at {p['measured_ms']:.1f}"
                                           f" ms" for p in points))
    print(f"written: {out / 'pareto.json'}, {out / 'pareto.png'}, {out / 'archive.json'}")
    if picked:
        print(f"picked within {args.pick_latency:g} ms: {picked}")
    return 0
