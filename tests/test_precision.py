"""Precision selection: "auto" picks bf16 only where the hardware has native bf16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from domainbert.errors import ConfigError
from domainbert.train import precision


def test_auto_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    assert precision.resolve_precision("bf16", "cpu") == "bf16"


def test_autocast_runs_matmuls_in_bf16_and_fp32_leaves_them():
    a = torch.randn(4, 8)
    lin = torch.nn.Linear(8, 3)
    with precision.autocast("bf16", "cpu"):
        assert lin(a).dtype == torch.bfloat16
    with precision.autocast("fp32", "cpu"):
        assert lin(a).dtype == torch.float32
    assert lin.weight.dtype == torch.float32  # master weights stay fp32


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="fp16 is for fine-tuning"):
        precision.resolve_precision("fp16", "cpu")  # pretraining's
    with pytest.raises(ConfigError, match="fp8"):
        precision.resolve_precision("fp8", "cpu", fp16=True)


def test_fine_tuning_takes_fp16_on_a_gpu_without_bf16(monkeypatch):
    """A V100 or T4: "auto" fine-tunes in fp16 with loss scaling there; pretraining stays in fp32."""
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert precision.resolve_precision("auto", "cuda", fp16=True) == "fp16"
    assert precision.resolve_precision("auto", "cuda") == "fp32"
    assert precision.resolve_precision("auto", "cpu", fp16=True) == "fp32"  # fp16 on a CPU: only when asked
    assert precision.resolve_precision("fp16", "cpu", fp16=True) == "fp16"
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert precision.resolve_precision("auto", "cuda", fp16=True) == "bf16"
    a, lin = torch.randn(4, 8), torch.nn.Linear(8, 3)
    with precision.autocast("fp16", "cpu"):
        assert lin(a).dtype == torch.float16
    assert precision.grad_scaler("fp16", "cpu").is_enabled()
    assert not precision.grad_scaler("bf16", "cpu").is_enabled()


def test_auto_on_this_cpu_follows_what_the_kernel_reports():
    """Unmocked: "auto" picks bf16 exactly when the CPU flags in /proc/cpuinfo (the kernel's view, not
    torch's) include AVX512-BF16 or AMX-BF16, on whichever CPU runs the tests."""
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert precision.native_bf16("cpu") is native
    assert precision.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")


def test_compile_is_chosen_the_same_way_for_pretraining_and_fine_tuning():
    from domainbert.blurb.arguments import FinetuneArgs
    from domainbert.train.distributed import compiling

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert [compiling(m, cpu) for m in ("auto", "on", "off")] == [False, True, False]
    assert [compiling(m, gpu) for m in ("auto", "on", "off")] == [True, True, False]
    with pytest.raises(ConfigError, match="auto, on, off"):
        compiling("yes", cpu)
    with pytest.raises(ConfigError, match="compile must be auto, on or off"):
        FinetuneArgs(model=Path("m"), out=Path("o"), task="gad", compile="yes")
