"""Whether training's forward passes run under bfloat16 autocast: `bf16: auto` in a config (the
default) turns it on only where the hardware computes bfloat16 natively.

On a CPU without AVX512-BF16 or AMX, torch emulates bfloat16 and autocast makes training slower,
not faster: on the 2-core AVX-512 machine of this project without them, a detector training
step at batch 16 took 3.4 s under autocast against 1.2 s in float32 (the earlier machines had
native bfloat16 and gained about 30%). torch offers no query for this (its mkldnn check answers
yes for any AVX-512 CPU), so the CPU flags are read from /proc/cpuinfo; where that file does not
exist the answer is no, the safe side.
"""

from __future__ import annotations

from pathlib import Path

import torch

NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}
CPUINFO = Path("/proc/cpuinfo")


def check_bf16_setting(value: object, where: str) -> None:
    if not (isinstance(value, bool) or value == "auto"):
        raise ValueError(f"{where}: bf16 must be true, false or auto, got {value!r}")


def cpu_has_native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags")
             for flag in line.split(":", 1)[1].split()}
    return bool(flags & NATIVE_BF16_FLAGS)


def use_bf16(setting: bool | str, device: torch.device) -> bool:
    """A config's bf16 setting for `device`: true and false as given, "auto" by the hardware."""
    if setting != "auto":
        return bool(setting)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()
