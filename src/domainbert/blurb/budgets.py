"""Fine-tuning budgets: which settings (rate, batch, epochs, warmup, weight decay) and seeds a
``finetune`` or ``blurb`` run trains, and how it picks among them on dev.

Each budget is named for what it is, and :data:`BUDGETS` holds the definition the reports print:

``quick``
    The cheap budget (a smoke test of a model, minutes on a CPU): one seed, at most
    :data:`QUICK_MAX_EPOCHS` epochs (more for a set too small for :data:`QUICK_MIN_STEPS` steps), and
    the rate chosen on dev among a few: the dataset's published rate (LinkBERT's recipe, below) and,
    for a model narrower than BERT-base, a higher one (the record's rate scaled by
    (768 / width) ** 2.5, which narrow models trained from scratch need; benchmarks/RESULTS.md). A
    pretrained narrow checkpoint is so never judged only at a rate that keeps it from learning.
``full-epochs``
    ``quick``'s rates for the dataset record's full epochs, three seeds.
``grid``
    domainbert's grid: lr {1e-5, 2e-5, 3e-5, 5e-5} x batch {16, 32} at the record's epochs, five seeds;
    the setting with the best mean dev score is reported.
``paper``
    The PubMedBERT paper's protocol (Gu et al. 2021, §2.5): lr {1e-5, 3e-5, 5e-5} x batch {16, 32},
    10% warmup then linear decay, the epoch chosen on dev (2 at least), ten seeds for BIOSSES, BioASQ
    and PubMedQA and five for the others. The paper searches epochs "2-60" without per-dataset ranges in
    the sources at hand, so each run trains up to the record's epochs (or ``--epochs``) and keeps its
    best epoch on dev from the second on.
``linkbert``
    LinkBERT's published per-dataset recipe for BioLinkBERT-base (michiyasunaga/LinkBERT,
    ``src/run_examples_blurb_biolinkbert-base.sh``), the best-documented public recipe that reproduces
    published BLURB rows: its rate, batch, epochs, maximum length and warmup per dataset, no weight
    decay, the final epoch's model (no selection on dev); seeds 42, 43, 44.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from domainbert.blurb.registry import DatasetRecord
from domainbert.errors import ConfigError

Budget = Literal["quick", "full-epochs", "grid", "paper", "linkbert"]
BUDGET_NAMES: tuple[str, ...] = get_args(Budget)

BUDGETS: dict[str, str] = {
    "quick": "the cheap budget: one seed, at most 3 epochs (more for a tiny set), the rate chosen on dev among "
             "the dataset's published rate and, for a model narrower than BERT-base, a higher one",
    "full-epochs": "quick's rates for each dataset's full epochs, three seeds, selected on dev",
    "grid": "domainbert's grid: lr {1e-5, 2e-5, 3e-5, 5e-5} x batch {16, 32} at each dataset's epochs, five seeds, "
            "the setting with the best mean dev score",
    "paper": "the PubMedBERT paper's protocol: lr {1e-5, 3e-5, 5e-5} x batch {16, 32}, 10% warmup, the epoch "
             "chosen on dev (2 at least), 10 seeds for BIOSSES, BioASQ and PubMedQA and 5 for the others",
    "linkbert": "LinkBERT's published per-dataset recipe (BioLinkBERT-base): its rate, batch, epochs, length and "
                "warmup, no weight decay, the final epoch's model; seeds 42, 43, 44",
}
"""Each budget's definition, as the reports print it."""

QUICK_MAX_EPOCHS = 3
"""``quick`` trains at most this many epochs (the record's epochs when fewer) ..."""
QUICK_MIN_STEPS = 100
"""... unless that is fewer optimizer steps than this: a small set (BIOSSES: 64 pairs, 4 steps an
epoch) then trains more epochs, up to the record's, so that it gets past its first few updates."""
BASE_WIDTH = 768
"""The hidden size the published rates are tuned for (BERT-base's)."""
WIDTH_EXPONENT = 2.5
"""The higher quick candidate scales the record's rate by (BASE_WIDTH / hidden size) ** WIDTH_EXPONENT."""
MAX_QUICK_RATE = 1e-3
"""The scaled rate never goes above this (post-LN fine-tuning diverges beyond it)."""

GRID_LEARNING_RATES = (1e-5, 2e-5, 3e-5, 5e-5)
GRID_BATCH_SIZES = (16, 32)
PAPER_LEARNING_RATES = (1e-5, 3e-5, 5e-5)
PAPER_BATCH_SIZES = (16, 32)
PAPER_MIN_EPOCH = 2
PAPER_TEN_SEEDS = ("biosses", "bioasq", "pubmedqa")
"""The datasets the paper averages over ten runs (five for the others)."""


@dataclass(frozen=True)
class Setting:
    """One point of a budget: the optimizer's settings for one run (a seed is added per run)."""

    learning_rate: float
    batch_size: int
    epochs: int
    warmup: float | int = 0.1
    """A share of the steps below 1 (0.1 = 10%), or a whole number of steps."""
    weight_decay: float = 0.01
    """AdamW's decay on weights (never on biases and LayerNorm)."""
    select: Literal["best-epoch", "final"] = "best-epoch"
    """``best-epoch``: keep the epoch with the best dev score; ``final``: the last epoch's model."""
    min_epoch: int = 1
    """The first epoch that may be kept as the best."""

    def run_id(self, seed: int) -> str:
        base = f"lr{self.learning_rate:g}-bs{self.batch_size}-ep{self.epochs}"
        extra = "".join([f"-wu{self.warmup:g}" if self.warmup != 0.1 else "",
                         f"-wd{self.weight_decay:g}" if self.weight_decay != 0.01 else "",
                         "-final" if self.select == "final" else "",
                         f"-from{self.min_epoch}" if self.min_epoch != 1 else ""])
        return f"{base}{extra}-seed{seed}"


@dataclass(frozen=True)
class Recipe:
    """One dataset's published fine-tuning recipe."""

    learning_rate: float
    batch_size: int
    epochs: int
    max_seq_length: int
    warmup: float | int
    """0: none; a share below 1; or a whole number of steps."""


#: LinkBERT's BioLinkBERT-base recipe per BLURB dataset (``src/run_examples_blurb_biolinkbert-base.sh``;
#: fp16 there, bf16 autocast here where the hardware has it).
LINKBERT_BASE: dict[str, Recipe] = {
    "pubmedqa": Recipe(2e-5, 16, 30, 512, 100),
    "bioasq": Recipe(2e-5, 16, 20, 512, 100),
    "biosses": Recipe(1e-5, 16, 30, 512, 0.0),
    "hoc": Recipe(4e-5, 32, 40, 512, 0.0),
    "chemprot": Recipe(3e-5, 32, 10, 256, 0.0),
    "ddi": Recipe(2e-5, 32, 5, 256, 0.0),
    "gad": Recipe(3e-5, 32, 10, 256, 0.0),
    "ebm-pico": Recipe(5e-5, 32, 1, 512, 0.0),
    "jnlpba": Recipe(1e-5, 16, 5, 512, 0.1),
    "ncbi-disease": Recipe(5e-5, 32, 20, 512, 0.1),
    "bc2gm": Recipe(6e-5, 32, 50, 512, 0.1),
    "bc5-disease": Recipe(5e-5, 16, 8, 512, 0.1),
    "bc5-chem": Recipe(5e-5, 32, 20, 512, 0.1),
}
LINKBERT_SEEDS = (42, 43, 44)


def recipe(record: DatasetRecord) -> Recipe | None:
    """LinkBERT's recipe for a BLURB dataset; None for a user's dataset (whatever its name)."""
    return LINKBERT_BASE.get(record.name) if record.download_name is not None else None


def default_seeds(budget: str, record: DatasetRecord) -> tuple[int, ...]:
    """The seeds a budget runs when none are given."""
    if budget == "quick":
        return (42,)
    if budget in ("full-epochs", "linkbert"):
        return LINKBERT_SEEDS
    if budget == "paper" and record.name in PAPER_TEN_SEEDS:
        return tuple(range(42, 52))
    return (42, 43, 44, 45, 46)


def max_length_for(budget: str, record: DatasetRecord) -> int:
    """The maximum sub-word length a budget fine-tunes with (LinkBERT's per dataset, else the record's)."""
    published = recipe(record)
    return published.max_seq_length if budget == "linkbert" and published else record.max_seq_length


def scaled_rate(record_rate: float, hidden_size: int) -> float:
    """The record's rate (tuned for BERT-base) scaled up for a narrower model: measured on NCBI-disease
    with the 4 x 256 shape from random weights (benchmarks/RESULTS.md), test F1 40.1 at 5e-5, 48.4 at
    1e-4, 51.9 at 2.6e-4, 57.6 at 1e-3. For BERT-base and wider it is the record's."""
    scale = max(1.0, BASE_WIDTH / hidden_size) ** WIDTH_EXPONENT
    return min(MAX_QUICK_RATE, max(record_rate, record_rate * scale))


def quick_rates(record: DatasetRecord, hidden_size: int) -> tuple[float, ...]:
    """The rates ``quick`` chooses among on dev: the dataset's published one (LinkBERT's; the record's for
    a user's dataset) and, for a model narrower than BERT-base, the record's rate scaled for its width."""
    published = recipe(record)
    rates = {published.learning_rate if published else record.finetune.learning_rate}
    if hidden_size < BASE_WIDTH:
        rates.add(scaled_rate(record.finetune.learning_rate, hidden_size))
    return tuple(sorted(rates))


def settings_for(record: DatasetRecord, args: Any, train_size: int, hidden_size: int = BASE_WIDTH) -> list[Setting]:
    """The settings ``args.budget`` trains for ``record`` (``args`` also carries ``learning_rate``,
    ``batch_size`` and ``epochs`` overrides), given the training split's size and the model's width."""
    defaults = record.finetune
    budget = args.budget
    if budget in ("quick", "full-epochs"):
        published = recipe(record)
        batch_size = args.batch_size or (published.batch_size if published else defaults.batch_size)
        steps_per_epoch = max(1, math.ceil(train_size / batch_size))
        epochs = args.epochs or (defaults.epochs if budget == "full-epochs" else min(
            defaults.epochs, max(QUICK_MAX_EPOCHS, math.ceil(QUICK_MIN_STEPS / steps_per_epoch))))
        rates = (args.learning_rate,) if args.learning_rate else quick_rates(record, hidden_size)
        return [Setting(rate, batch_size, epochs) for rate in rates]
    if budget == "grid":
        epochs = args.epochs or defaults.epochs
        return [Setting(lr, bs, epochs) for lr in GRID_LEARNING_RATES for bs in GRID_BATCH_SIZES]
    if budget == "paper":
        epochs = args.epochs or defaults.epochs
        return [Setting(lr, bs, epochs, min_epoch=min(PAPER_MIN_EPOCH, epochs))
                for lr in PAPER_LEARNING_RATES for bs in PAPER_BATCH_SIZES]
    if budget == "linkbert":
        published = recipe(record)
        if published is None:
            raise ConfigError(f"{record.name} has no LinkBERT recipe (it is not a BLURB dataset): use --budget "
                              "quick, full-epochs or grid")
        return [Setting(args.learning_rate or published.learning_rate, args.batch_size or published.batch_size,
                        args.epochs or published.epochs, warmup=published.warmup, weight_decay=0.0, select="final")]
    raise ConfigError(f"unknown budget {budget!r}; choose from {', '.join(BUDGET_NAMES)}")


def add_budget_argument(parser: argparse.ArgumentParser) -> None:
    """``--budget`` of ``finetune`` and ``blurb``, its help the budgets' definitions."""
    parser.add_argument("--budget", choices=BUDGET_NAMES, default="quick",
                        help="; ".join(f"{name}: {text}" for name, text in BUDGETS.items()).replace("%", "%%"))
