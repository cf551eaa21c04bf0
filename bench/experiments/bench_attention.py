"""Attention at the detector's sizes: torch's fused kernel (scaled_dot_product_attention) against
the same attention written out as two matmuls and a softmax (model/blocks.py picks per case).

Cases: a training step's forward and backward (batch 16) in float32 and under bfloat16 autocast,
and inference at batch size 1 without autograd. The two implementations run interleaved, so the
ratio is measured side by side.

    .venv/bin/python bench/experiments/bench_attention.py [--runs 30] [--threads 2]
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from adaptive_fusion.model.blocks import written_out_attention
from adaptive_fusion.model.config import ModelConfig

IMPLEMENTATIONS = {"fused": F.scaled_dot_product_attention, "written out": written_out_attention}


def time_case(implementation, shape, train: bool, bf16: bool) -> float:
    """Seconds for one call (forward and backward when training)."""
    q, k, v = (torch.randn(shape, requires_grad=train) for _ in range(3))
    start = time.perf_counter()
    with torch.set_grad_enabled(train), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        out = implementation(*(t.to(torch.bfloat16) if bf16 else t for t in (q, k, v)))
    if train:
        out.float().sum().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = ModelConfig()
    head_dim = config.dim // config.heads
    cases = {
        "train, batch 16, float32": ((16, config.heads, config.tokens, head_dim), True, False),
        "train, batch 16, bfloat16": ((16, config.heads, config.tokens, head_dim), True, True),
        "inference, batch 1, float32": ((1, config.heads, config.tokens, head_dim), False, False),
    }
    print(f"{config.tokens} tokens, {config.heads} heads of {head_dim}; {args.threads} threads, "
          f"median of {args.runs} interleaved runs")
    print(f"{'case':<30} {'fused ms':>9} {'written out ms':>15} {'written out / fused':>20}")
    for name, (shape, train, bf16) in cases.items():
        times = {label: [] for label in IMPLEMENTATIONS}
        for _ in range(args.runs + 3):
            for label, implementation in IMPLEMENTATIONS.items():
                times[label].append(time_case(implementation, shape, train, bf16))
        fused, written = (np.median(times[label][3:]) * 1e3 for label in IMPLEMENTATIONS)
        print(f"{name:<30} {fused:>9.2f} {written:>15.2f} {written / fused:>20.2f}")


if __name__ == "__main__":
    main()
