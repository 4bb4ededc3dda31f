"""``domainbert evaluate``: score a fine-tuned model on one split of a BLURB dataset (or a user's), no training.

Takes a checkpoint whose head is already trained (``finetune``'s ``model/``, or a Hugging Face
``BertForTokenClassification`` / ``BertForSequenceClassification``, a folder or a Hub id), reads the
split, predicts every example exactly as ``finetune`` scores dev and test (token tasks in windows,
so no word drops out; relation sets with the entity markers the model's tokenizer holds) and writes:

``metrics.json``
    the dataset's headline metric with precision and recall, per entity type (NER), per PICO element,
    per class with a confusion matrix (relations, question answering), per label and HoC's three
    definitions (multi-label), and whether every prediction was the same answer
    (:func:`domainbert.blurb.metrics.breakdown`); the model's source and the split's size check.
``<split>_predictions.jsonl``
    ``{"id", "prediction", "gold"}`` per example, as ``finetune`` writes them.

The model's labels must cover the split's: a label the model cannot predict is an error naming it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from domainbert.atomic import atomic_write_json
from domainbert.blurb.arguments import add_dataset_arguments
from domainbert.blurb.metrics import breakdown
from domainbert.blurb.predict import gold, predict, write_predictions
from domainbert.blurb.registry import SPLITS, load_split, record_for, size_problem
from domainbert.blurb.task import HEADS, TOKEN_TASKS, Task, featurize, head_class, load_tokenizer, recorded_length
from domainbert.errors import CheckpointError, DataError
from domainbert.model.configuration import BertConfig
from domainbert.model.hub import MODEL_HELP, ModelSource, add_revision_argument, resolve_model
from domainbert.train.precision import resolve_precision


def evaluate(model_dir: Path, out: Path, task: str | None = None, split: str = "test", task_type: str | None = None,
             data: Path | None = None, negative_label: str | None = None, data_dir: Path | None = None,
             max_seq_length: int | None = None, batch_size: int = 64, precision: str = "auto",
             device: str | None = None, source: ModelSource | None = None) -> dict[str, Any]:
    """Score ``model_dir`` on ``split`` of a dataset; write ``metrics.json`` and the predictions into ``out``."""
    record = record_for(task, task_type, data, negative_label)
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; choose from {', '.join(SPLITS)}")
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"{model_dir} has no config.json: pass a fine-tuned BERT checkpoint directory "
                              "(finetune's model/ folder) or a Hub repo id")
    config = BertConfig.load(model_dir)
    head = head_class(record.task_type)
    architecture = head.__name__
    found = (config.extra.get("architectures") or [None])[0]
    if found != architecture or config.id2label is None:
        raise CheckpointError(f"{model_dir} is a {found or 'model without a task head'}, but {record.name} "
                              f"({record.task_type}) needs a fine-tuned {architecture}: fine-tune one with "
                              f"`domainbert finetune --task {record.name}`")
    labels = [config.id2label[i] for i in sorted(config.id2label)]
    examples = load_split(record, split, data_dir)
    if not examples:
        raise DataError(f"{record.name}: the {split} split is empty")
    needed = _labels_needed(record, examples)
    unknown = sorted(needed - set(labels))
    if unknown:
        raise CheckpointError(f"{model_dir} predicts {', '.join(labels[:12])}, not {', '.join(unknown[:5])} "
                              f"which {record.name} {split} uses: evaluate it on the dataset it was fine-tuned for")
    # The model's own tokenizer: the entity markers finetune added are in it; a model fine-tuned elsewhere
    # without them reads them as text, as it was trained.
    tokenizer = load_tokenizer(model_dir)
    # the length the model was fine-tuned at (a token model's config records it), else the dataset's
    max_length = min(max_seq_length or recorded_length(config) or record.max_seq_length, config.max_position_embeddings)
    features = featurize(record, tokenizer, examples, {name: i for i, name in enumerate(labels)}, max_length)
    problem = {} if record.task_type in TOKEN_TASKS else {"problem_type": HEADS[record.task_type]}
    model = head.from_pretrained(model_dir, **problem)
    run_on = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    resolved = resolve_precision(precision, run_on, fp16=True)
    model.to(run_on)
    task_view = Task(record, tokenizer, labels, max_length, {split: examples}, {split: features}, markers=[])
    predictions = predict(model, task_view, split, run_on, resolved, batch_size)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / f"{split}_predictions.jsonl", task_view, split, predictions)
    metrics = {"task": record.name, "display_name": record.display_name, "task_type": record.task_type,
               "split": split, "model": str(model_dir),
               "model_source": (source or ModelSource(model_dir)).record(), "max_seq_length": max_length,
               "examples": len(examples), "precision": resolved, "device": str(run_on),
               "size_check": size_problem(record, split, examples), "notes": list(record.notes),
               **breakdown(record, gold(task_view, split), predictions)}
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


def _labels_needed(record: Any, examples: list[Any]) -> set[str]:
    """The labels the split uses, which the model must be able to predict (none for a regression)."""
    if record.task_type == "similarity":
        return set()
    needed: set[str] = set()
    for example in examples:
        if record.task_type in TOKEN_TASKS:
            needed.update(example.tags)
        elif isinstance(example.label, tuple):
            needed.update(example.label)
        else:
            needed.add(example.label)
    return needed


# ==================================================================================== command
def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``domainbert evaluate``."""
    add_dataset_arguments(parser, "score")
    parser.add_argument("--model", required=True, help=MODEL_HELP.replace("BERT", "fine-tuned BERT", 1))
    add_revision_argument(parser)
    parser.add_argument("--split", choices=SPLITS, default="test", help="which split to score (default: test)")
    parser.add_argument("--out", type=Path, required=True, help="where metrics.json and the predictions go")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="BLURB data directory (default: the `data download` cache)")
    parser.add_argument("--max-seq-length", type=int, default=None,
                        help="maximum sub-words (default: the dataset's; token tasks are windowed)")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per batch")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                        help="auto: bf16 where native, else fp16 on a CUDA GPU (with loss scaling), else fp32")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")


def run(ns: argparse.Namespace) -> int:
    """``domainbert evaluate``: print the headline score, precision and recall; write the outputs."""
    if (ns.task is None) == (ns.data is None):
        raise DataError("give either --task NAME (a BLURB dataset) or --task-type TYPE with --data DIR")
    if ns.batch_size < 1 or (ns.max_seq_length is not None and ns.max_seq_length < 8):
        raise DataError("--batch-size must be at least 1 and --max-seq-length at least 8")
    source = resolve_model(ns.model, ns.revision)
    metrics = evaluate(source.path, ns.out, ns.task, ns.split, ns.task_type, ns.data, ns.negative_label,
                       ns.data_dir, ns.max_seq_length, ns.batch_size, ns.precision, ns.device, source)
    extra = "".join(f", {k} {100 * metrics[k]:.2f}" for k in ("precision", "recall") if k in metrics)
    print(f"{metrics['display_name']} {metrics['split']} ({metrics['metric']}): {100 * metrics['score']:.2f}{extra}"
          f" over {metrics['examples']} examples" + (f"; {metrics['constant']}" if metrics["constant"] else "")
          + f"; wrote {ns.out}")
    return 0
