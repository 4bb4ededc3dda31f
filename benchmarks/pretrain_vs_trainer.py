#!/usr/bin/env python3
"""Pretraining, domainbert beside transformers' ``Trainer``, on the same prepared PubMed data.

Two measurements, each running both systems in the same process, on the same samples:

``throughput``: tokens/s of whole optimizer steps (data loading included; median over rounds in
which the systems alternate, the first 2 steps of every run untimed) for the ``small`` and
``base`` shapes at sequence length 128 and the same global batch, AdamW, weight decay 0.01, warmup
and learning rate. domainbert runs its default (``domainbert.train.pretrain.fit``: bf16 autocast where
native, MLM head at the masked positions, dynamic padding); ``BertForPreTraining`` runs under the
``Trainer`` with its defaults (fp32) and, as a second row, with ``bf16=True``. Tokens/s counts the
real (non-padding) tokens: global batch x the data's mean real length / median step time. "share"
is the useful dense FLOPs (MLM head at masked positions) per second over the matmul ceiling
measured in the run for the dtype used.

``quality``: the same wall-clock budget for each (default 20 minutes on the whole machine), the
``small`` shape and ``QUALITY_ARGS`` (what the ``small-cpu`` recipe was when the recorded table was
taken: batch 128 as 4 x 32, peak 1e-3, a 1,300-step schedule, dropout 0.1); held-out MLM loss and
accuracy on data prepared from a file kept out of training (``medline16n0902.txt``), measured
every ``--eval-every`` seconds of training time (evaluation time is not charged to the budget).
Writes a PNG of both curves.

    .venv/bin/python benchmarks/pretrain_vs_trainer.py throughput
    .venv/bin/python benchmarks/pretrain_vs_trainer.py quality --minutes 20 --plot benchmarks/pretrain_quality.png

The prepared data is cached in ``--work`` (default ``benchmarks/.work``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_step import dense_flops_per_token, matmul_ceiling  # noqa: E402

from domainbert.cli import main as cli  # noqa: E402
from domainbert.data.loader import PretrainingDataset  # noqa: E402
from domainbert.model.configuration import BertConfig  # noqa: E402
from domainbert.model.modeling import BertForPreTraining  # noqa: E402
from domainbert.train.precision import autocast, resolve_precision  # noqa: E402
from domainbert.train.pretrain import PretrainArgs, fit  # noqa: E402

transformers.logging.set_verbosity_error()
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DOMAINBERT_SHARED_DATA", REPO.parent / "shared" / "data"))
HELD_OUT = "medline16n0902.txt"


def prepare(work: Path) -> tuple[Path, Path]:
    """A 30,522-token in-domain vocabulary and the corpus prepared at length 128 (train, held out)."""
    corpus = SHARED / "pubmed_corpus"
    train_files = [str(p) for p in sorted(corpus.glob("*.txt")) if p.name != HELD_OUT]
    if not (work / "vocab" / "vocab.txt").is_file():
        assert cli(["vocab", "build", "--corpus", *train_files, "--vocab-size", "30522",
                    "--out", str(work / "vocab")]) == 0
    for name, files in (("train", train_files), ("heldout", [str(corpus / HELD_OUT)])):
        if not (work / name / "manifest.json").is_file():
            assert cli(["data", "prepare", "--corpus", *files, "--vocab", str(work / "vocab"),
                        "--out", str(work / name),
                        "--dupe-factor", "2", "--min-words", "0", "--workers", "2", "--quiet"]) == 0
    return work / "train", work / "heldout"


class TorchSamples(torch.utils.data.Dataset):
    """The prepared samples as a map-style dataset for the Trainer (padded to max length, as stored)."""

    def __init__(self, data: Path) -> None:
        self.ds = PretrainingDataset(data)

    def __len__(self) -> int:
        return self.ds.num_samples

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v) for k, v in self.ds.sample(i).items()}


def mean_real_length(data: Path) -> float:
    """Mean real (non-padding) tokens per sample, over up to 2,000 evenly spread samples."""
    ds = PretrainingDataset(data)
    every = max(1, ds.num_samples // 2000)
    return float(np.mean([int(ds.sample(i)["attention_mask"].sum()) for i in range(0, ds.num_samples, every)]))


def trainer_args(out: str, args: PretrainArgs, bf16: bool, max_steps: int) -> transformers.TrainingArguments:
    return transformers.TrainingArguments(
        output_dir=out, per_device_train_batch_size=args.micro_batch_size,
        gradient_accumulation_steps=args.accumulation, max_steps=max_steps, learning_rate=args.learning_rate,
        warmup_steps=int(round(args.warmup * args.max_steps)) if args.warmup < 1 else int(args.warmup),
        weight_decay=args.weight_decay, adam_epsilon=args.eps, max_grad_norm=args.max_grad_norm, bf16=bf16,
        lr_scheduler_type="linear", logging_steps=10**9, save_strategy="no", report_to=[], seed=args.seed,
        dataloader_num_workers=0, disable_tqdm=True, use_cpu=True)


class StepClock(transformers.TrainerCallback):
    """Step end times, and an optional hook (evaluation) whose time is not charged."""

    def __init__(self, hook=None, budget_s: float | None = None) -> None:
        self.times: list[float] = []
        self.hook, self.budget_s, self.charged, self.last = hook, budget_s, 0.0, None

    def on_step_begin(self, targs, state, control, **kw):
        if self.last is None:
            self.last = time.perf_counter()

    def on_step_end(self, targs, state, control, **kw):
        now = time.perf_counter()
        self.charged += now - self.last
        self.times.append(now - self.last)
        if self.hook is not None:
            self.hook(state.global_step, self.charged, kw["model"])
        self.last = time.perf_counter()
        if self.budget_s is not None and self.charged >= self.budget_s:
            control.should_training_stop = True


def run_trainer(model, data: Path, args: PretrainArgs, bf16: bool, max_steps: int, clock: StepClock) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = transformers.Trainer(model=model, args=trainer_args(tmp, args, bf16, max_steps),
                                       train_dataset=TorchSamples(data), callbacks=[clock])
        trainer.train()


def throughput(work: Path, steps: int, rounds: int) -> None:
    train, _ = prepare(work)
    ceilings = {"fp32": matmul_ceiling(torch.float32), "bf16": matmul_ceiling(torch.bfloat16)}
    real_len = mean_real_length(train)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads; "
          f"matmul ceiling fp32 {ceilings['fp32']:.0f}, bf16 {ceilings['bf16']:.0f} GFLOP/s; "
          f"mean real length {real_len:.1f} of 128")
    rows = []
    for shape, batch in (("small", 32), ("base", 8)):
        config = BertConfig.preset(shape, vocab_size=30522)
        args = PretrainArgs(max_steps=1000, global_batch_size=batch, micro_batch_size=batch, learning_rate=1e-4,
                            warmup=0.1, precision="auto", save_every=10**6, log_every=10**6)
        torch.manual_seed(0)
        ours = BertForPreTraining(config)
        torch.manual_seed(0)
        theirs = {bf16: transformers.BertForPreTraining(transformers.BertConfig(**config.to_dict()))
                  for bf16 in (False, True)}
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):  # the systems alternate, so that machine noise hits them alike
            with tempfile.TemporaryDirectory() as tmp:
                hist = fit(ours, PretrainingDataset(train), args, Path(tmp), stop_after=steps + 2, progress=False)
            times.setdefault(("domainbert", resolve_precision("auto", "cpu")), []).extend(
                m.step_seconds for m in hist[2:])
            for bf16, model in theirs.items():
                clock = StepClock()
                run_trainer(model, train, args, bf16, steps + 2, clock)
                times.setdefault(("transformers Trainer", "bf16" if bf16 else "fp32"), []).extend(clock.times[2:])
        results = {key: statistics.median(values) for key, values in times.items()}
        base_time = results[("transformers Trainer", "fp32")]
        for (system, dtype), t in results.items():
            tps = batch * real_len / t
            gflops = dense_flops_per_token(config, 128, 19 / 128, True) * tps / 1e9
            rows.append((shape, batch, system, dtype, tps, base_time / t, gflops / ceilings[dtype]))
    print("\n| config | global batch | system | dtype | tokens/s | vs Trainer fp32 | share of ceiling |")
    print("|---|---|---|---|---:|---:|---:|")
    for shape, batch, system, dtype, tps, ratio, share in rows:
        print(f"| {shape} | {batch}x128 | {system} | {dtype} | {tps:,.0f} | {ratio:.2f}x | {share:.0%} |")


@torch.no_grad()
def heldout_scores(model, data: Path, batches: int, hf: bool) -> tuple[float, float]:
    """Held-out MLM loss and accuracy on the first ``batches`` x 32 samples (fixed order)."""
    model.eval()
    it = PretrainingDataset(data, shuffle=False).micro_batches(32, 32, 0, 0, 1)
    loss_sum = hits = n = 0.0
    for _ in range(batches):
        b = next(it)
        sel = b["labels"] != -100
        with autocast("auto", "cpu"):
            if hf:
                logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                               token_type_ids=b["token_type_ids"]).prediction_logits[sel]
            else:
                logits = model(**{k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                               labels=b["labels"]).prediction_logits
        loss_sum += torch.nn.functional.cross_entropy(logits.float(), b["labels"][sel], reduction="sum").item()
        hits += (logits.argmax(-1) == b["labels"][sel]).sum().item()
        n += sel.sum().item()
    model.train()
    return loss_sum / n, hits / n


#: The settings of the recorded time-to-quality table (RESULTS.md), pinned here: they were the
#: ``small-cpu`` recipe's then, and that recipe has since become the ``mini`` shape's hour. Both
#: systems build their model from plain BERT init, which is what these settings were measured with.
QUALITY_ARGS = PretrainArgs(max_steps=1300, global_batch_size=128, micro_batch_size=32, optimizer="adamw",
                            learning_rate=1e-3, warmup=0.06, weight_decay=0.01, max_grad_norm=1.0, precision="auto",
                            save_every=200, keep_last=2, log_every=10, eval_every=200, eval_batches=10, seed=0)


def quality(work: Path, minutes: float, eval_every_s: float, eval_batches: int, plot: Path | None) -> None:
    train, heldout = prepare(work)
    args = QUALITY_ARGS
    budget = minutes * 60
    config = BertConfig.preset("small", vocab_size=30522)
    curves: dict[str, list[tuple[float, int, float, float]]] = {}

    def tracker(name: str, model, hf: bool):
        curve = curves.setdefault(name, [])
        state = {"charged": 0.0, "last": time.perf_counter(), "next": 0.0}

        def at_step(step: int, charged: float) -> bool:
            if charged >= state["next"] or charged >= budget:
                loss, acc = heldout_scores(model, heldout, eval_batches, hf)
                curve.append((charged, step, loss, acc))
                print(f"{name}: {charged / 60:5.1f} min, step {step}, held-out MLM loss {loss:.3f}, acc {acc:.3f}",
                      flush=True)
                state["next"] = charged + eval_every_s
            return charged >= budget
        return state, at_step

    torch.manual_seed(0)
    ours = BertForPreTraining(config)
    state, at_step = tracker("domainbert", ours, hf=False)

    def on_step(m) -> bool:
        now = time.perf_counter()
        state["charged"] += now - state["last"]
        stop = at_step(m.step, state["charged"])
        state["last"] = time.perf_counter()
        return stop

    with tempfile.TemporaryDirectory() as tmp:
        at_step(0, 0.0)
        state["last"] = time.perf_counter()
        fit(ours, PretrainingDataset(train, seed=args.seed), args, Path(tmp), progress=False, on_step=on_step)
    torch.manual_seed(0)
    theirs = transformers.BertForPreTraining(transformers.BertConfig(**config.to_dict()))
    _, hf_step = tracker("transformers Trainer", theirs, hf=True)
    hf_step(0, 0.0)
    clock = StepClock(hook=lambda step, charged, model: hf_step(step, charged) and None, budget_s=budget)
    run_trainer(theirs, train, args, bf16=False, max_steps=args.max_steps, clock=clock)
    if clock.charged < budget and curves["transformers Trainer"][-1][0] < clock.charged:
        loss, acc = heldout_scores(theirs, heldout, eval_batches, True)
        curves["transformers Trainer"].append((clock.charged, len(clock.times), loss, acc))
    print(f"\nbudget {minutes:g} min on {torch.get_num_threads()} threads, QUALITY_ARGS "
          f"(global batch {args.global_batch_size}, lr {args.learning_rate}, {args.max_steps} planned steps)")
    print("| system | steps in budget | held-out MLM loss | held-out MLM accuracy |")
    print("|---|---:|---:|---:|")
    for name, curve in curves.items():
        t, step, loss, acc = curve[-1]
        print(f"| {name} | {step} | {loss:.3f} | {acc:.3f} |")
    (work / "quality.json").write_text(json.dumps(curves, indent=1))
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for name, curve in curves.items():
            ax.plot([c[0] / 60 for c in curve], [c[2] for c in curve], marker="o", label=name)
        ax.set_xlabel("training time (minutes, 2 CPU cores)")
        ax.set_ylabel("held-out MLM loss")
        ax.set_title("small BERT on PubMed abstracts: same recipe, same budget")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
        print(f"plot: {plot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["throughput", "quality"])
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / ".work")
    parser.add_argument("--steps", type=int, default=4, help="throughput: timed steps per system per round")
    parser.add_argument("--rounds", type=int, default=3, help="throughput: rounds, alternating the systems")
    parser.add_argument("--minutes", type=float, default=20.0, help="quality: training budget per system")
    parser.add_argument("--eval-every", type=float, default=120.0, help="quality: seconds between evaluations")
    parser.add_argument("--eval-batches", type=int, default=8, help="quality: held-out batches of 32")
    parser.add_argument("--plot", type=Path, default=None)
    ns = parser.parse_args()
    ns.work.mkdir(parents=True, exist_ok=True)
    if ns.what == "throughput":
        throughput(ns.work, ns.steps, ns.rounds)
    else:
        quality(ns.work, ns.minutes, ns.eval_every, ns.eval_batches, ns.plot)


if __name__ == "__main__":
    main()
