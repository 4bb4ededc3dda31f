"""``BertConfig``: the shape of a BERT model, as a typed dataclass that round-trips HF ``config.json``.

The field names and meanings are exactly those of Hugging Face's ``BertConfig`` (and of the original
google-research/bert ``bert_config.json``), so a ``config.json`` written here loads in
``transformers`` and any BERT ``config.json`` (bert-base, BioBERT, PubMedBERT) loads here. Keys this
class does not model (``architectures``, ``transformers_version``, ``id2label`` ...) are kept in
``extra`` and written back, so nothing a checkpoint carried is lost.

The config is validated on creation; every error names both numbers and the fix. Named presets:
``tiny`` (tests), ``small`` (4 layers, 256 hidden), ``base`` (BERT-base, the PubMedBERT shape) and
``large``. Importing this module does not import torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from domainbert.atomic import atomic_write_json
from domainbert.errors import CheckpointError, ConfigError

CONFIG_NAME = "config.json"

#: Activation names accepted in ``hidden_act`` (the ones transformers' BERT maps to a function).
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh")


@dataclass
class BertConfig:
    """The hyper-parameters that fix a BERT encoder's shape (same names as Hugging Face's)."""

    vocab_size: int = 30522
    """Rows of the word-embedding matrix; may exceed the lines of ``vocab.txt`` (PubMedBERT: 28,895
    lines, 30,522 rows) but never be smaller."""
    hidden_size: int = 768
    """Width H of every token vector."""
    num_hidden_layers: int = 12
    """Number L of Transformer encoder layers."""
    num_attention_heads: int = 12
    """Attention heads per layer; must divide ``hidden_size``."""
    intermediate_size: int = 3072
    """Width of the feed-forward layer inside each encoder layer (4H in BERT)."""
    hidden_act: str = "gelu"
    """Feed-forward (and MLM transform) activation: ``gelu`` is the exact erf GELU of BERT."""
    hidden_dropout_prob: float = 0.1
    """Dropout on embeddings and on every residual branch."""
    attention_probs_dropout_prob: float = 0.1
    """Dropout on the attention probabilities."""
    max_position_embeddings: int = 512
    """Longest sequence the model can read (rows of the position-embedding matrix)."""
    type_vocab_size: int = 2
    """Token types (segments): 2 for ``[CLS] A [SEP] B [SEP]``."""
    initializer_range: float = 0.02
    """Standard deviation of the normal init of every weight matrix and embedding."""
    layer_norm_eps: float = 1e-12
    """Epsilon of every LayerNorm (BERT's 1e-12)."""
    pad_token_id: int = 0
    """Id of ``[PAD]``; its word-embedding row is zero at init."""
    classifier_dropout: float | None = None
    """Dropout before a task head; None means ``hidden_dropout_prob``."""
    problem_type: str | None = None
    """For sequence classification: ``single_label_classification``,
    ``multi_label_classification`` or ``regression`` (None: chosen from the labels, as in HF)."""
    id2label: dict[int, str] | None = None
    """Label names of a task head, by class index (written as ``id2label`` / ``label2id``)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys of a loaded ``config.json`` that this class does not model, written back unchanged."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not problems and self.hidden_size % self.num_attention_heads:
            lower = self.hidden_size - self.hidden_size % self.num_attention_heads
            problems.append(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}: use a hidden_size that is a multiple of it (e.g. "
                f"{lower or self.num_attention_heads}) or a head count that divides {self.hidden_size}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{name} must be a number, got {value!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                problems.append(f"{name} must be in [0, 1), got {value}")
        if self.classifier_dropout is not None and not 0.0 <= self.classifier_dropout < 1.0:
            problems.append(f"classifier_dropout must be in [0, 1) or null, got {self.classifier_dropout}")
        if self.hidden_act not in ACTIVATIONS:
            problems.append(f"hidden_act {self.hidden_act!r} is not supported: use one of {', '.join(ACTIVATIONS)}")
        if not self.initializer_range > 0:
            problems.append(f"initializer_range must be > 0, got {self.initializer_range}")
        if not self.layer_norm_eps > 0:
            problems.append(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        if isinstance(self.vocab_size, int) and not 0 <= self.pad_token_id < self.vocab_size:
            problems.append(f"pad_token_id {self.pad_token_id} is outside the vocabulary (vocab_size "
                            f"{self.vocab_size}): set it to the id of [PAD] in vocab.txt (usually 0)")
        if self.problem_type not in (None, "single_label_classification",
                                     "multi_label_classification", "regression"):
            problems.append(f"problem_type {self.problem_type!r} is not one of single_label_classification, "
                            "multi_label_classification, regression")
        if self.id2label is not None:
            if not isinstance(self.id2label, dict) or not all(str(k).lstrip("-").isdigit() for k in self.id2label):
                raise ConfigError(f"id2label must map class indices to names ({{\"0\": \"O\", \"1\": \"B\"}}), "
                                  f"got {str(self.id2label)[:80]}: fix config.json")
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            if sorted(self.id2label) != list(range(len(self.id2label))):
                problems.append(f"id2label keys must be 0..{len(self.id2label) - 1}, got {sorted(self.id2label)}")
        if problems:
            raise ConfigError("; ".join(problems))

    # ----------------------------------------------------------------------------- derived values
    @property
    def head_dim(self) -> int:
        """Width of one attention head: hidden_size / num_attention_heads."""
        return self.hidden_size // self.num_attention_heads

    @property
    def num_labels(self) -> int:
        """Number of classes of a task head (2 when no labels are named, as in HF)."""
        return len(self.id2label) if self.id2label else 2

    def with_labels(self, labels: list[str], problem_type: str | None = None) -> BertConfig:
        """A copy of this config carrying a task head's label names."""
        return replace(self, id2label=dict(enumerate(labels)), problem_type=problem_type,
                       extra=dict(self.extra))

    # ----------------------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> BertConfig:
        """A named size (``tiny``, ``small``, ``base``, ``large``), with fields overridden by keyword."""
        if name not in PRESETS:
            raise ConfigError(f"unknown model preset {name!r}: choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    # ----------------------------------------------------------------------------- HF config.json
    def to_dict(self) -> dict[str, Any]:
        """The Hugging Face ``config.json`` contents (``model_type: bert``, label maps, extras)."""
        out: dict[str, Any] = {k: v for k, v in self.extra.items()}
        data = asdict(self)
        data.pop("extra")
        id2label = data.pop("id2label")
        if data["problem_type"] is None:
            data.pop("problem_type")
        out.update(data)
        out["model_type"] = "bert"
        out.setdefault("position_embedding_type", "absolute")
        if id2label is not None:
            out["id2label"] = {str(k): v for k, v in id2label.items()}
            out["label2id"] = {v: k for k, v in id2label.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BertConfig:
        """Build from a ``config.json`` dict; unknown keys go to ``extra``; checks it is a BERT."""
        model_type = data.get("model_type", "bert")
        if model_type != "bert":
            raise ConfigError(f"config.json has model_type {model_type!r}; domainbert reads BERT "
                              "checkpoints only (model_type 'bert')")
        pos = data.get("position_embedding_type", "absolute")
        if pos != "absolute":
            raise ConfigError(f"position_embedding_type {pos!r} is not supported: domainbert models "
                              "absolute position embeddings only, as in BERT")
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items()
                 if k not in names and k not in ("label2id", "model_type", "position_embedding_type")}
        try:
            return cls(**known, extra=extra)
        except TypeError as exc:  # a value of the wrong type that __post_init__ could not compare
            raise ConfigError(f"config.json holds a value of the wrong type: {exc}") from None

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``directory/config.json`` (atomically: a temporary file, then a rename)."""
        return atomic_write_json(Path(directory) / CONFIG_NAME, self.to_dict(), sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BertConfig:
        """Read a ``config.json`` file, or the one inside a model directory."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise CheckpointError(f"{path} not found: a model directory needs config.json (create one "
                                  "with `domainbert model create` or copy it from the checkpoint's source)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path} is not valid JSON ({exc}): restore it from the checkpoint's "
                                  "source") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


#: Named sizes. ``base`` is BERT-base, the shape of PubMedBERT; ``small`` (4 x 256) and ``mini``
#: (4 x 128, quickstart's: on 2 CPU cores it sees 2.5x the tokens a minute) are the 4-layer models
#: the CPU recipes train; ``tiny`` has odd sizes so that a transposed dimension fails loudly in tests.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=37, max_position_embeddings=64),
    "mini": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=2, intermediate_size=512),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` options as config overrides (values read as JSON where they parse).

    Unknown fields are refused with the list of known ones.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is not FIELD=VALUE: write e.g. --set hidden_size=384")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    known = [f.name for f in fields(BertConfig) if f.name != "extra"]
    unknown = sorted(set(out) - set(known))
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(unknown)} in --set: choose from {', '.join(known)}")
    return out
