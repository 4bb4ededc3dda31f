#!/usr/bin/env python3
"""Two checks of the LinkBERT-budget tables, read from their committed test predictions alone.

BIOSSES: how much the predictions vary against the gold scores (a model that learned nothing predicts
nearly one value, and its Pearson correlation then says little). GAD: how many pairs each model calls
positive, and the F1 of calling every pair positive (the baseline a model has to beat).

    python benchmarks/linkbert_table_checks.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

KEPT = Path(__file__).resolve().parent / "results"


def predictions(model: str, dataset: str) -> list[dict]:
    path = KEPT / model / "linkbert" / dataset / "test_predictions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def main() -> None:
    for model in ("small-cpu", "small-cpu-random-init", "all-MiniLM-L6-v2"):
        if rows := predictions(model, "biosses"):
            spread = statistics.pstdev(float(r["prediction"]) for r in rows)
            gold = statistics.pstdev(float(r["gold"]) for r in rows)
            print(f"{model}: BIOSSES predictions spread {spread:.4f} (std), the gold scores {gold:.2f}")
        if rows := predictions(model, "gad"):
            positive = sum(r["gold"] == "1" for r in rows)
            called = sum(r["prediction"] == "1" for r in rows)
            print(f"{model}: GAD calls {called} of {len(rows)} positive ({positive} are); calling all positive "
                  f"scores F1 {200 * positive / (len(rows) + positive):.2f}")


if __name__ == "__main__":
    main()
