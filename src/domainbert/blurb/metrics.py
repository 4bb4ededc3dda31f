"""BLURB's metrics, one function per metric, and the BLURB score.

All scores are fractions in [0, 1] (the report multiplies by 100). Conventions, each matching the
reference BLURB/PubMedBERT used, and checked in ``tests/test_metrics.py`` against seqeval,
scikit-learn or scipy on hand-built cases:

- ``entity_f1`` (BC5-chem, BC5-disease, NCBI-disease, BC2GM, JNLPBA): entity-level micro F1 with
  ``seqeval`` (default, conlleval-compatible chunking; untyped ``B``/``I`` tags work too).
- ``pico_macro_f1`` (EBM PICO): word-level F1 of each PICO class over all tokens, averaged over
  the classes (``I-PAR``, ``I-INT``, ``I-OUT``); ``O`` is not a class. This is BLURB's evaluator
  (``sklearn.metrics.f1_score(average="macro", labels=[the three])``); a class that is neither in
  the gold nor the predictions scores 0, as in scikit-learn.
- ``relation_micro_f1`` (ChemProt, DDI, GAD): micro F1 over all classes but the negative one
  (ChemProt ``false``, DDI ``DDI-false``, GAD ``0``). With one positive class (GAD) this is the F1
  of that class, which is what BioBERT and PubMedBERT report for GAD.
- ``pearson`` (BIOSSES): Pearson correlation of predicted and gold scores. :func:`pearson` itself
  refuses a constant series; scoring a dataset (:func:`score`) gives constant predictions (an
  untrained regression head) 0, no correlation.
- ``hoc_micro_f1`` (HoC): at the abstract level (a document's labels are the union of its sentences'
  labels, :func:`labels_by_document`), micro F1 pooled over every document x hallmark cell. This is
  what the PubMedBERT paper states ("micro F1 across the ten cancer hallmarks ... evaluate on the
  abstract level", Gu et al. 2021, §2.3.5) and what the open evaluator of the published BLURB rows
  computes: LinkBERT's ``src/seqcls/utils_hoc.py`` (``eval_hoc``, ``compute_p_r_f``), which unions
  rows per PMID and counts TP, predicted and gold cells over the whole document x label matrix.
  :func:`hoc_scores` gives it beside the two other definitions in use, which are not BLURB's: the mean
  over hallmarks of each hallmark's F1 (a third-party BLURB evaluator names this "average micro F1"
  while computing ``f1_score(average="macro")``), and BLUE's ``eval_hoc.py`` (F1 of the per-document
  precision and recall averaged over documents).
- ``accuracy`` (PubMedQA, BioASQ).

:func:`score` is the one dispatch from a dataset record (BLURB's or a user's) to its metric;
:func:`blurb_score`: the mean over BLURB's six task types of the mean over each type's datasets.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from seqeval.metrics import classification_report, f1_score

from domainbert.blurb.registry import DATASETS, TASK_GROUPS, DatasetRecord, get_record

PICO_LABELS = ("I-PAR", "I-INT", "I-OUT")


def _check_lengths(y_true: Sequence[Any], y_pred: Sequence[Any]) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold items but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("no items to score")


def _f1(tp: int, n_pred: int, n_true: int) -> float:
    """F1 from counts; 0 when there is nothing to match (scikit-learn's zero_division=0)."""
    return 2 * tp / (n_pred + n_true) if n_pred + n_true else 0.0


def entity_f1(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> float:
    """Entity-level micro F1 of IOB/IOB2 tag sequences (one list of tags per sentence), via seqeval."""
    _check_lengths(y_true, y_pred)
    for i, (gold, pred) in enumerate(zip(y_true, y_pred)):
        if len(gold) != len(pred):
            raise ValueError(f"sentence {i}: {len(gold)} gold tags but {len(pred)} predicted")
    return float(f1_score([list(s) for s in y_true], [list(s) for s in y_pred]))


def _flatten(y_true: Sequence[Sequence[str]] | Sequence[str],
             y_pred: Sequence[Sequence[str]] | Sequence[str]) -> tuple[list[str], list[str]]:
    _check_lengths(y_true, y_pred)
    if isinstance(y_true[0], str):
        return list(y_true), list(y_pred)  # type: ignore[arg-type]
    gold: list[str] = []
    pred: list[str] = []
    for i, (g, p) in enumerate(zip(y_true, y_pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
        gold.extend(g)
        pred.extend(p)
    return gold, pred


def pico_macro_f1(y_true: Sequence[Sequence[str]] | Sequence[str],
                  y_pred: Sequence[Sequence[str]] | Sequence[str],
                  labels: Sequence[str] = PICO_LABELS) -> float:
    """Macro word-level F1 over the PICO classes (``O`` excluded); sentences or flat tag lists."""
    gold, pred = _flatten(y_true, y_pred)
    return statistics.fmean(c["f1"] for c in _per_class(gold, pred, labels).values())


def relation_micro_f1(y_true: Sequence[str], y_pred: Sequence[str], negative: str) -> float:
    """Micro F1 over every class except ``negative`` (a pair predicted negative counts nowhere)."""
    return _f1(*_relation_counts(y_true, y_pred, negative))


def _relation_counts(y_true: Sequence[str], y_pred: Sequence[str], negative: str) -> tuple[int, int, int]:
    """(right positive predictions, positive predictions, positive gold): a wrong positive class counts
    as a false positive and a false negative at once."""
    _check_lengths(y_true, y_pred)
    return (sum(g == p and g != negative for g, p in zip(y_true, y_pred)), sum(p != negative for p in y_pred),
            sum(g != negative for g in y_true))


def pearson(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Pearson correlation; a constant series has no correlation and raises ValueError."""
    _check_lengths(y_true, y_pred)
    n = len(y_true)
    mean_t, mean_p = sum(y_true) / n, sum(y_pred) / n
    dt = [t - mean_t for t in y_true]
    dp = [p - mean_p for p in y_pred]
    norm = math.sqrt(sum(d * d for d in dt) * sum(d * d for d in dp))
    if norm == 0:
        raise ValueError("Pearson correlation is undefined for a constant series")
    return sum(a * b for a, b in zip(dt, dp)) / norm


def _label_counts(y_true: Sequence[Collection[str]], y_pred: Sequence[Collection[str]],
                  labels: Sequence[str]) -> list[tuple[int, int, int]]:
    """(true positives, predicted, gold) per label of ``labels``, over label sets."""
    _check_lengths(y_true, y_pred)
    known = set(labels)
    for labels_of in (*y_true, *y_pred):
        unknown = set(labels_of) - known
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} are not among {list(labels)}")
    return [(sum(label in g and label in p for g, p in zip(y_true, y_pred)), sum(label in p for p in y_pred),
             sum(label in g for g in y_true)) for label in labels]


def multilabel_f1(y_true: Sequence[Collection[str]], y_pred: Sequence[Collection[str]],
                  labels: Sequence[str], average: Literal["macro", "micro"] = "macro") -> float:
    """F1 of label sets: ``macro`` = mean over ``labels`` of each label's F1, ``micro`` = pooled over every
    item x label cell (scikit-learn's ``f1_score`` on binarized labels, zero_division=0)."""
    counts = _label_counts(y_true, y_pred, labels)
    if average == "micro":
        return _f1(*(sum(c[i] for c in counts) for i in range(3)))
    return sum(_f1(*c) for c in counts) / len(counts)


def example_based_f1(y_true: Sequence[Collection[str]], y_pred: Sequence[Collection[str]]) -> float:
    """BLUE's HoC score (``blue/eval_hoc.py``): per document P = |gold & pred| / |pred| (0 when nothing is
    predicted) and R = |gold & pred| / |gold|, each averaged over documents; the score is the F1 of the two
    means. BLUE's data has no document without a hallmark (it divides by zero there); here such a
    document has R = 1 when nothing is predicted for it and 0 otherwise, and P = 1 when both are empty."""
    _check_lengths(y_true, y_pred)
    precisions, recalls = [], []
    for gold, pred in zip(y_true, y_pred):
        both = len(set(gold) & set(pred))
        if not gold:
            precisions.append(0.0 if pred else 1.0)
            recalls.append(0.0 if pred else 1.0)
            continue
        precisions.append(both / len(set(pred)) if pred else 0.0)
        recalls.append(both / len(set(gold)))
    p, r = statistics.fmean(precisions), statistics.fmean(recalls)
    return 2 * p * r / (p + r) if p + r else 0.0


def labels_by_document(sentence_ids: Sequence[str], labels: Sequence[Collection[str]],
                       separator: str = "_s") -> dict[str, tuple[str, ...]]:
    """Merge sentence label sets into document label sets (union), keyed by ``id.split(separator)``.

    HoC sentence ids are ``PMID_s<n>``; the union per PMID is BLURB's document label.
    """
    if len(sentence_ids) != len(labels):
        raise ValueError(f"{len(sentence_ids)} sentence ids but {len(labels)} label sets")
    merged: dict[str, set[str]] = {}
    for sentence_id, labels_of in zip(sentence_ids, labels):
        merged.setdefault(sentence_id.split(separator)[0], set()).update(labels_of)
    return {doc: tuple(sorted(found)) for doc, found in merged.items()}


HOC_LABELS = tuple(str(i) for i in range(10))


def hoc_micro_f1(y_true: Sequence[Collection[str]], y_pred: Sequence[Collection[str]],
                 labels: Sequence[str] = HOC_LABELS) -> float:
    """BLURB's HoC score on document label sets: micro F1 pooled over document x hallmark cells."""
    return multilabel_f1(y_true, y_pred, labels, average="micro")


def hoc_scores(y_true: Sequence[Collection[str]], y_pred: Sequence[Collection[str]],
               labels: Sequence[str] = HOC_LABELS) -> dict[str, float]:
    """The three HoC definitions in use, on document label sets: ``micro`` (BLURB's, LinkBERT's
    ``utils_hoc.py``), ``macro_over_hallmarks`` and ``blue_example_based`` (see the module docstring)."""
    return {"micro": hoc_micro_f1(y_true, y_pred, labels),
            "macro_over_hallmarks": multilabel_f1(y_true, y_pred, labels, average="macro"),
            "blue_example_based": example_based_f1(y_true, y_pred)}


def accuracy(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    """Fraction of exact matches."""
    _check_lengths(y_true, y_pred)
    return sum(g == p for g, p in zip(y_true, y_pred)) / len(y_true)


METRICS: dict[str, Callable[..., float]] = {
    "entity_f1": entity_f1,
    "pico_macro_f1": pico_macro_f1,
    "relation_micro_f1": relation_micro_f1,
    "pearson": pearson,
    "hoc_micro_f1": hoc_micro_f1,
    "accuracy": accuracy,
}
"""Metric name (as a dataset record names it) → function."""


def score(record: DatasetRecord, y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    """Score predictions with the record's metric (BLURB's, or a user record's), its negative class
    (relations) and label list (HoC); constant predictions score 0 on Pearson (no correlation)."""
    function = METRICS[record.metric]
    if record.metric == "relation_micro_f1":
        if record.negative_label is None:
            raise ValueError(f"{record.name}: relation micro F1 needs the negative class in the record")
        return function(y_true, y_pred, negative=record.negative_label)
    if record.metric == "hoc_micro_f1":
        return function(y_true, y_pred, labels=record.labels)
    if record.metric == "pearson" and len(y_true) == len(y_pred) and len(set(y_pred)) < 2:
        return 0.0  # constant predictions (an untrained regression head): no correlation
    return function(y_true, y_pred)


def _prf(tp: int, n_pred: int, n_true: int) -> dict[str, float | int]:
    return {"precision": tp / n_pred if n_pred else 0.0, "recall": tp / n_true if n_true else 0.0,
            "f1": _f1(tp, n_pred, n_true), "support": n_true}


def _per_class(gold: Sequence[str], pred: Sequence[str], classes: Sequence[str]) -> dict[str, dict[str, float | int]]:
    return {c: _prf(sum(g == c and p == c for g, p in zip(gold, pred)), sum(p == c for p in pred),
                    sum(g == c for g in gold)) for c in classes}


def constant_prediction(record: DatasetRecord, y_pred: Sequence[Any]) -> str | None:
    """In words, when every prediction is the same (one class for every example, no entity or PICO
    element anywhere, one label set, one score): what a model that learned nothing gives. Else None."""
    if not y_pred:
        return None
    if record.task_type in ("ner", "pico"):
        tags = {t for sentence in y_pred for t in sentence}
        return f"predicts {'O' if tags == {'O'} else tags.pop()} for every word" if len(tags) == 1 else None
    values = {tuple(p) if isinstance(p, (list, tuple)) else p for p in y_pred}
    if len(values) > 1:
        return None
    value = values.pop()
    if record.task_type == "multilabel":
        shown = "no label" if not value else ", ".join(map(str, value))
    elif record.task_type == "similarity":
        shown = f"{float(value):.4g}"
    else:
        shown = f"`{value}`"
    return f"predicts {shown} for all {len(y_pred)}"


def breakdown(record: DatasetRecord, y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, Any]:
    """The headline score with what it is made of: precision and recall, per entity type (NER), per PICO
    element, per class with a confusion matrix (relations, question answering), per label and the three
    HoC definitions (multi-label), and ``constant`` (:func:`constant_prediction`)."""
    out: dict[str, Any] = {"metric": record.metric, "score": score(record, y_true, y_pred), "n": len(y_true),
                           "constant": constant_prediction(record, y_pred)}
    if record.task_type == "ner":
        report = classification_report([list(s) for s in y_true], [list(s) for s in y_pred], output_dict=True,
                                       zero_division=0)
        out["precision"] = float(report["micro avg"]["precision"])
        out["recall"] = float(report["micro avg"]["recall"])
        out["per_type"] = {("entity" if name in ("", "_") else name): {  # seqeval names untyped B/I "_"
            "precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
            "support": int(v["support"])} for name, v in report.items() if not name.endswith(" avg")}
    elif record.task_type == "pico":
        gold, pred = _flatten(y_true, y_pred)
        classes = [label for label in record.labels if label != "O"] or list(PICO_LABELS)
        out["per_type"] = _per_class(gold, pred, classes)
        out["precision"] = statistics.fmean(v["precision"] for v in out["per_type"].values())
        out["recall"] = statistics.fmean(v["recall"] for v in out["per_type"].values())
    elif record.task_type in ("relation", "classification"):
        classes = list(record.labels) or sorted({*y_true, *y_pred})
        out["per_class"] = _per_class(y_true, y_pred, classes)
        pairs = list(zip(y_true, y_pred))
        out["confusion"] = {"labels": classes, "rows_gold_columns_predicted":
                            [[sum(g == a and p == b for g, p in pairs) for b in classes] for a in classes]}
        if record.task_type == "relation" and record.negative_label is not None:
            counts = _prf(*_relation_counts(y_true, y_pred, record.negative_label))
            out["precision"], out["recall"] = counts["precision"], counts["recall"]
    elif record.task_type == "multilabel":
        counts = _label_counts(y_true, y_pred, record.labels)
        pooled = _prf(*(sum(c[i] for c in counts) for i in range(3)))
        out["precision"], out["recall"] = pooled["precision"], pooled["recall"]
        out["per_class"] = {label: _prf(*c) for label, c in zip(record.labels, counts)}
        out["definitions"] = hoc_scores(y_true, y_pred, record.labels)
    return out


def score_dataset(name: str, y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    """Score predictions for BLURB dataset ``name``: :func:`score` with its record."""
    return score(get_record(name), y_true, y_pred)


@dataclass(frozen=True)
class BlurbScore:
    """The BLURB score of a set of per-dataset test scores."""

    score: float
    """Mean over the task types present of the mean over each type's datasets."""
    per_type: dict[str, float]
    """Task type → mean of its datasets' scores."""
    missing_types: tuple[str, ...]
    """Task types with no score: when any, ``score`` is not comparable to published BLURB scores."""

    @property
    def complete(self) -> bool:
        return not self.missing_types


def blurb_score(scores: Mapping[str, float],
                task_type_of: Mapping[str, str] | None = None) -> BlurbScore:
    """Macro-average ``scores`` (dataset name → score) first within, then across task types.

    ``task_type_of`` maps dataset names to task types; by default the BLURB registry's.
    """
    if task_type_of is None:
        task_type_of = {name: record.task_type for name, record in DATASETS.items()}
        all_types: Collection[str] = TASK_GROUPS
    else:
        all_types = sorted(set(task_type_of.values()))
    if not scores:
        raise ValueError("no dataset scores to average")
    by_type: dict[str, list[float]] = {}
    for name, value in scores.items():
        if name not in task_type_of:
            raise ValueError(f"dataset '{name}' has no task type; known: {', '.join(task_type_of)}")
        if math.isnan(value):
            raise ValueError(f"dataset '{name}' has a NaN score")
        by_type.setdefault(task_type_of[name], []).append(value)
    per_type = {t: sum(v) / len(v) for t, v in by_type.items()}
    missing = tuple(t for t in all_types if t not in per_type)
    return BlurbScore(sum(per_type.values()) / len(per_type), per_type, missing)
