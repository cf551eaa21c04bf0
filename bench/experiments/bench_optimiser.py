"""AdamW's step on the shipped detector's parameters, three ways: torch's CPU default (a Python
loop over the parameter tensors), `foreach` (a few ops over lists of tensors) and `fused` (one
kernel). On CPU torch picks the loop unless told otherwise, and training/trainer.make_optimiser
takes that default: py-spy had the loop at about 5% of a batch-8 training step. The fused kernel
rounds differently, so a switch changes what a recipe trains and waits for the next model. The
three run interleaved, so the ratios are measured side by side.

    .venv/bin/python bench/experiments/bench_optimiser.py [--config config/training/default.yaml]
        [--steps 50] [--threads 2]
"""

import argparse
import time

import numpy as np
import torch

from adaptive_fusion.lab.training.config import load_config
from adaptive_fusion.model.detector import AdaptiveFusionDetector

VARIANTS = {"for-loop (CPU default)": {"foreach": False},
            "foreach": {"foreach": True},
            "fused": {"fused": True}}


def optimiser(variant: dict, config) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = AdaptiveFusionDetector(config.model_config())
    parameters = list(model.parameters())
    for p in parameters:
        p.grad = torch.randn_like(p)
    opt = config.optimiser
    return torch.optim.AdamW(parameters, lr=opt.lr, weight_decay=opt.weight_decay,
                             betas=tuple(opt.betas), **variant), parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/training/default.yaml")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    optimisers = {name: optimiser(variant, config) for name, variant in VARIANTS.items()}
    count = sum(p.numel() for p in next(iter(optimisers.values()))[1])
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for step in range(args.steps + 1):
        for name, (opt, _) in optimisers.items():
            start = time.perf_counter()
            opt.step()
            if step:  # the first step allocates the moment buffers
                times[name].append(time.perf_counter() - start)
    final = {name: torch.cat([p.detach().flatten() for p in params])
             for name, (_, params) in optimisers.items()}
    reference = final[next(iter(VARIANTS))]
    base = np.median(times[next(iter(VARIANTS))])
    print(f"AdamW over {count / 1e6:.2f} M parameters, {args.threads} threads, "
          f"{args.steps} steps each, interleaved")
    print(f"{'variant':<24} {'ms/step':>8} {'x for-loop':>10} {'max |diff| after':>17}")
    for name, values in times.items():
        difference = (final[name] - reference).abs().max().item()
        print(f"{name:<24} {1000 * np.median(values):>8.2f} {np.median(values) / base:>10.2f} "
              f"{difference:>17.2e}")


if __name__ == "__main__":
    main()
