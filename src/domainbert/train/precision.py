"""Numeric precision: choosing bf16 autocast or fp32, the same way for pretraining, fine-tuning and benchmarks.

``precision="auto"`` means bf16 autocast where the hardware computes bf16 natively (a CUDA GPU with
bf16 support; a CPU with AVX512-BF16 or AMX), fp32 elsewhere. Autocast keeps fp32 master weights and
fp32 optimizer state: only the matrix multiplies run in bf16, and the losses are computed in fp32
(see ``modeling._masked_lm``). On a CPU without native bf16 the emulation is slower than fp32, which
is why "auto" does not pick it there.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Literal

import torch

from domainbert.errors import ConfigError

Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS = ("auto", "bf16", "fp32")


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 matrix multiplies natively (fast), not by emulation."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(cpu, name, lambda: False)() for name in checks)
    return False


def resolve_precision(precision: Precision | str, device: torch.device | str) -> Literal["bf16", "fp32"]:
    """``auto`` → ``bf16`` where native, else ``fp32``; ``bf16``/``fp32`` pass through (validated)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision  # type: ignore[return-value]


def autocast(precision: Precision | str, device: torch.device | str) -> ContextManager:
    """The context to run forward passes in: bf16 autocast, or nothing for fp32."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
