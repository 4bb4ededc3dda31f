#!/usr/bin/env python3
"""Microbenchmark: BERT's masking of one 128-token example, as ``data prepare`` runs it.

Three ways to the same result (same positions, same replacements, same random draws; checked
here before timing):

* ``loop + random.shuffle``: the general candidate loop (the whole-word path, given a vocabulary
  with no ``##`` pieces) and the library's ``Random.shuffle``: what the code did before;
* ``direct + random.shuffle``: the single-position path that takes the first shuffled candidates;
* ``direct + inlined shuffle``: that path with ``random.shuffle`` restated without a Python call
  per element (the default).

    python benchmarks/masking.py [--examples 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

import domainbert.data.examples as pdata
from domainbert.data.examples import MaskingSpec, create_masked_lm_predictions


def examples(n: int, vocab: int) -> list[list[int]]:
    rng = random.Random(0)
    a, b = 60, 63  # [CLS] A [SEP] B [SEP] = 126 tokens
    return [[2, *(rng.randint(5, vocab - 1) for _ in range(a)), 3, *(rng.randint(5, vocab - 1) for _ in range(b)), 3]
            for _ in range(n)]


def run(data: list[list[int]], spec: MaskingSpec, via_loop: bool, shuffle) -> tuple[float, list]:
    pdata._shuffle = shuffle
    rng = random.Random(1)
    t = time.perf_counter()
    out = [create_masked_lm_predictions(tokens, 0.15, 20, spec, rng, whole_word_mask=via_loop) for tokens in data]
    return (time.perf_counter() - t) / len(data) * 1e6, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    vocab = 30522
    spec = MaskingSpec(2, 3, 4, vocab, np.zeros(vocab, dtype=bool))  # no ## pieces: one position a word
    data = examples(args.examples, vocab)
    inlined = pdata._shuffle
    variants = {"loop + random.shuffle": (True, pdata._library_shuffle),
                "direct + random.shuffle": (False, pdata._library_shuffle),
                "direct + inlined shuffle": (False, inlined)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    results = {}
    for _ in range(args.repeats):  # alternate, so that machine noise hits all alike
        for name, (via_loop, shuffle) in variants.items():
            us, results[name] = run(data, spec, via_loop, shuffle)
            times[name].append(us)
    pdata._shuffle = inlined
    first = next(iter(results.values()))
    assert all(r == first for r in results.values()), "the variants must give identical masks"
    base = statistics.median(times["loop + random.shuffle"])
    print(f"{args.examples} examples of 126 tokens, median of {args.repeats} rounds; identical output checked\n")
    print("| variant | us per example | vs before |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.1f} | {base / statistics.median(ts):.2f}x |")


if __name__ == "__main__":
    main()
