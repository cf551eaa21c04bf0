"""FLOPs counted by torch's FlopCounterMode, attention included.

On a CPU, F.scaled_dot_product_attention runs as the op
aten._scaled_dot_product_flash_attention_for_cpu (FlopCounterMode decomposes
aten.scaled_dot_product_attention into it), for which torch registers
no FLOP formula (it has them for the CUDA flash, efficient and cuDNN kernels only): every
attention counted 0, about 46 MFLOPs of each default block. Registered here with torch's own
formula for those kernels (two matmuls per head: Q K^T and the weighted sum of V), so the
package's counts are complete. Importing this module registers it; count_flops is the package's
one way to count."""

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count


@register_flop_formula([torch.ops.aten.scaled_dot_product_attention,
                        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu])
def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(function: Callable[[], object]) -> int:
    """Total FLOPs of everything `function()` runs in this thread."""
    with FlopCounterMode(display=False) as counter:
        function()
    return int(counter.get_total_flops())
