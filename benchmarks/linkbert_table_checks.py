#!/usr/bin/env python3
"""Three checks of the LinkBERT-budget tables, read from their committed outputs (and HoC's training set).

BIOSSES: how much the predictions vary against the gold scores, and on how many distinct values (a model
that learned nothing predicts nearly one value, and its Pearson correlation then says little). GAD: how
many pairs each model calls positive, and the F1 of calling every pair positive (the baseline a model has
to beat). HoC: each seed's training loss at its first and last epoch beside the loss of predicting each
hallmark's share of the training abstracts (a model whose loss ends there has learned nothing).

    python benchmarks/linkbert_table_checks.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from domainbert.blurb.registry import load_split

KEPT = Path(__file__).resolve().parent / "results"


def predictions(model: str, dataset: str) -> list[dict]:
    path = KEPT / model / "linkbert" / dataset / "test_predictions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def base_rate_loss(data: Path) -> tuple[float, list[float]]:
    """The mean binary cross-entropy per hallmark of predicting each one's share of HoC's training
    abstracts, and the shares."""
    train = load_split("hoc", "train", data)
    shares = [sum(str(h) in e.label for e in train) / len(train) for h in range(10)]
    return statistics.fmean(-(p * math.log(p) + (1 - p) * math.log(1 - p)) for p in shares), shares


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=KEPT.parent.parent.parent / "shared" / "data")
    args = ap.parse_args()
    for model in ("small-cpu", "small-cpu-random-init", "all-MiniLM-L6-v2"):
        if rows := predictions(model, "biosses"):
            spread = statistics.pstdev(float(r["prediction"]) for r in rows)
            gold = statistics.pstdev(float(r["gold"]) for r in rows)
            distinct = len({r["prediction"] for r in rows})
            print(f"{model}: BIOSSES predictions spread {spread:.4f} (std), the gold scores {gold:.2f}; "
                  f"{distinct} distinct of {len(rows)}")
        if rows := predictions(model, "gad"):
            positive = sum(r["gold"] == "1" for r in rows)
            called = sum(r["prediction"] == "1" for r in rows)
            print(f"{model}: GAD calls {called} of {len(rows)} positive ({positive} are); calling all positive "
                  f"scores F1 {200 * positive / (len(rows) + positive):.2f}")
        for log in sorted((KEPT / model / "linkbert" / "hoc" / "runs").glob("*/epochs.jsonl")):
            losses = [json.loads(line)["train_loss"] for line in log.read_text().splitlines()]
            print(f"{model}: HoC {log.parent.name[-6:]} training loss {losses[0]:.4f} after epoch 1, "
                  f"{losses[-1]:.4f} after epoch {len(losses)}")
    loss, shares = base_rate_loss(args.data)
    print(f"HoC: hallmark shares of the training abstracts {min(shares):.3f}-{max(shares):.3f}; predicting them "
          f"costs {loss:.4f} per hallmark")


if __name__ == "__main__":
    main()
