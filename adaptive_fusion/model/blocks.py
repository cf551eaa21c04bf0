"""Pre-norm transformer block (nanoGPT style, bidirectional): the unit a layer allocation skips.

Elastic, as in once-for-all networks: a block can run its first `heads` attention heads and the
first `hidden` units of its MLP by slicing its full weights (model/architecture.py), which
computes proportionally less. At full size the slices are the whole weights, the same tensors,
so the outputs are those of the plain layers bit for bit."""

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

    def forward(self, x: torch.Tensor, heads: int | None = None) -> torch.Tensor:
        """Attention with the first `heads` heads (default all)."""
        batch, tokens, dim = x.shape
        heads = self.heads if heads is None else heads
        head_dim = dim // self.heads
        inner = heads * head_dim
        # The rows of q, k and v that make the first heads, and the columns of proj they feed.
        weight = self.qkv.weight.view(3, dim, dim)[:, :inner].reshape(3 * inner, dim)
        bias = self.qkv.bias.view(3, dim)[:, :inner].reshape(3 * inner)
        q, k, v = F.linear(x, weight, bias).view(batch, tokens, 3, heads, head_dim).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (batch, heads, tokens, head_dim)
        out = attention(q, k, v).transpose(1, 2).reshape(batch, tokens, inner)
        return F.linear(out, self.proj.weight[:, :inner], self.proj.bias)


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: int):
        super().__init__()
        self.fc = nn.Linear(dim, ratio * dim)
        self.proj = nn.Linear(ratio * dim, dim)

    def forward(self, x: torch.Tensor, hidden: int | None = None) -> torch.Tensor:
        """The MLP through its first `hidden` hidden units (default all)."""
        hidden = self.fc.out_features if hidden is None else hidden
        x = F.gelu(F.linear(x, self.fc.weight[:hidden], self.fc.bias[:hidden]))
        return F.linear(x, self.proj.weight[:, :hidden], self.proj.bias)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, heads: int | None = None,
                hidden: int | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), heads)
        return x + self.mlp(self.norm2(x), hidden)
