"""Is one model's BLURB score different from another's? Tests over seeds and over test examples.

- :func:`seed_test`: with two or more seeds both models ran, the **paired** t-test over those seeds
  (``scipy.stats.ttest_rel``: the same seed shuffles the same batches, so its runs pair up); otherwise
  Welch's unpaired t-test over each side's seeds (``scipy.stats.ttest_ind(equal_var=False)``).
- :func:`paired_bootstrap`: the 95% interval of the test-score difference when the test examples are
  resampled with replacement (the same resample for both models: Efron & Tibshirani's paired
  bootstrap, as Koehn 2004 and Dror et al. 2018 recommend for NLP test sets), from the two
  ``test_predictions.jsonl`` files. Each metric is rebuilt from per-example counts
  (:func:`example_counts`), so ten thousand resamples cost a few array sums.
- :func:`holm`: Holm's (1979) step-down correction of a family of p-values (one per dataset), which
  keeps the chance of any false "different" at the level asked for.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as scipy_stats
from seqeval.metrics.sequence_labeling import get_entities

from domainbert.blurb.metrics import PICO_LABELS
from domainbert.blurb.registry import DatasetRecord

BOOTSTRAP_SAMPLES = 10_000
CONFIDENCE = 0.95


def seed_test(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    """Test ``a`` against ``b`` (seed -> score): paired over their shared seeds when there are two or more,
    else Welch's; {"test", "t", "p"} or {"p": None, "why"}."""
    shared = sorted(set(a) & set(b), key=str)
    if len(shared) >= 2:
        x, y = [a[s] for s in shared], [b[s] for s in shared]
        if len({round(u - v, 12) for u, v in zip(x, y)}) == 1:
            return {"p": None, "why": "the same difference on every seed: no variance to test", "test": "paired t"}
        result = scipy_stats.ttest_rel(x, y)
        return {"test": "paired t", "t": float(result.statistic), "p": float(result.pvalue), "n": len(shared)}
    x, y = list(a.values()), list(b.values())
    if len(x) < 2 or len(y) < 2:
        return {"p": None, "why": "needs 2+ seeds on both sides"}
    if statistics.pvariance(x) == 0 and statistics.pvariance(y) == 0:
        return {"p": None, "why": "no variance over seeds"}
    result = scipy_stats.ttest_ind(x, y, equal_var=False)
    return {"test": "Welch t", "t": float(result.statistic), "p": float(result.pvalue)}


def holm(p_values: dict[str, float | None]) -> dict[str, float | None]:
    """Holm-adjusted p-values (``None`` stays ``None`` and is not counted in the family)."""
    tested = sorted(((p, k) for k, p in p_values.items() if p is not None))
    m = len(tested)
    adjusted: dict[str, float | None] = {k: None for k, p in p_values.items() if p is None}
    running = 0.0
    for rank, (p, key) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[key] = running
    return adjusted


# ------------------------------------------------------------------------------------ per-example counts
def _entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    return set(get_entities(list(tags)))


def example_counts(record: DatasetRecord, gold: Sequence[Any], pred: Sequence[Any]) -> np.ndarray:
    """One row of counts per test example from which the record's metric is rebuilt by
    :func:`score_from_counts` on any resample: entity / relation / HoC micro F1: (true positives,
    predicted, gold); PICO: those three for each of I-PAR, I-INT, I-OUT; accuracy: (correct,);
    Pearson: (gold, predicted)."""
    metric = record.metric
    rows: list[list[float]] = []
    for g, p in zip(gold, pred, strict=True):
        if metric == "entity_f1":
            ge, pe = _entities(g), _entities(p)
            rows.append([len(ge & pe), len(pe), len(ge)])
        elif metric == "relation_micro_f1":
            negative = record.negative_label
            rows.append([float(g == p and g != negative), float(p != negative), float(g != negative)])
        elif metric == "hoc_micro_f1":
            rows.append([len(set(g) & set(p)), len(set(p)), len(set(g))])
        elif metric == "pico_macro_f1":
            row = []
            for label in PICO_LABELS:
                row += [sum(a == label and b == label for a, b in zip(g, p)), list(p).count(label),
                        list(g).count(label)]
            rows.append(row)
        elif metric == "accuracy":
            rows.append([float(g == p)])
        elif metric == "pearson":
            rows.append([float(g), float(p)])
        else:
            raise ValueError(f"no per-example counts for metric {metric!r}")
    return np.asarray(rows, dtype=np.float64)


def _f1(tp: np.ndarray, n_pred: np.ndarray, n_true: np.ndarray) -> np.ndarray:
    denominator = n_pred + n_true
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def score_from_counts(metric: str, counts: np.ndarray) -> np.ndarray:
    """The metric of each resample; ``counts`` is (resamples, examples, columns) or (examples, columns)."""
    if counts.ndim == 2:
        return score_from_counts(metric, counts[None])
    if metric == "pearson":
        x, y = counts[..., 0], counts[..., 1]
        dx, dy = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
        norm = np.sqrt((dx * dx).sum(-1) * (dy * dy).sum(-1))
        return np.divide((dx * dy).sum(-1), norm, out=np.zeros_like(norm), where=norm > 0)
    totals = counts.sum(axis=1)  # (resamples, columns)
    if metric == "accuracy":
        return totals[:, 0] / counts.shape[1]
    if metric == "pico_macro_f1":
        return np.mean([_f1(totals[:, 3 * i], totals[:, 3 * i + 1], totals[:, 3 * i + 2])
                        for i in range(len(PICO_LABELS))], axis=0)
    return _f1(totals[:, 0], totals[:, 1], totals[:, 2])


def paired_bootstrap(record: DatasetRecord, gold: Sequence[Any], pred_a: Sequence[Any], pred_b: Sequence[Any],
                     samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """The test-score difference ``a - b`` and its 95% percentile interval over paired resamples of
    the test examples (both models scored on the same resample each time)."""
    counts_a, counts_b = example_counts(record, gold, pred_a), example_counts(record, gold, pred_b)
    n = len(gold)
    rng = np.random.default_rng(seed)
    delta = float(score_from_counts(record.metric, counts_a)[0] - score_from_counts(record.metric, counts_b)[0])
    diffs = np.empty(samples)
    for start in range(0, samples, 500):  # in blocks: (500, n, columns) stays small
        idx = rng.integers(0, n, size=(min(500, samples - start), n))
        diffs[start:start + len(idx)] = (score_from_counts(record.metric, counts_a[idx])
                                         - score_from_counts(record.metric, counts_b[idx]))
    low, high = np.quantile(diffs, [(1 - CONFIDENCE) / 2, 1 - (1 - CONFIDENCE) / 2])
    return {"delta": delta, "low": float(low), "high": float(high), "samples": samples, "examples": n,
            "excludes_zero": bool(low > 0 or high < 0) and not math.isclose(low, high)}
