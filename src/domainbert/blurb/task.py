"""A dataset made ready for one model: its three splits read, entity markers added to the vocabulary,
every example featurized, and the model with a fresh head for it.

:func:`prepare_task` reads the splits (``--limit`` cuts them after BLURB's size check), adds the
``@GENE$``-style markers of relation sets to the tokenizer as whole tokens, and featurizes: token
tasks word by word in windows (no word is ever cut), the others as texts or pairs
(:mod:`domainbert.blurb.featurize`). :func:`build_model` puts the head a task type needs
(:data:`HEADS`) on the pretrained encoder, resizing the embeddings for the markers; a token model's
``config.json`` records how its corpus cut words (:mod:`domainbert.blurb.words`) and its window
length (``max_seq_length``), which serving reads text by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from domainbert.blurb.examples import TextExample, TokenExample
from domainbert.blurb.featurize import MARKER_RE, Feature, featurize_texts, featurize_tokens, markers_in
from domainbert.blurb.registry import DatasetRecord, load_split, size_problem
from domainbert.blurb.words import CONFIG_KEY, WordCutter
from domainbert.data.tokenization import BertTokenizer
from domainbert.errors import CheckpointError, DataError
from domainbert.model.configuration import BertConfig
from domainbert.model.modeling import BertForSequenceClassification, BertForTokenClassification

Example = TokenExample | TextExample

TOKEN_TASKS = ("ner", "pico")
#: task type → problem type of BertForSequenceClassification (token tasks have none).
HEADS: dict[str, str | None] = {
    "ner": None, "pico": None, "relation": "single_label_classification",
    "similarity": "regression", "multilabel": "multi_label_classification",
    "classification": "single_label_classification",
}


@dataclass
class Task:
    """A dataset made ready for one model: record, tokenizer, label map, features per split."""

    record: DatasetRecord
    tokenizer: Any
    labels: list[str]
    max_length: int
    examples: dict[str, list[Example]]
    features: dict[str, list[Feature]]
    markers: list[str]
    size_checks: list[str] = field(default_factory=list)
    """Splits whose size is not BLURB's (another release of the data), one line each."""
    cutter: WordCutter | None = None
    """Token tasks: how the corpus cut its text into words, learned from the train split."""

    @property
    def is_token_task(self) -> bool:
        return self.record.task_type in TOKEN_TASKS

    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))


def _labels_of(record: DatasetRecord, examples: dict[str, list[Example]]) -> list[str]:
    if record.task_type == "similarity":
        return ["similarity"]  # one regression output
    if record.labels:
        return list(record.labels)
    raise DataError(f"{record.name}: the dataset record names no labels")  # pragma: no cover - records always do


def load_tokenizer(model_dir: Path) -> Any:
    """The model's tokenizer; a vocabulary without BERT's special tokens is a VocabError."""
    if not model_dir.is_dir():
        raise CheckpointError(f"model directory {model_dir} does not exist: pass a BERT checkpoint "
                              "directory (config.json, weights and vocab.txt)")
    return BertTokenizer.from_pretrained(model_dir)


def prepare_task(record: DatasetRecord, model_dir: Path, data_dir: Path | None,
                 max_seq_length: int | None = None, limit: int | None = None,
                 model_max_positions: int | None = None) -> Task:
    """Read the three splits, extend the vocabulary with entity markers and featurize everything."""
    examples: dict[str, list[Example]] = {}
    size_checks: list[str] = []
    for split in ("train", "dev", "test"):
        rows = load_split(record, split, data_dir)
        if not rows:
            raise DataError(f"{record.name}: the {split} split is empty; it needs at least one example")
        if (problem := size_problem(record, split, rows)) is not None:
            size_checks.append(problem)
        examples[split] = rows[:limit] if limit else rows
    tokenizer = load_tokenizer(model_dir)
    max_length = max_seq_length or record.max_seq_length
    if model_max_positions is not None:
        max_length = min(max_length, model_max_positions)
    markers: list[str] = []
    if record.task_type == "relation":
        if not any(MARKER_RE.search(e.text) for e in examples["train"]):  # type: ignore[union-attr]
            raise DataError(f"{record.name}: no train example marks its entities (@GENE$, @DRUG$ ... in place of "
                            "the two mentions): a relation model needs to know which pair to classify; mask "
                            "them as BLURB's relation sets do")
        markers = markers_in([e for rows in examples.values() for e in rows])
        tokenizer.add_tokens(markers)
    labels = _labels_of(record, examples)
    label2id = {name: i for i, name in enumerate(labels)}
    features = {split: featurize(record, tokenizer, rows, label2id, max_length) for split, rows in examples.items()}
    cutter = (WordCutter.learn(e.tokens for e in examples["train"])  # type: ignore[union-attr]
              if record.task_type in TOKEN_TASKS else None)
    return Task(record, tokenizer, labels, max_length, examples, features, markers, size_checks, cutter)


def featurize(record: DatasetRecord, tokenizer: Any, rows: list[Example], label2id: dict[str, int],
              max_length: int) -> list[Feature]:
    """One split's features: words in windows for token tasks, texts or pairs for the others."""
    if record.task_type in TOKEN_TASKS:
        return featurize_tokens(tokenizer, rows, label2id, max_length)  # type: ignore[arg-type]
    return featurize_texts(tokenizer, record, rows, label2id, max_length)  # type: ignore[arg-type]


def recorded_length(config: BertConfig) -> int | None:
    """The window length a token model was fine-tuned at (:func:`build_model` records it), or None."""
    value = config.extra.get("max_seq_length")
    return value if isinstance(value, int) and value >= 8 else None


def head_class(task_type: str) -> type[BertForTokenClassification] | type[BertForSequenceClassification]:
    """The model class a task type's head is (its problem type is :data:`HEADS`')."""
    return BertForTokenClassification if task_type in TOKEN_TASKS else BertForSequenceClassification


def build_model(task: Task, model_dir: Path) -> nn.Module:
    """The pretrained encoder with a new head for ``task`` (embeddings resized for markers)."""
    config = BertConfig.load(model_dir)
    if task.tokenizer.vocab_size > config.vocab_size and not task.markers:
        raise CheckpointError(f"{model_dir}: the vocabulary has {task.tokenizer.vocab_size} tokens but the "
                              f"model only {config.vocab_size} embeddings; use the model's own vocab.txt")
    # A token model records how its words were cut and windowed, so that serving reads text the same way.
    head = ({CONFIG_KEY: task.cutter.to_config(), "max_seq_length": task.max_length} if task.cutter
            else {"problem_type": HEADS[task.record.task_type]})
    model = head_class(task.record.task_type).from_pretrained(model_dir, id2label=task.id2label(), **head)
    if task.tokenizer.vocab_size > model.config.vocab_size:
        model.resize_token_embeddings(task.tokenizer.vocab_size)
    return model
