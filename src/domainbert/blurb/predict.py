"""Predicting a split with a fine-tuned model, and the ``*_predictions.jsonl`` files.

:func:`predict` gives one prediction per example in the examples' order (a tag per word for token
tasks, each word from the window that scores it; a class name; a float; a sorted tuple of labels);
:func:`gold` gives the gold labels in the same form; :func:`write_predictions` and
:func:`read_predictions` write and read ``{"id", "prediction", "gold"}`` lines, the files ``finetune``
and ``evaluate`` leave and ``report`` bootstraps from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domainbert.atomic import atomic_write_text
from domainbert.blurb.featurize import collate
from domainbert.blurb.task import Task
from domainbert.train.precision import autocast


@torch.no_grad()
def predict(model: nn.Module, task: Task, split: str, device: torch.device, precision: str,
            batch_size: int = 64) -> list[Any]:
    """Predictions for every example of ``split``, in the examples' order.

    Token tasks: a tag per word, each word taken from the window that scores it. Relation and QA:
    a class name. Similarity: a float. Multilabel: a sorted tuple of class names.
    """
    model.eval()
    features = task.features[split]
    order = sorted(range(len(features)), key=lambda i: len(features[i]))
    examples = task.examples[split]
    if task.is_token_task:
        tags: list[list[str | None]] = [[None] * len(e.tokens) for e in examples]  # type: ignore[union-attr]
    outputs: list[Any] = [None] * len(examples)
    for at in range(0, len(order), batch_size):
        chunk = [features[i] for i in order[at:at + batch_size]]
        batch = collate(chunk, task.tokenizer.pad_token_id, device)
        with autocast(precision, device):
            logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits
        logits = logits.float().cpu()
        for row, f in enumerate(chunk):
            if task.is_token_task:
                best = logits[row, :len(f)].argmax(-1).tolist()
                for pos, word in enumerate(f.word_index):
                    if word >= 0:
                        assert tags[f.example][word] is None, "a word is scored in exactly one window"
                        tags[f.example][word] = task.labels[best[pos]]
            elif task.record.task_type == "similarity":
                outputs[f.example] = float(logits[row, 0])
            elif task.record.task_type == "multilabel":
                probs = torch.sigmoid(logits[row]).tolist()
                outputs[f.example] = tuple(task.labels[i] for i, p in enumerate(probs) if p > 0.5)
            else:
                outputs[f.example] = task.labels[int(logits[row].argmax())]
    if task.is_token_task:
        for sentence in tags:
            assert None not in sentence, "every word gets a prediction"
        return tags
    return outputs


def gold(task: Task, split: str) -> list[Any]:
    """The gold labels of ``split`` in the form :func:`predict` returns."""
    if task.is_token_task:
        return [list(e.tags) for e in task.examples[split]]  # type: ignore[union-attr]
    return [e.label for e in task.examples[split]]  # type: ignore[union-attr]


def read_predictions(path: Path) -> tuple[list[Any], list[Any]]:
    """(gold, predictions) of a ``*_predictions.jsonl`` that :func:`write_predictions` wrote."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r["gold"] for r in rows], [r["prediction"] for r in rows]


def write_predictions(path: Path, task: Task, split: str, predictions: Sequence[Any]) -> None:
    """``{"id", "prediction", "gold"}`` per example of ``split``, one JSON line each, written atomically."""
    rows = zip(task.examples[split], predictions, gold(task, split))
    atomic_write_text(path, "".join(json.dumps({"id": example.id, "prediction": pred, "gold": true}) + "\n"
                                    for example, pred, true in rows))
