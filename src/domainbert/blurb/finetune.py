"""Fine-tuning on BLURB (or a user's dataset in a BLURB format): featurizing, one generic loop, grid and seeds.

One loop serves every task type; what differs per type is data, held in the dataset record
(:class:`domainbert.blurb.DatasetRecord`) and in :data:`HEADS`:

=============  ===================================  ==========================================
task type      head / problem type                  featurizing
=============  ===================================  ==========================================
ner, pico      BertForTokenClassification           words → sub-tokens, the first sub-token of a
                                                    word carries its tag, the rest -100; inputs
                                                    longer than the maximum are split into
                                                    overlapping windows (never truncated) and each
                                                    word is scored in exactly one window, the one
                                                    where it has the most context on both sides
relation       BertForSequenceClassification,       the ``@GENE$``-style entity markers found in
               single label                         the data are added to the vocabulary as whole
                                                    tokens (embeddings resized)
similarity     BertForSequenceClassification,       sentence pair, score in [0, 4]
               regression
multilabel     BertForSequenceClassification,       document; a label is predicted when its
               multi label (BCE)                    sigmoid exceeds 0.5
classification BertForSequenceClassification,       question + context as a pair
               single label
=============  ===================================  ==========================================

Training follows BERT's fine-tuning recipe as BLURB used it (Gu et al. 2021, §4.3): AdamW with
weight decay (0.01 unless the budget says otherwise) except on biases and LayerNorm weights, linear
warmup (10% unless the budget says otherwise) then linear decay to 0, gradient clipping at 1.0,
bf16 autocast where the hardware has it (:mod:`domainbert.train.precision`),
batches grouped by length with dynamic padding. On a GPU a step is built not to wait for it
(``benchmarks/gpu_check.py``'s no-sync-finetune checks it): batches are made and their Packing found
on the host and copied through pinned memory, and the loss is read back every ``LOG_EVERY`` steps.
Each epoch is scored on dev; a run keeps its best epoch (or its last, under a budget that says so).
Which settings and seeds are trained is the budget's (:mod:`domainbert.blurb.budgets`: ``quick``,
``full-epochs``, ``grid``, ``paper``, ``linkbert``); the setting with the best mean dev score is
selected and its test mean ± std reported.

Every finished run writes ``runs/<run id>/result.json`` atomically; a restarted command skips runs
whose result exists, so an interrupted grid resumes where it stopped. A run is reused only when its
fingerprint matches: the model's content (config, weights and vocabulary files, hashed: a model
re-exported into the same folder is another model), the dataset files' content, and every setting
that changes a result (budget, limit, max steps, sequence length, precision, batch grouping);
``selection.json`` carries the fingerprint and the planned runs too. An ``--out`` holding results of
other inputs or settings is an error naming what changed; ``--restart`` discards them (said aloud)
and starts afresh.

Output directory::

    metrics.json                 selected setting, dev/test mean ± std and per seed, every run
    dev_predictions.jsonl        {"id", "prediction", "gold"} per example, from the saved run
    test_predictions.jsonl
    model/                       the fine-tuned model of the best single run (by dev score):
                                 config.json (id2label, architectures) + model.safetensors +
                                 tokenizer files (markers included), loadable by transformers'
                                 AutoModelForTokenClassification / AutoModelForSequenceClassification
    selection.json               which run the model and the predictions come from
    runs/<run id>/result.json    one per (lr, batch, epochs, seed)
    runs/<run id>/epochs.jsonl   {"epoch", "step", "train_loss", "dev", "best_epoch", "seconds"}, a line
                                 as each epoch ends (also printed on stderr)

With several settings the saved model is the best single run by dev score, which belongs to the
selected setting only when that setting also holds the best seed; ``metrics.json`` names both.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from domainbert.atomic import atomic_write_json, atomic_write_text
from domainbert.blurb.budgets import (
    BUDGET_NAMES,
    Budget,
    Setting,
    add_budget_argument,
    default_seeds,
    max_length_for,
    settings_for,
)
from domainbert.blurb.examples import TextExample, TokenExample
from domainbert.blurb.featurize import (
    MARKER_RE,
    Feature,
    collate,
    featurize_texts,
    featurize_tokens,
    length_grouped_batches,
    markers_in,
)
from domainbert.blurb.metrics import breakdown, constant_prediction, score
from domainbert.blurb.registry import (
    DATASETS,
    DatasetRecord,
    default_data_dir,
    load_split,
    record_for,
    size_problem,
)
from domainbert.blurb.resume import FINGERPRINT_VERSION, check_outputs, content_hash, model_files
from domainbert.data.tokenization import BertTokenizer
from domainbert.errors import CheckpointError, ConfigError, DataError
from domainbert.model.card import finetuned_card, write_card
from domainbert.model.configuration import BertConfig
from domainbert.model.hub import MODEL_HELP, ModelSource, add_revision_argument, resolve_model
from domainbert.model.modeling import BertForSequenceClassification, BertForTokenClassification
from domainbert.train.optim import get_lr, param_groups
from domainbert.train.precision import autocast, resolve_precision

Example = TokenExample | TextExample

TOKEN_TASKS = ("ner", "pico")
#: task type → problem type of BertForSequenceClassification (token tasks have none).
HEADS: dict[str, str | None] = {
    "ner": None, "pico": None, "relation": "single_label_classification",
    "similarity": "regression", "multilabel": "multi_label_classification",
    "classification": "single_label_classification",
}


# ==================================================================================== arguments
@dataclass
class FinetuneArgs:
    """Everything one ``domainbert finetune`` needs; checked in ``__post_init__``."""

    model: Path
    """A BERT checkpoint directory (domainbert or Hugging Face) with its vocabulary."""
    out: Path
    """Output directory (see the module docstring); reused to resume."""
    task: str | None = None
    """A BLURB dataset name (``ncbi-disease``, ``gad`` ...); or give ``task_type`` + ``data``."""
    task_type: str | None = None
    """A user's dataset: ``ner``, ``relation``, ``similarity``, ``multilabel`` or ``classification``."""
    data: Path | None = None
    """A user's dataset folder holding train/dev/test files."""
    negative_label: str | None = None
    """A user's relation set: the class micro F1 leaves out."""
    data_dir: Path | None = None
    """Where the BLURB data lives (default: the ``data download`` cache)."""
    budget: Budget = "quick"
    """Which settings and seeds to train (:mod:`domainbert.blurb.budgets`: quick, full-epochs, grid, paper,
    linkbert)."""
    seeds: tuple[int, ...] = ()
    """Seeds (default: the budget's, :func:`~domainbert.blurb.budgets.default_seeds`)."""
    learning_rate: float | None = None
    """quick/full-epochs/linkbert: one rate instead of the budget's."""
    batch_size: int | None = None
    """quick/full-epochs/linkbert: one batch size instead of the budget's."""
    epochs: int | None = None
    """Override the number of epochs (both budgets)."""
    max_steps: int | None = None
    """Stop every run after this many optimizer steps (smoke runs)."""
    max_seq_length: int | None = None
    """Override the record's maximum sub-word length (token tasks are windowed to it)."""
    limit: int | None = None
    """Use only the first N examples of each split (smoke runs; the scores are then not BLURB's)."""
    eval_batch_size: int = 64
    """Examples per evaluation batch."""
    unpad: bool = True
    """Train on the real tokens only when a batch has padding (the unpadded encoder path): on the CPU as
    fast as the padded path at little padding and 1.2-1.3x faster at NCBI-disease's random batches
    (benchmarks/RESULTS.md); False: the padded path."""
    group_by_length: bool = True
    """Batch training examples of similar length (less padding: on NCBI-disease about 2.2x faster
    training than random batches). False: random batches, as transformers' Trainer samples by
    default (see benchmarks/RESULTS.md for what each gives)."""
    precision: str = "auto"
    """``auto`` (bf16 where native), ``bf16`` or ``fp32``."""
    device: str | None = None
    """``cpu``, ``cuda``, ``cuda:1`` ...; default: cuda when available."""
    save_model: bool = True
    """Write the fine-tuned model (off for a suite that only wants scores)."""
    progress: bool | None = None
    """tqdm progress bars; None: only on a terminal."""
    restart: bool = False
    """Discard what ``out`` holds from other inputs or settings instead of refusing to run."""
    source: ModelSource | None = None
    """Where ``model`` came from (a Hub repo id and commit), recorded in ``metrics.json``; None: the
    directory itself."""

    def __post_init__(self) -> None:
        problems = []
        if (self.task is None) == (self.data is None):
            problems.append("give either --task NAME (a BLURB dataset) or --task-type TYPE with --data DIR")
        if self.data is not None and self.task_type is None:
            problems.append("--data needs --task-type (ner, relation, similarity, multilabel, classification)")
        if self.budget not in BUDGET_NAMES:
            problems.append(f"budget must be one of {', '.join(BUDGET_NAMES)}, got {self.budget!r}")
        if self.budget in ("grid", "paper") and (self.learning_rate is not None or self.batch_size is not None):
            problems.append(f"--lr/--batch-size fix one setting: use them with --budget quick, full-epochs or "
                            f"linkbert ({self.budget} runs a grid)")
        for name in ("batch_size", "epochs", "max_steps", "limit", "max_seq_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be at least 1, got {value}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            problems.append(f"learning rate must be positive, got {self.learning_rate}")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            problems.append(f"max_seq_length {self.max_seq_length} is too short: use at least 8")
        if problems:
            raise ConfigError("; ".join(problems))


# ==================================================================================== the task
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
    features = {}
    for split, rows in examples.items():
        if record.task_type in TOKEN_TASKS:
            features[split] = featurize_tokens(tokenizer, rows, label2id, max_length)  # type: ignore[arg-type]
        else:
            features[split] = featurize_texts(tokenizer, record, rows, label2id, max_length)  # type: ignore[arg-type]
    return Task(record, tokenizer, labels, max_length, examples, features, markers, size_checks)


def build_model(task: Task, model_dir: Path) -> nn.Module:
    """The pretrained encoder with a new head for ``task`` (embeddings resized for markers)."""
    config = BertConfig.load(model_dir)
    if task.tokenizer.vocab_size > config.vocab_size and not task.markers:
        raise CheckpointError(f"{model_dir}: the vocabulary has {task.tokenizer.vocab_size} tokens but the "
                              f"model only {config.vocab_size} embeddings; use the model's own vocab.txt")
    if task.is_token_task:
        model = BertForTokenClassification.from_pretrained(model_dir, id2label=task.id2label())
    else:
        model = BertForSequenceClassification.from_pretrained(
            model_dir, id2label=task.id2label(), problem_type=HEADS[task.record.task_type])
    if task.tokenizer.vocab_size > model.config.vocab_size:
        model.resize_token_embeddings(task.tokenizer.vocab_size)
    return model


# ==================================================================================== predicting
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


# ==================================================================================== one run
@dataclass
class RunResult:
    """What one (setting, seed) run produced; stored as ``runs/<id>/result.json``."""

    run_id: str
    setting: dict[str, Any]
    seed: int
    best_epoch: int
    dev: float
    test: float
    dev_history: list[float]
    steps: int
    train_seconds: float
    fingerprint: dict[str, Any]
    constant: str | None = None
    """When every test prediction is the same: what it is (:func:`domainbert.blurb.metrics.constant_prediction`)."""


def _read_predictions(path: Path) -> tuple[list[Any], list[Any]]:
    """(gold, predictions) of a ``*_predictions.jsonl`` that :func:`_write_jsonl` wrote."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r["gold"] for r in rows], [r["prediction"] for r in rows]


def _write_jsonl(path: Path, task: Task, split: str, predictions: Sequence[Any]) -> None:
    rows = zip(task.examples[split], predictions, gold(task, split))
    atomic_write_text(path, "".join(json.dumps({"id": example.id, "prediction": pred, "gold": true}) + "\n"
                                    for example, pred, true in rows))


LOG_EVERY = 20
"""Steps between the reads of the training loss (for the progress bar), a run's one wait for the GPU
between its dev evaluations."""


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, Any], lr: float,
               precision: str, device: torch.device) -> torch.Tensor:
    """One optimizer step on a :func:`collate` batch at rate ``lr``; returns the loss (detached, on the
    model's device). It does not read anything back from a GPU: the batch and its Packing were made on the host."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(precision, device):
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                    labels=batch["labels"], packing=batch["packing"])
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return out.loss.detach()


class EpochLog:
    """A run's per-epoch record, ``runs/<run id>/epochs.jsonl``, written as each epoch ends (a long run
    can be followed, and a killed one read, before its ``result.json`` exists); one line on stderr per
    epoch too, unless ``quiet``. The file is started afresh when the run (re)starts."""

    def __init__(self, path: Path, task: str, run_id: str, quiet: bool) -> None:
        self.path, self.task, self.run_id, self.quiet = path, task, run_id, quiet
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")

    def write(self, bar: tqdm, **row: Any) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if not self.quiet:
            bar.write(f"{self.task} {self.run_id} epoch {row['epoch']}: train loss {row['train_loss']:.4f}, "
                      f"dev {100 * row['dev']:.2f} (best epoch {row['best_epoch']}), {row['seconds']:.0f} s",
                      file=sys.stderr)


def train_run(task: Task, model_dir: Path, setting: Setting, seed: int, args: FinetuneArgs,
              device: torch.device) -> tuple[RunResult, nn.Module, dict[str, list[Any]]]:
    """Fine-tune once; score dev every epoch and keep the best epoch's weights and predictions."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = build_model(task, model_dir).to(device)
    train = task.features["train"]
    lengths = [len(f) for f in train]
    steps_per_epoch = math.ceil(len(train) / setting.batch_size)
    total = steps_per_epoch * setting.epochs
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    optimizer = torch.optim.AdamW(param_groups(model, setting.weight_decay), lr=setting.learning_rate, fused=True)
    best: tuple[float, int, dict[str, torch.Tensor], dict[str, list[Any]]] | None = None
    history: list[float] = []
    step = 0
    started = time.perf_counter()
    bar = tqdm(total=total, desc=f"{task.record.name} {setting.run_id(seed)}", leave=False,
               disable=(None if args.progress is None else not args.progress))
    log = EpochLog(args.out / "runs" / setting.run_id(seed) / "epochs.jsonl", task.record.name,
                   setting.run_id(seed), quiet=args.progress is False)
    for epoch in range(setting.epochs):
        if step >= total:
            break
        model.train()
        epoch_loss, epoch_steps = torch.zeros((), device=device), 0  # summed on the device: no wait per step
        # pool=1: each batch is a random draw (sorting inside one batch changes nothing).
        pools = {} if args.group_by_length else {"pool": 1}
        for batch_ids in length_grouped_batches(lengths, setting.batch_size, rng, **pools):
            if step >= total:
                break
            batch = collate([train[i] for i in batch_ids], task.tokenizer.pad_token_id, device, args.unpad)
            lr = get_lr(step, total, setting.learning_rate, setting.warmup)
            loss = train_step(model, optimizer, batch, lr, args.precision, device)
            step += 1
            epoch_loss += loss
            epoch_steps += 1
            bar.update(1)
            if step % LOG_EVERY == 0 or step == total:  # the one wait for the GPU, every LOG_EVERY steps
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        dev_pred = predict(model, task, "dev", device, args.precision, args.eval_batch_size)
        dev_score = score(task.record, gold(task, "dev"), dev_pred)
        history.append(dev_score)
        # best-epoch: the best dev score from min_epoch on (an earlier one only until then); final: the last
        keep = (best is None or epoch + 1 == setting.min_epoch or setting.select == "final"
                or (dev_score > best[0] and epoch + 1 >= setting.min_epoch))
        if keep:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = (dev_score, epoch + 1, state, {"dev": dev_pred})
        log.write(bar, epoch=epoch + 1, step=step, train_loss=float(epoch_loss) / max(1, epoch_steps),
                  dev=dev_score, best_epoch=best[1], seconds=round(time.perf_counter() - started, 2))
    bar.close()
    seconds = time.perf_counter() - started
    assert best is not None
    model.load_state_dict(best[2])
    test_pred = predict(model, task, "test", device, args.precision, args.eval_batch_size)
    test_score = score(task.record, gold(task, "test"), test_pred)
    result = RunResult(setting.run_id(seed), asdict(setting), seed, best[1], best[0], test_score,
                       history, step, round(seconds, 2), {},  # finetune() stamps the fingerprint
                       constant=constant_prediction(task.record, test_pred))
    return result, model, {"dev": best[3]["dev"], "test": test_pred}


def fingerprint(task: Task, model_dir: Path, args: FinetuneArgs, precision: str | None = None) -> dict[str, Any]:
    """What a stored run must match to be reused: the model's and the data's content, the labels and
    negative class scored, and every setting that changes a result, precision as resolved on this
    machine (the setting and seed are in the run's id)."""
    root = Path(args.data_dir) if args.data_dir is not None else default_data_dir()
    data = [p for split in task.examples for p in (task.record.locate(split, root) or ((), None))[0]]
    sizes = {split: len(rows) for split, rows in task.examples.items()}
    return {"version": FINGERPRINT_VERSION, "task": task.record.name,
            "model_sha256": content_hash(model_files(Path(model_dir))), "data_sha256": content_hash(data),
            "sizes": sizes, "limit": args.limit, "max_length": task.max_length, "max_steps": args.max_steps,
            "precision": precision or args.precision, "group_by_length": args.group_by_length, "budget": args.budget,
            "task_type": task.record.task_type, "metric": task.record.metric, "labels": list(task.labels),
            "negative_label": task.record.negative_label}


# ==================================================================================== grid
def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def finetune(args: FinetuneArgs) -> dict[str, Any]:
    """Run a budget's settings × seeds (skipping finished runs), select on dev, write the outputs."""
    record = record_for(args.task, args.task_type, args.data, args.negative_label)
    if not (args.model / "config.json").is_file():
        raise CheckpointError(f"{args.model} has no config.json: pass a BERT checkpoint directory "
                              "(e.g. one written by `domainbert model create` or a Hugging Face BERT)")
    config = BertConfig.load(args.model)
    task = prepare_task(record, args.model, args.data_dir, args.max_seq_length or max_length_for(args.budget, record),
                        args.limit,
                        model_max_positions=config.max_position_embeddings)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_precision(args.precision, device)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    selection_path = out / "selection.json"
    expected = fingerprint(task, args.model, args, precision)
    settings = settings_for(record, args, len(task.features["train"]), config.hidden_size)
    seeds = args.seeds or default_seeds(args.budget, record)
    plan = [setting.run_id(seed) for setting in settings for seed in seeds]
    check_outputs(out, expected, plan, args.restart)
    if selection_path.is_file():  # a plan grown by more seeds: the saved run stays the selection
        stored = json.loads(selection_path.read_text(encoding="utf-8"))
        if stored.get("plan") != plan:
            atomic_write_json(selection_path, {**stored, "plan": plan})
    results: list[RunResult] = []
    started = time.perf_counter()
    for setting in settings:
        for seed in seeds:
            path = out / "runs" / setting.run_id(seed) / "result.json"
            if path.is_file():  # check_outputs made sure it was made from the same inputs and settings
                results.append(RunResult(**json.loads(path.read_text(encoding="utf-8"))))
                continue
            result, model, predictions = train_run(task, args.model, setting, seed, args, device)
            result.fingerprint = expected  # hashed once for the whole grid, not once per run
            best_dev = (json.loads(selection_path.read_text())["dev"]
                        if selection_path.is_file() else -math.inf)
            if result.dev > best_dev or not (out / "dev_predictions.jsonl").is_file():
                # This run is the best single run so far: its model and predictions are the output.
                if args.save_model:
                    model.save_pretrained(out / "model", tokenizer=task.tokenizer)
                for split in ("dev", "test"):
                    _write_jsonl(out / f"{split}_predictions.jsonl", task, split, predictions[split])
                atomic_write_json(selection_path, {"run_id": result.run_id, "dev": result.dev,
                                                   "fingerprint": expected, "plan": plan})
            atomic_write_json(path, asdict(result))  # last: the run counts as done only when all is written
            results.append(result)
            del model
    by_setting: dict[str, list[RunResult]] = {}
    for r in results:
        by_setting.setdefault(json.dumps(r.setting, sort_keys=True), []).append(r)
    grid = [{"setting": json.loads(k), "dev": _mean_std([r.dev for r in rs]),
             "test": _mean_std([r.test for r in rs])} for k, rs in by_setting.items()]
    selected = max(grid, key=lambda g: g["dev"]["mean"])
    chosen = by_setting[json.dumps(selected["setting"], sort_keys=True)]
    constant = [r.constant for r in chosen if r.constant]
    metrics = {
        "task": record.name, "display_name": record.display_name, "task_type": record.task_type,
        "group": record.group, "metric": record.metric, "model": str(args.model), "budget": args.budget,
        "model_source": (args.source or ModelSource(args.model)).record(),
        "selected": selected["setting"],
        "dev": {**selected["dev"], "per_seed": {str(r.seed): r.dev for r in chosen}},
        "test": {**selected["test"], "per_seed": {str(r.seed): r.test for r in chosen}},
        "grid": grid, "runs": [asdict(r) for r in results],
        "saved_model_run": (json.loads(selection_path.read_text())["run_id"]
                            if selection_path.is_file() else None),
        "max_seq_length": task.max_length, "markers": task.markers,
        "examples": {s: len(rows) for s, rows in task.examples.items()},
        "limit": args.limit, "max_steps": args.max_steps, "precision": precision, "fingerprint": expected,
        "device": str(device), "wall_seconds": round(time.perf_counter() - started, 2),
        "notes": list(record.notes),
        # the selected setting's runs whose test predictions are all the same: they learned nothing
        "constant": (f"{constant[0]} ({len(constant)} of {len(chosen)} seeds)" if constant else None),
        "breakdown": {split: breakdown(record, *_read_predictions(out / f"{split}_predictions.jsonl"))
                      for split in ("dev", "test") if (out / f"{split}_predictions.jsonl").is_file()},
        "size_checks": task.size_checks,
    }
    atomic_write_json(out / "metrics.json", metrics)
    if args.save_model and (out / "model" / "config.json").is_file():
        write_card(finetuned_card(metrics, out / "model"), out / "model")
    return metrics


# ==================================================================================== command
def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``domainbert finetune``."""
    what = parser.add_argument_group("what to fine-tune on (one of the two)")
    what.add_argument("--task", help=f"a BLURB dataset: {', '.join(DATASETS)}")
    what.add_argument("--task-type", choices=["ner", "relation", "similarity", "multilabel", "classification"],
                      help="your own dataset's task type (with --data)")
    what.add_argument("--data", type=Path, help="folder with your train/dev/test files (with --task-type)")
    what.add_argument("--negative-label", help="your relation set's negative class (left out of micro F1)")
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    add_revision_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="output directory (reused to resume)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="BLURB data directory (default: the `data download` cache)")
    add_budget_argument(parser)
    parser.add_argument("--seed", type=int, nargs="+", action="extend", default=None,
                        help="seed(s) (default: the budget's)")
    parser.add_argument("--lr", type=float, default=None, help="one learning rate (quick, full-epochs, linkbert)")
    parser.add_argument("--batch-size", type=int, default=None, help="one batch size (quick, full-epochs, linkbert)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the dataset's)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps per run")
    parser.add_argument("--max-seq-length", type=int, default=None,
                        help="maximum sub-words (default: the dataset's; token tasks are windowed)")
    parser.add_argument("--limit", type=int, default=None, help="first N examples per split (smoke runs)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    parser.add_argument("--no-save-model", action="store_true", help="do not write the fine-tuned model")
    parser.add_argument("--unpad", action=argparse.BooleanOptionalAction, default=True,
                        help="train the encoder on the real tokens only (default; same results up to rounding); "
                        "--no-unpad: the padded path")
    parser.add_argument("--no-group-by-length", action="store_true",
                        help="random training batches instead of length-grouped ones (slower: more padding)")
    parser.add_argument("--restart", action="store_true",
                        help="discard what --out holds from another model, data or settings (default: refuse)")


def args_from_namespace(ns: argparse.Namespace) -> FinetuneArgs:
    source = resolve_model(ns.model, ns.revision)
    return FinetuneArgs(
        model=source.path, source=source, out=ns.out, task=ns.task, task_type=ns.task_type, data=ns.data,
        negative_label=ns.negative_label, data_dir=ns.data_dir, budget=ns.budget,
        seeds=tuple(ns.seed or ()), learning_rate=ns.lr, batch_size=ns.batch_size, epochs=ns.epochs,
        max_steps=ns.max_steps, max_seq_length=ns.max_seq_length, limit=ns.limit,
        precision=ns.precision, device=ns.device, save_model=not ns.no_save_model,
        group_by_length=not ns.no_group_by_length, unpad=ns.unpad, restart=ns.restart)


def run(ns: argparse.Namespace) -> int:
    """``domainbert finetune``: fine-tune, print the selected setting's dev and test scores."""
    metrics = finetune(args_from_namespace(ns))
    dev, test = metrics["dev"], metrics["test"]
    print(f"{metrics['display_name']} ({metrics['metric']}): dev {100 * dev['mean']:.2f} ± "
          f"{100 * dev['std']:.2f}, test {100 * test['mean']:.2f} ± {100 * test['std']:.2f} "
          f"(n={test['n']}, {metrics['selected']}); wrote {ns.out}")
    return 0
