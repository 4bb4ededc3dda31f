"""What decides a pretraining run: :class:`PretrainArgs` (typed, checked, saved in every checkpoint),
which of its fields a resume may change, and the recipes that set them.

Recipes are YAML files of ``PretrainArgs`` fields (and ``model``, ``model_overrides``), shipped in
``domainbert/train/recipes/`` and found by name (``--recipe small-cpu``) or given as a path; a recipe
that is not found is an error, never a silent default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from domainbert.data.examples import OBJECTIVES
from domainbert.errors import ConfigError
from domainbert.model.configuration import BertConfig
from domainbert.train.optim import warmup_steps
from domainbert.train.precision import PRECISIONS

__all__ = ["PretrainArgs", "RESUMABLE", "RECIPES", "RECIPE_EXTRA", "recipe_path", "load_recipe"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: A field's type (that of its default) -> (check, what to say).
_KINDS: dict[type, tuple[Callable[[Any], bool], str]] = {
    int: (_is_int, "a whole number"), float: (_is_number, "a number"), str: (lambda v: isinstance(v, str), "a word"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
}


POSITION_INITS = ("normal", "sinusoidal")
ATTENTION_INITS = ("normal", "local")
COMPILE_MODES = ("auto", "on", "off")
#: The fields whose default is None (a number when set), and what None means.
OPTIONAL = {"masked_lm_prob": "the data's", "dropout": "the model config's"}


@dataclass
class PretrainArgs:
    """Everything that decides a pretraining run (saved in every checkpoint)."""

    max_steps: int = 1000
    """Optimizer steps in the run (the learning-rate schedule decays to 0 at the last one)."""
    global_batch_size: int = 256
    """Sequences per optimizer step, all ranks together: micro x accumulation x world size."""
    micro_batch_size: int = 32
    """Sequences per forward pass on one device."""
    optimizer: str = "adamw"
    """``adamw`` (BERT) or ``lamb`` (NVIDIA's large-batch BERT recipe)."""
    learning_rate: float = 1e-3
    """Peak learning rate."""
    warmup: float | int = 0.1
    """Warmup: a share of max_steps as a float below 1 (0.1), a number of steps as an integer (500);
    a float of 1 or more is refused as ambiguous (1.0: one step, or all of them?)."""
    decay: float = 1.0
    """Share of max_steps over which the rate decays linearly to 0 after warmup: 1.0 from the end of
    warmup (BERT); 0.2 holds the peak until the last 20% (warmup-stable-decay, for short budgets)."""
    dropout: float | None = None
    """Dropout (hidden and attention) while pretraining; None: the model config's. The config, and
    so the exported model, keeps its own (BERT's 0.1) for fine-tuning."""
    masked_lm_prob: float | None = None
    """Share of tokens masked (BERT: 0.15; Wettig et al. 2023 find more can help); None: the data's.
    Dynamically masked data masks at this rate when loading; statically masked data must have
    been prepared at it (``data prepare --masked-lm-prob``), else the run is refused."""
    objective: str = "mlm+nsp"
    """``mlm+nsp``: BERT's loss, masked LM + next sentence prediction; ``mlm``: masked LM alone (RoBERTa,
    MosaicBERT, ModernBERT): no NSP loss, every example read as one segment (token type 0), on data
    prepared with ``data prepare --objective mlm`` (whole sentences packed across documents) or on
    BERT's pairs. The exported model keeps an NSP head, untrained under ``mlm`` (its card says so)."""
    position_init: str = "normal"
    """How a model pretrained from scratch starts its learned position table: ``normal`` (BERT's
    N(0, initializer_range)) or ``sinusoidal`` (the Transformer's sinusoids at the same scale; see
    ``modeling.sinusoidal_positions``). Only a new model is initialised: ``--model DIR`` keeps its own."""
    attention_init: str = "normal"
    """How a new model's attention starts: ``normal`` (BERT's init) or ``local`` (each head starts
    attending to one neighbour, offsets -1, +1, -2, +2 ...; see
    ``modeling.local_attention``)."""
    weight_decay: float = 0.01
    """Decoupled weight decay, not applied to LayerNorm weights and biases."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam's moment decay rates."""
    eps: float = 1e-6
    """Adam epsilon (BERT used 1e-6)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    precision: str = "auto"
    """``auto`` (bf16 autocast where native), ``bf16`` or ``fp32``."""
    seed: int = 0
    """Seed of the weight init, dropout and data order."""
    save_every: int = 500
    """Write a checkpoint every this many steps (and at the end)."""
    keep_last: int = 3
    """How many checkpoints to keep."""
    log_every: int = 10
    """Flush metrics every this many steps."""
    eval_every: int = 0
    """Score the held-out data every this many steps (0: never)."""
    eval_batches: int = 10
    """Micro-batches of held-out data per evaluation."""
    compile: str = "auto"
    """Compile the encoder with ``torch.compile`` (in place: checkpoint names are unchanged): ``on``,
    ``off``, or ``auto``: on for CUDA (measured faster on an H100, benchmarks/RESULTS.md), off on the
    CPU. true/false (older recipes and checkpoints) mean on/off."""
    unpad: bool = False
    """Run the encoder on the real tokens only (:class:`domainbert.model.modeling.Packing`, found on the
    host for each micro-batch); the same losses up to float rounding. See benchmarks/RESULTS.md."""
    world_size: int = field(default=1, repr=False)
    """Set from the torchrun environment, not by hand."""

    def __post_init__(self) -> None:
        if isinstance(self.compile, bool):  # older recipes and checkpoints
            self.compile = "on" if self.compile else "off"
        wrong = [f"{f.name} must be {_KINDS[type(f.default)][1]}, got {getattr(self, f.name)!r}"
                 for f in fields(self) if f.name not in ("betas", "warmup") and f.default is not None
                 and not _KINDS[type(f.default)][0](getattr(self, f.name))]
        wrong += [f"{f.name} must be a number or null ({OPTIONAL[f.name]}), got {getattr(self, f.name)!r}"
                  for f in fields(self) if f.default is None and getattr(self, f.name) is not None
                  and not _is_number(getattr(self, f.name))]
        betas = self.betas
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(_is_number(b) for b in betas)):
            wrong.append(f"betas must be two numbers, got {betas!r}")
        if not _is_number(self.warmup):
            wrong.append(f"warmup must be a number (a share below 1, or steps), got {self.warmup!r}")
        if wrong:  # a recipe or flag of the wrong type: say which before comparing anything
            raise ConfigError("; ".join(wrong))
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        problems = []
        for name in ("max_steps", "global_batch_size", "micro_batch_size", "save_every", "keep_last",
                     "log_every", "eval_batches", "world_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            problems.append(f"eval_every must be 0 (off) or positive, got {self.eval_every}")
        if self.position_init not in POSITION_INITS:
            problems.append(f"position_init {self.position_init!r} is not one of {', '.join(POSITION_INITS)}")
        if self.attention_init not in ATTENTION_INITS:
            problems.append(f"attention_init {self.attention_init!r} is not one of {', '.join(ATTENTION_INITS)}")
        if self.objective not in OBJECTIVES:
            problems.append(f"objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}")
        if self.optimizer not in ("adamw", "lamb"):
            problems.append(f"optimizer {self.optimizer!r} is not adamw or lamb")
        if self.compile not in COMPILE_MODES:
            problems.append(f"compile {self.compile!r} is not one of {', '.join(COMPILE_MODES)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm must be > 0 (BERT clips at 1.0), got {self.max_grad_norm}")
        if not self.eps > 0:
            problems.append(f"eps must be > 0 (BERT uses 1e-6), got {self.eps}")
        if not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas must be in [0, 1) (BERT uses 0.9, 0.999), got {list(self.betas)}")
        if not 0 < self.decay <= 1:
            problems.append(f"decay must be a share in (0, 1] (1.0: decay from the end of warmup, as BERT), "
                            f"got {self.decay}")
        if self.masked_lm_prob is not None and not 0 < self.masked_lm_prob < 1:
            problems.append(f"masked_lm_prob must be in (0, 1) (BERT uses 0.15), got {self.masked_lm_prob}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1) (BERT uses 0.1), got {self.dropout}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0 (BERT uses 0.01), got {self.weight_decay}")
        try:
            if warmup_steps(self.warmup, self.max_steps) > self.max_steps:
                problems.append(f"warmup {self.warmup} is longer than the run ({self.max_steps} steps)")
        except ValueError as exc:
            problems.append(str(exc))
        per_step = self.micro_batch_size * self.world_size
        if not problems and self.global_batch_size % per_step:
            lower = max(per_step, self.global_batch_size - self.global_batch_size % per_step)
            problems.append(
                f"global_batch_size {self.global_batch_size} is not divisible by micro_batch_size "
                f"{self.micro_batch_size} x world size {self.world_size} = {per_step}: use a global batch of "
                f"{lower} or {lower + per_step}, or another micro batch size")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step on each rank."""
        return self.global_batch_size // (self.micro_batch_size * self.world_size)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def resume_changes(self, stored: dict[str, Any]) -> list[str]:
        """The fields a resume may not change that differ from a checkpoint's ``stored`` arguments,
        as ``name: old -> new`` (see :data:`RESUMABLE`)."""
        stored = {**ADDED_LATER, **stored}  # a checkpoint older than a field ran as its default says
        return [f"{k}: {stored[k]!r} -> {v!r}" for k, v in self.to_dict().items()
                if k not in RESUMABLE and k in stored and stored[k] != v]


#: Fields added after checkpoints were first written, with what a checkpoint without them ran as.
ADDED_LATER: dict[str, Any] = {"objective": "mlm+nsp"}
#: Arguments a resumed run may change: when to save, log and evaluate, and how each step is laid out
#: on the hardware (micro batch, processes, compilation), which leave the schedule and the samples
#: of every step as they were. Every other field decides what the run computes.
RESUMABLE = frozenset({"save_every", "keep_last", "log_every", "eval_every", "eval_batches", "compile",
                       "unpad", "micro_batch_size", "world_size"})


#: The options a recipe may set besides the PretrainArgs fields.
RECIPE_EXTRA = {"model", "model_overrides"}

_RECIPE_DIR = resources.files("domainbert.train").joinpath("recipes")
#: The shipped recipes, by name (``domainbert/train/recipes/<name>.yaml``).
RECIPES: tuple[str, ...] = tuple(sorted(p.name[:-len(".yaml")] for p in _RECIPE_DIR.iterdir()
                                        if p.name.endswith(".yaml")))


def recipe_path(recipe: str | Path) -> Path:
    """A shipped recipe's file by name (``small-cpu``), or ``recipe`` itself when it is a file.

    Neither is an error naming the shipped recipes: a recipe is never silently replaced by defaults.
    """
    path = Path(recipe)
    if path.is_file():
        return path
    if str(recipe) in RECIPES:
        return Path(str(_RECIPE_DIR.joinpath(f"{recipe}.yaml")))
    raise ConfigError(f"recipe {recipe} not found: pass a YAML file or one of the shipped recipes "
                      f"({', '.join(RECIPES)})")


def load_recipe(recipe: str | Path) -> dict[str, Any]:
    """Read a YAML recipe (a shipped one by name, or a file); unknown keys are refused with the known ones.

    A recipe may start from another with ``base:`` (a shipped recipe's name, or a YAML file, relative
    to the recipe's own folder) and set only what differs; its ``model_overrides`` are laid over the
    base's. The result has no ``base`` key: it is the options the run gets.
    """
    return _load_recipe(recipe_path(recipe), ())


def _load_recipe(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    if path.resolve() in chain:
        names = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ConfigError(f"recipe {path}: its base chain loops ({names}); remove one of the base: lines")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of option: value")
    known = {f.name for f in fields(PretrainArgs)} - {"world_size"} | RECIPE_EXTRA | {"base"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"recipe {path} has unknown option(s) {', '.join(sorted(unknown))}: "
                          f"known are {', '.join(sorted(known))}")
    if "model" in data and not isinstance(data["model"], str):
        raise ConfigError(f"recipe {path}: model must be a preset name or a model directory, got {data['model']!r}")
    if not isinstance(data.get("model_overrides") or {}, dict):
        raise ConfigError(f"recipe {path}: model_overrides must be a mapping of BertConfig field: value")
    overrides = data.get("model_overrides") or {}
    bad = set(overrides) - set(BertConfig.__dataclass_fields__)
    if bad:
        raise ConfigError(f"recipe {path}: model_overrides has unknown BertConfig field(s) {', '.join(sorted(bad))}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"recipe {path}: base must name a shipped recipe ({', '.join(RECIPES)}) or a YAML file, "
                          f"got {base!r}")
    relative = path.parent / base
    try:
        base_path = relative if relative.is_file() else recipe_path(base)
    except ConfigError as exc:
        raise ConfigError(f"recipe {path}: base {exc}") from None
    parent = _load_recipe(base_path, (*chain, path.resolve()))
    merged_overrides = {**(parent.get("model_overrides") or {}), **overrides}
    merged = {**parent, **data}
    if merged_overrides:
        merged["model_overrides"] = merged_overrides
    return merged
