"""What one ``domainbert finetune`` needs (:class:`FinetuneArgs`, checked up front) and its command line."""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from domainbert.blurb.budgets import BUDGET_NAMES, Budget, add_budget_argument
from domainbert.blurb.registry import DATASETS
from domainbert.blurb.workers import DEVICES_HELP
from domainbert.errors import ConfigError
from domainbert.model.hub import MODEL_HELP, ModelSource, add_revision_argument, resolve_model


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
    micro_batch_size: int | None = None
    """Run each batch as micro-batches of at most this many examples, accumulating their gradients (the
    same update as the whole batch, in less memory: a batch of 32 at length 512 on a small GPU)."""
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
    """``auto`` (bf16 where native, else fp16 on a CUDA GPU, else fp32), ``bf16``, ``fp16`` or ``fp32``."""
    compile: str = "off"
    """``torch.compile`` the encoder for training: ``on``, ``off``, or ``auto`` (on a CUDA GPU)."""
    device: str | None = None
    """``cpu``, ``cuda``, ``cuda:1`` ...; default: cuda when available."""
    save_model: bool = True
    """Write the fine-tuned model (off for a suite that only wants scores)."""
    progress: bool | None = None
    """tqdm progress bars; None: only on a terminal."""
    restart: bool = False
    """Discard what ``out`` holds from other inputs or settings instead of refusing to run."""
    checkpoint_minutes: float | None = 10.0
    """Save a run's state at the end of an epoch once this many minutes have passed since it started or last
    saved (0: every epoch; None: never), so that a killed run resumes from that epoch instead of its first."""
    shard: tuple[int, int] | None = None
    """``(i, n)``: train only the runs that :func:`in_shard` gives to shard ``i`` of ``n`` (a job array);
    the outputs are written by whichever shard finds every run done."""
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
        for name in ("batch_size", "micro_batch_size", "epochs", "max_steps", "limit", "max_seq_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be at least 1, got {value}")
        if self.shard is not None and not (self.shard[1] >= 1 and 0 <= self.shard[0] < self.shard[1]):
            problems.append(f"shard must be I/N with 0 <= I < N, got {self.shard[0]}/{self.shard[1]}")
        if self.compile not in ("auto", "on", "off"):
            problems.append(f"compile must be auto, on or off, got {self.compile!r}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            problems.append(f"learning rate must be positive, got {self.learning_rate}")
        if self.checkpoint_minutes is not None and not self.checkpoint_minutes >= 0:
            problems.append(f"checkpoint_minutes must be 0 or more (or off), got {self.checkpoint_minutes}")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            problems.append(f"max_seq_length {self.max_seq_length} is too short: use at least 8")
        if problems:
            raise ConfigError("; ".join(problems))


def add_dataset_arguments(parser: argparse.ArgumentParser, doing: str) -> None:
    """``--task`` (a BLURB dataset) or ``--task-type`` with ``--data`` (a user's), for ``finetune`` and
    ``evaluate``; ``doing`` names what happens on it ("fine-tune", "score")."""
    what = parser.add_argument_group(f"what to {doing} on (one of the two)")
    what.add_argument("--task", help=f"a BLURB dataset: {', '.join(DATASETS)}")
    what.add_argument("--task-type", choices=["ner", "relation", "similarity", "multilabel", "classification"],
                      help="your own dataset's task type (with --data)")
    what.add_argument("--data", type=Path, help="folder with your train/dev/test files (with --task-type)")
    what.add_argument("--negative-label", help="your relation set's negative class (left out of micro F1)")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """How each fine-tuning run trains: the options ``finetune`` and ``blurb`` share."""
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="BLURB data directory (default: the `data download` cache)")
    add_budget_argument(parser)
    parser.add_argument("--seed", type=int, nargs="+", action="extend", default=None,
                        help="seed(s) (default: the budget's)")
    parser.add_argument("--lr", type=float, default=None, help="one learning rate (quick, full-epochs, linkbert)")
    parser.add_argument("--batch-size", type=int, default=None, help="one batch size (quick, full-epochs, linkbert)")
    parser.add_argument("--micro-batch-size", type=int, default=None,
                        help="run each batch in parts of at most this many examples, accumulating their gradients "
                        "(the same updates, less memory)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the dataset's)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps per run")
    parser.add_argument("--max-seq-length", type=int, default=None,
                        help="maximum sub-words (default: the dataset's; token tasks are windowed)")
    parser.add_argument("--limit", type=int, default=None, help="first N examples per split (smoke runs)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                        help="auto: bf16 where native, else fp16 on a CUDA GPU (with loss scaling), else fp32")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    parser.add_argument("--compile", nargs="?", const="on", choices=["auto", "on", "off"], default="off",
                        help="torch.compile the encoder while training: on (--compile alone), off (default), auto "
                        "(on a CUDA GPU)")
    parser.add_argument("--unpad", action=argparse.BooleanOptionalAction, default=True,
                        help="train the encoder on the real tokens only (default; same results up to rounding); "
                        "--no-unpad: the padded path")
    parser.add_argument("--no-group-by-length", action="store_true",
                        help="random training batches instead of length-grouped ones (slower: more padding)")
    parser.add_argument("--restart", action="store_true",
                        help="discard what --out holds from another model, data or settings (default: refuse)")
    parser.add_argument("--checkpoint-minutes", type=parse_minutes, default=10.0, metavar="M",
                        help="save a run's state at an epoch's end once M minutes passed since the last save, so a "
                        "killed run resumes from there (default 10; 0: every epoch; off: never)")
    parser.add_argument("--shard", type=parse_shard, default=None, metavar="I/N",
                        help="train only shard I (from 0) of N of the runs (a job array: one process per I, all "
                        "into the same --out); the outputs are written when every shard's runs are done")


def training_options(ns: argparse.Namespace) -> dict[str, Any]:
    """:func:`add_training_arguments`' values as :class:`FinetuneArgs` fields."""
    return {"data_dir": ns.data_dir, "budget": ns.budget, "seeds": tuple(ns.seed or ()), "learning_rate": ns.lr,
            "batch_size": ns.batch_size, "micro_batch_size": ns.micro_batch_size, "epochs": ns.epochs,
            "max_steps": ns.max_steps, "max_seq_length": ns.max_seq_length, "limit": ns.limit,
            "precision": ns.precision, "device": ns.device, "compile": ns.compile, "unpad": ns.unpad,
            "group_by_length": not ns.no_group_by_length, "restart": ns.restart, "shard": ns.shard,
            "checkpoint_minutes": ns.checkpoint_minutes}


def in_shard(task: str, run_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether shard ``(i, n)`` trains ``task``'s run ``run_id`` (None: every run): a hash of the two,
    so the slice is the same in every process, whatever the datasets and runs the others see."""
    if shard is None:
        return True
    digest = hashlib.blake2b(f"{task}/{run_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shard[1] == shard[0]


def parse_minutes(text: str) -> float | None:
    """``--checkpoint-minutes``: a number of minutes, 0 or more, or ``off`` (None)."""
    if text.strip().lower() == "off":
        return None
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if not minutes >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes (0 or more) or off")
    return minutes


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard I/N`` (``I`` from 0) as ``(I, N)``."""
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit()) or not 0 <= int(i) < int(n):
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N with 0 <= I < N (e.g. 3/16 for "
                                         "$SLURM_ARRAY_TASK_ID of an array 0-15)")
    return int(i), int(n)


#: What a per-dataset override file may set (its keys, with ``-`` or ``_``), as FinetuneArgs fields.
OVERRIDABLE = {"lr": "learning_rate", "learning_rate": "learning_rate", "batch_size": "batch_size",
               "micro_batch_size": "micro_batch_size",
               "epochs": "epochs", "max_steps": "max_steps", "max_seq_length": "max_seq_length",
               "precision": "precision", "unpad": "unpad", "group_by_length": "group_by_length",
               "eval_batch_size": "eval_batch_size", "seed": "seeds", "seeds": "seeds"}


def read_overrides(path: Path) -> dict[str, dict[str, Any]]:
    """A YAML file of per-dataset options (``chemprot: {batch-size: 16}``) as FinetuneArgs fields by dataset;
    an unknown dataset or option, or a file that is not such a mapping, is a one-line ConfigError."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--overrides {path} cannot be read ({exc.strerror or exc}): pass a YAML file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"--overrides {path} is not valid YAML ({first}): write one mapping per dataset, e.g. "
                          "`chemprot: {batch-size: 16}`") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"--overrides {path} must map dataset names to options, e.g. `chemprot: {{batch-size: 16}}`")
    out: dict[str, dict[str, Any]] = {}
    for dataset, options in data.items():
        if dataset not in DATASETS:
            raise ConfigError(f"--overrides {path}: {dataset!r} is not a BLURB dataset; use one of "
                              f"{', '.join(DATASETS)}")
        fields: dict[str, Any] = {}
        for key, value in options.items():
            field = OVERRIDABLE.get(str(key).replace("-", "_"))
            if field is None:
                raise ConfigError(f"--overrides {path}: {dataset}: {key!r} is not an option it can set; use "
                                  f"{', '.join(k.replace('_', '-') for k in OVERRIDABLE)}")
            fields[field] = tuple(value if isinstance(value, list) else [value]) if field == "seeds" else value
        out[dataset] = fields
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``domainbert finetune``."""
    add_dataset_arguments(parser, "fine-tune")
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    add_revision_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="output directory (reused to resume)")
    add_training_arguments(parser)
    parser.add_argument("--no-save-model", action="store_true", help="do not write the fine-tuned model")
    parser.add_argument("--devices", default=None, metavar="DEV,DEV,...", help=DEVICES_HELP)


def args_from_namespace(ns: argparse.Namespace) -> FinetuneArgs:
    source = resolve_model(ns.model, ns.revision)
    return FinetuneArgs(model=source.path, source=source, out=ns.out, task=ns.task, task_type=ns.task_type,
                        data=ns.data, negative_label=ns.negative_label, save_model=not ns.no_save_model,
                        **training_options(ns))
