"""Pre-norm transformer block (nanoGPT style, bidirectional): the unit a layer allocation skips."""

import torch
import torch.nn.functional as F
from torch import nn


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention over (batch, heads, tokens, head_dim): written out while autograd
    records in bfloat16 on a CPU (training under autocast, or a controller trained through the
    frozen detector), torch's fused kernel (scaled_dot_product_attention) otherwise. At this
    model's sizes (300 tokens, head dim 32, batch 16) the fused CPU kernel's bfloat16 forward and
    backward took about twice as long, half of a training step, which went from 0.94 to 0.72 s;
    in float32, and at inference (batch 1, no autograd), the fused kernel is the faster
    (bench/experiments/bench_attention.py measures each case), as it is on a GPU."""
    if torch.is_grad_enabled() and q.device.type == "cpu" and q.dtype == torch.bfloat16:
        return written_out_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def written_out_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """scaled_dot_product_attention as two matmuls and a softmax."""
    weights = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
    return weights.softmax(-1).to(v.dtype) @ v


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, dim // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (batch, heads, tokens, head_dim)
        out = attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: int):
        super().__init__()
        self.fc = nn.Linear(dim, ratio * dim)
        self.proj = nn.Linear(ratio * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
