"""Numeric precision: choosing bf16 autocast or fp32, the same way for pretraining, fine-tuning and benchmarks.

``precision="auto"`` means bf16 autocast where the hardware computes bf16 natively (a CUDA GPU with bf16
support; a CPU with AVX512-BF16 or AMX), fp32 elsewhere; for fine-tuning, fp16 autocast with loss
scaling (:func:`grad_scaler`) on a CUDA GPU without bf16 (V100, T4), which pretraining does not use.
Autocast keeps fp32 master weights and fp32 optimizer state: only the matrix multiplies run in bf16, and
the losses are computed in fp32 (see ``modeling._masked_lm``). On a CPU without native bf16 the
emulation is slower than fp32, which is why "auto" does not pick it there.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Literal

import torch

from domainbert.errors import ConfigError

Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS = ("auto", "bf16", "fp32")
FINETUNE_PRECISIONS = ("auto", "bf16", "fp16", "fp32")
"""Fine-tuning and inference also take fp16 (autocast, and loss scaling while training)."""


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


def resolve_precision(precision: str, device: torch.device | str, fp16: bool = False) -> str:
    """``auto`` → ``bf16`` where native, else (``fp16`` allowed: fine-tuning) ``fp16`` on a CUDA GPU, else
    ``fp32``; ``bf16``/``fp16``/``fp32`` pass through (validated; ``fp16`` only where allowed)."""
    allowed = FINETUNE_PRECISIONS if fp16 else PRECISIONS
    if precision not in allowed:
        hint = ("" if fp16 or precision != "fp16"
                else " (fp16 is for fine-tuning and inference; pretrain in bf16 or fp32)")
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(allowed)}{hint}")
    if precision == "auto":
        if native_bf16(device):
            return "bf16"
        return "fp16" if fp16 and torch.device(device).type == "cuda" else "fp32"
    return precision


def autocast(precision: str, device: torch.device | str) -> ContextManager:
    """The context to run forward passes in: bf16 or fp16 autocast, or nothing for fp32."""
    device = torch.device(device)
    resolved = resolve_precision(precision, device, fp16=True)
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if resolved == "bf16" else torch.float16)


def grad_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 training (gradients that would underflow in fp16 are scaled up, then down
    before the step; steps whose gradients overflow are skipped); a scaler that does nothing otherwise."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=resolve_precision(precision, device, fp16=True) == "fp16")
