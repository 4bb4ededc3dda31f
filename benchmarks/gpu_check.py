#!/usr/bin/env python3
"""Checks of the CUDA path, for a machine with a GPU: bf16, SDPA kernels, NCCL + DDP, parity.

Each check prints one PASS/FAIL row with what it measured; a JSON copy goes to ``--json``.

* ``parity-fp32``: domainbert's ``BertForPreTraining`` against transformers' (same weights, base
  shape, a batch with padding) on the GPU in fp32 (TF32 off): MLM and NSP logits at real positions.
* ``parity-bf16``: the same two models under bf16 autocast: the losses agree within bf16's error.
* ``sdpa-flash`` / ``sdpa-efficient``: a forward and backward of the bf16 encoder with SDPA
  restricted to the flash kernel (no padding: the mask is dropped) and to the memory-efficient
  kernel (padding mask); either raises if that kernel cannot run the call.
* ``sdpa-default``: which attention kernels the profiler sees when SDPA picks for itself.
* ``nccl-ddp``: a one-process NCCL group, an all-reduce, and one DDP training step of the model.
* ``bf16-learns``: 30 AdamW steps in bf16 autocast on one fixed batch bring the loss down.
* ``unpadded-bf16``: the unpadded encoder path (``varlen_attn``) against the padded one in bf16.
* ``no-sync-step``: a training step with the host-found Packing and MLM positions runs under
  ``torch.cuda.set_sync_debug_mode("error")`` (no GPU→CPU wait), padded and unpadded.

    python benchmarks/gpu_check.py --json gpu_check.json
    python benchmarks/gpu_check.py --device cpu   # the same checks that make sense without a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any, Callable

import torch
import transformers

from domainbert.model import modeling
from domainbert.model.configuration import BertConfig
from domainbert.model.modeling import BertForPreTraining
from domainbert.train.precision import autocast

transformers.logging.set_verbosity_error()


def padded_batch(config: BertConfig, batch: int, seq: int, device: torch.device, pad: bool = True,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids with realistic padding (row lengths 32..seq), 15% of real positions labelled."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, config.vocab_size, (batch, seq), generator=g)
    lengths = torch.randint(32, seq + 1, (batch,), generator=g) if pad else torch.full((batch,), seq)
    lengths[0] = seq  # the longest row sets the width, as after dynamic padding
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    ids = ids * mask
    types = torch.zeros(batch, seq, dtype=torch.long)
    types[:, seq // 2:] = 1
    labels = torch.full((batch, seq), -100)
    for row in range(batch):
        n = int(lengths[row])
        pos = torch.randperm(n - 2, generator=g)[: max(1, round(0.15 * n))] + 1
        labels[row, pos] = ids[row, pos]
    out = {"input_ids": ids, "token_type_ids": types * mask, "attention_mask": mask, "labels": labels,
           "next_sentence_label": torch.randint(0, 2, (batch,), generator=g)}
    return {k: v.to(device) for k, v in out.items()}


def twin_models(config: BertConfig, device: torch.device) -> tuple[torch.nn.Module, BertForPreTraining]:
    """transformers' BertForPreTraining (SDPA attention) and domainbert's, with the same weights."""
    torch.manual_seed(0)
    hf = transformers.BertForPreTraining(transformers.BertConfig(**config.to_dict(), attn_implementation="sdpa"))
    ours = BertForPreTraining(config)
    missing, _ = ours.load_state_dict(hf.state_dict(), strict=False)
    if missing:
        raise AssertionError(f"weights transformers has no value for: {missing}")
    return hf.to(device).eval(), ours.to(device).eval()


def check_parity_fp32(device: torch.device) -> str:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = BertConfig.preset("base")
    hf, ours = twin_models(config, device)
    batch = padded_batch(config, 8, 128, device)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        a = hf(**{k: v for k, v in batch.items() if k not in ("labels", "next_sentence_label")})
        b = ours(**{k: v for k, v in batch.items() if k not in ("labels", "next_sentence_label")})
    mlm = (a.prediction_logits[real] - b.prediction_logits[real]).abs().max().item()
    nsp = (a.seq_relationship_logits - b.seq_relationship_logits).abs().max().item()
    if max(mlm, nsp) > 1e-3:
        raise AssertionError(f"max |diff| MLM {mlm:.2e}, NSP {nsp:.2e} (limit 1e-3)")
    return f"base, 8x128 with padding: max |diff| MLM logits {mlm:.1e}, NSP logits {nsp:.1e}"


def check_parity_bf16(device: torch.device) -> str:
    config = BertConfig.preset("base")
    hf, ours = twin_models(config, device)
    batch = padded_batch(config, 8, 128, device)
    with torch.no_grad():
        fp32 = ours(**batch).loss.item()
        with autocast("bf16", device):
            a = hf(**batch).loss.item()
            b = ours(**batch).loss.item()
    rel = abs(a - b) / abs(a)
    if rel > 2e-2:
        raise AssertionError(f"bf16 losses transformers {a:.4f} vs domainbert {b:.4f} (rel {rel:.1e})")
    return f"bf16 loss transformers {a:.4f}, domainbert {b:.4f} (rel diff {rel:.1e}); fp32 {fp32:.4f}"


def _encoder_step(device: torch.device, pad: bool) -> None:
    config = BertConfig.preset("base")
    model = BertForPreTraining(config).to(device).train()
    batch = padded_batch(config, 16, 128, device, pad=pad)
    with autocast("bf16", device):
        loss = model(**batch).loss
    loss.backward()
    torch.cuda.synchronize(device) if device.type == "cuda" else None


def check_sdpa(device: torch.device, backend: str) -> str:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernel = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]
    with sdpa_kernel([kernel]):
        _encoder_step(device, pad=backend != "flash")
    what = "no padding (mask dropped)" if backend == "flash" else "padding mask"
    return f"bf16 base forward+backward, {what}, SDPA restricted to {kernel.name}: ran"


def check_sdpa_default(device: torch.device) -> str:
    from torch.profiler import ProfilerActivity, profile

    found = {}
    for pad in (False, True):
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
            _encoder_step(device, pad)
        names = {e.key for e in prof.key_averages()}
        picks = sorted(n for n in names if any(s in n.lower() for s in ("flash", "fmha", "efficient_attention",
                                                                        "mem_eff", "cutlass")))
        found["padding" if pad else "no padding"] = picks[:4] or ["(no fused attention kernel seen)"]
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in found.items())


def check_nccl_ddp(device: torch.device) -> str:
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        x = torch.ones(4, device=device)
        dist.all_reduce(x)
        config = BertConfig.preset("small")
        model = torch.nn.parallel.DistributedDataParallel(BertForPreTraining(config).to(device))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
        batch = padded_batch(config, 8, 128, device)
        with autocast("auto", device):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        version = ".".join(map(str, torch.cuda.nccl.version())) if device.type == "cuda" else "-"
        return f"{backend} (NCCL {version}): all-reduce {x.sum().item():.0f}/4, one DDP step, loss {loss.item():.3f}"
    finally:
        dist.destroy_process_group()


def check_unpadded_bf16(device: torch.device) -> str:
    """The unpadded path (varlen_attn on a GPU, attention dropout off) against the padded one, bf16."""
    from domainbert.model.modeling import Packing

    config = BertConfig.preset("base", attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = BertForPreTraining(config).to(device).eval()
    batch = padded_batch(config, 16, 128, device)
    packing = Packing.from_mask(batch["attention_mask"].cpu()).to(device)
    with torch.no_grad(), autocast("bf16", device):
        padded = model.bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
        packed = model.bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                            packing=packing).last_hidden_state
    real = batch["attention_mask"].bool()
    diff = (packed[real].float() - padded[real].float()).abs()
    scale = padded[real].float().abs().mean()
    if not diff.mean() < 0.02 * scale:
        raise AssertionError(f"mean |unpadded - padded| {diff.mean():.4f} vs mean |h| {scale:.4f}")
    return (f"base, 16x128 with padding ({int(real.sum())} real tokens): mean |diff| {diff.mean():.4f}, max "
            f"{diff.max():.3f}, mean |h| {scale:.3f}; varlen_attn used: {modeling.varlen_attn is not None}")


def second_step_without_sync(device: torch.device, step: Callable[[], None]) -> None:
    """Run ``step`` twice: the first allocates; the second runs under torch.cuda.set_sync_debug_mode
    ("error"), where any GPU→CPU wait raises."""
    for checked in (False, True):
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error" if checked else "default")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")


def check_no_sync_step(device: torch.device) -> str:
    """A training step (forward, backward, clip, fused AdamW) with the host-found Packing and MLM
    positions runs under torch.cuda.set_sync_debug_mode("error"): any GPU→CPU wait raises."""
    from domainbert.model.modeling import Packing

    config = BertConfig.preset("small", attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = BertForPreTraining(config).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    host = {k: v.cpu() for k, v in padded_batch(config, 32, 128, device).items()}
    results = []
    for unpad in (False, True):
        batch = {k: v.pin_memory().to(device, non_blocking=True) for k, v in host.items()}
        batch["mlm_positions"] = (host["labels"].reshape(-1) != -100).nonzero().squeeze(1).to(device)
        if unpad:
            batch["packing"] = Packing.from_mask(host["attention_mask"]).to(device, non_blocking=True)

        def pretraining_step() -> None:
            with autocast("bf16", device):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
            opt.step()
            opt.zero_grad(set_to_none=True)

        second_step_without_sync(device, pretraining_step)
        results.append(f"{'unpadded' if unpad else 'padded'}: no sync")
    return "; ".join(results)


def check_no_sync_finetune_step(device: torch.device) -> str:
    """Fine-tuning's step as ``finetune`` runs it (``collate`` on the host, then ``train_step``) on a
    token-classification batch with padding, padded and unpadded, under sync debug mode "error"."""
    from domainbert.blurb.featurize import Feature, collate
    from domainbert.blurb.training import train_step
    from domainbert.model.modeling import BertForTokenClassification

    config = BertConfig.preset("small", attention_probs_dropout_prob=0.0).with_labels(["O", "B", "I"])
    torch.manual_seed(0)
    model = BertForTokenClassification(config).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    g = torch.Generator().manual_seed(0)
    features = []
    for i in range(32):
        n = int(torch.randint(8, 128, (1,), generator=g))
        features.append(Feature(torch.randint(5, config.vocab_size, (n,), generator=g).tolist(), [0] * n,
                                torch.randint(0, 3, (n,), generator=g).tolist(), i))
    results = []
    for unpad in (False, True):
        second_step_without_sync(device, lambda: train_step(model, opt, [collate(features, 0, device, unpad)],
                                                            1e-4, "bf16", device))
        results.append(f"{'unpadded' if unpad else 'padded'}: no sync")
    return "; ".join(results)


def check_bf16_learns(device: torch.device) -> str:
    config = BertConfig.preset("small")
    torch.manual_seed(0)
    model = BertForPreTraining(config).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, fused=device.type == "cuda")
    batch = padded_batch(config, 16, 128, device)
    losses = []
    for _ in range(30):
        with autocast("bf16", device):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    if not losses[-1] < 0.5 * losses[0]:
        raise AssertionError(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} after 30 steps")
    return f"small, one batch 16x128: loss {losses[0]:.3f} -> {losses[-1]:.3f} in 30 bf16 steps"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    env: dict[str, Any] = {"torch": torch.__version__, "transformers": transformers.__version__,
                           "python": sys.version.split()[0]}
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("no CUDA GPU is visible to torch here: run with --device cpu", file=sys.stderr)
            return 2
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                   capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported(),
                   flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
                   mem_efficient_sdp=torch.backends.cuda.mem_efficient_sdp_enabled())
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    checks: list[tuple[str, Callable[[torch.device], str]]] = [
        ("parity-fp32", check_parity_fp32), ("parity-bf16", check_parity_bf16),
        ("nccl-ddp", check_nccl_ddp), ("bf16-learns", check_bf16_learns)]
    if device.type == "cuda":
        checks[2:2] = [("sdpa-flash", lambda d: check_sdpa(d, "flash")),
                       ("sdpa-efficient", lambda d: check_sdpa(d, "efficient")),
                       ("sdpa-default", check_sdpa_default), ("unpadded-bf16", check_unpadded_bf16),
                       ("no-sync-step", check_no_sync_step), ("no-sync-finetune", check_no_sync_finetune_step)]
    results = []
    for name, fn in checks:
        t = time.perf_counter()
        try:
            detail, ok = fn(device), True
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the next check runs
            detail, ok = f"{type(e).__name__}: {e}".splitlines()[0][:300], False
            traceback.print_exc()
        results.append({"check": name, "ok": ok, "detail": detail, "seconds": round(time.perf_counter() - t, 1)})
        print(f"{'PASS' if ok else 'FAIL'} {name:15s} {results[-1]['seconds']:6.1f}s  {detail}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "checks": results}, f, indent=2)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
