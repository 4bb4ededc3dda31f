"""Reading and writing Hugging Face BERT checkpoint directories (config, weights, tokenizer files).

A checkpoint directory holds ``config.json`` and the weights, as transformers writes them:

* ``model.safetensors`` (or shards listed in ``model.safetensors.index.json``): preferred;
* ``pytorch_model.bin`` (or ``pytorch_model.bin.index.json``): read only through
  ``torch.load(weights_only=True)``, which cannot run code hidden in a pickle;
* optionally the tokenizer files (``vocab.txt``, ``tokenizer.json``, ``tokenizer_config.json``,
  ``special_tokens_map.json``).

Because ``modeling.py`` uses Hugging Face's parameter names, saving is ``model.state_dict()`` minus
the tied decoder matrix, and loading needs only the small renames real checkpoints carry: the
``bert.`` prefix present or not (a bare ``BertModel`` checkpoint loaded into a head model and the
reverse), TF-era ``gamma``/``beta`` LayerNorm names, the ``cls.predictions.decoder.bias`` alias and
the ``embeddings.position_ids`` buffer older transformers saved. Weights the checkpoint lacks (a new
task head) are initialised; weights this model does not use are skipped; both are listed in
``model.loading_info`` and logged, never silently.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from domainbert.atomic import atomic_write
from domainbert.errors import CheckpointError, ConfigError
from domainbert.model.configuration import CONFIG_NAME, BertConfig

if TYPE_CHECKING:  # modeling imports this module; the name is for annotations only
    from domainbert.model.modeling import BertPreTrainedModel

logger = logging.getLogger("domainbert")

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_NAME = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS_NAME, SAFETENSORS_INDEX, BIN_NAME, BIN_INDEX)

#: Checkpoint entries that are buffers or aliases, not weights of their own.
_IGNORED_SUFFIXES = ("embeddings.position_ids",)

M = TypeVar("M", bound="BertPreTrainedModel")


@dataclass
class LoadingInfo:
    """What ``from_pretrained`` did with each weight name that did not simply match."""

    missing: list[str] = field(default_factory=list)
    """In the model, not in the checkpoint: initialised as BERT does (e.g. a new task head)."""
    unexpected: list[str] = field(default_factory=list)
    """In the checkpoint, not used by this model class (e.g. MLM head weights under BertModel)."""
    mismatched: list[str] = field(default_factory=list)
    """Task-head weights whose shape differs (another label count): re-initialised."""
    ignored: list[str] = field(default_factory=list)
    """Buffers and aliases that carry no weights of their own (position_ids, tied decoder)."""

    def summary(self) -> str:
        parts = []
        for label, names in (("initialised (not in checkpoint)", self.missing),
                             ("unused (not part of this model)", self.unexpected),
                             ("re-initialised (shape differs)", self.mismatched)):
            if names:
                shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
                parts.append(f"{label}: {shown}")
        return "; ".join(parts) if parts else "all weights matched"


# ==================================================================================== reading
def find_weights(directory: Path) -> Path:
    """The weights file (or shard index) of a checkpoint directory; a clear error if there is none."""
    if not directory.is_dir():
        raise CheckpointError(f"model directory {directory} does not exist: pass a directory with "
                              "config.json and model.safetensors (or pytorch_model.bin)")
    missing = []
    if not (directory / CONFIG_NAME).is_file():
        missing.append(CONFIG_NAME)
    weights = next((directory / n for n in WEIGHT_FILES if (directory / n).is_file()), None)
    if weights is None:
        missing.append(f"{SAFETENSORS_NAME} (or {BIN_NAME})")
    if missing:
        raise CheckpointError(f"{directory} is not a model directory: missing {' and '.join(missing)}; "
                              "point to the folder that save_pretrained/`domainbert model create` wrote "
                              "or that you downloaded from the model's page")
    return weights  # type: ignore[return-value]


def _read_one(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path} is corrupted or not a safetensors file ({exc}): "
                                  "download or save the checkpoint again") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} could not be read safely with torch.load(weights_only=True) "
                              f"({first}): it is corrupted or holds Python objects besides tensors; "
                              "convert it to model.safetensors where it was made") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors: save it with "
                              "torch.save(model.state_dict(), ...) or as safetensors")
    return state


def read_state_dict(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory, by name (shards merged)."""
    weights = find_weights(Path(directory))
    if not weights.name.endswith(".index.json"):
        return _read_one(weights)
    try:
        weight_map: dict[str, str] = json.loads(weights.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{weights} is not a valid shard index ({exc}): download it again") from None
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        if not (weights.parent / shard).is_file():
            raise CheckpointError(f"{weights} lists shard {shard}, which is missing: download it too")
        state.update(_read_one(weights.parent / shard))
    return state


def _normalise_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """TF-era ``LayerNorm.gamma/beta`` → ``weight/bias``; a DDP ``module.`` prefix dropped."""
    out = {}
    for name, tensor in state.items():
        if name.startswith("module."):
            name = name[len("module."):]
        if name.endswith(".gamma"):
            name = name[: -len("gamma")] + "weight"
        elif name.endswith(".beta"):
            name = name[: -len("beta")] + "bias"
        out[name] = tensor
    return out


def _align_prefix(state: dict[str, torch.Tensor], model: BertPreTrainedModel) -> dict[str, torch.Tensor]:
    """Add or strip the ``bert.`` prefix so that the checkpoint's names match the model's."""
    has_prefix = any(k.startswith("bert.") for k in state)
    base_parts = ("embeddings.", "encoder.", "pooler.")
    bare = not model.base_model_prefix  # the encoder itself ("" prefix), not a head model around it
    if bare and has_prefix:  # a head model's checkpoint into the bare encoder
        return {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in state.items()}
    if not bare and not has_prefix:  # a bare encoder's checkpoint into a head model
        return {f"bert.{k}" if k.startswith(base_parts) else k: v for k, v in state.items()}
    return state


def check_vocab_file(directory: Path, config: BertConfig) -> None:
    """A ``vocab.txt`` longer than ``vocab_size`` would index past the embeddings: refuse it.

    Shorter is fine (PubMedBERT: 28,895 lines for 30,522 rows; the extra rows are never used).
    """
    vocab = directory / "vocab.txt"
    if vocab.is_file():
        with vocab.open("rb") as fh:
            n = sum(1 for _ in fh)
        if n > config.vocab_size:
            raise CheckpointError(
                f"{vocab} has {n} tokens but config.json says vocab_size {config.vocab_size}: ids "
                f"{config.vocab_size}..{n - 1} have no embedding; use the vocab.txt the model was "
                "trained with, or a config whose vocab_size is at least the vocabulary's size")


def load_pretrained(cls: type[M], directory: str | os.PathLike, **config_overrides: Any) -> M:
    """Build ``cls`` from a checkpoint directory; see ``BertPreTrainedModel.from_pretrained``."""
    directory = Path(directory)
    find_weights(directory)
    config = BertConfig.load(directory)
    if config_overrides:
        try:
            config = BertConfig.from_dict({**config.to_dict(), **config_overrides})
        except ConfigError as exc:
            raise ConfigError(f"overriding {sorted(config_overrides)} gives an invalid config: {exc}") from None
    check_vocab_file(directory, config)
    model = cls(config)
    state = _align_prefix(_normalise_names(read_state_dict(directory)), model)

    info = LoadingInfo()
    expected = model.state_dict()
    tied = set(model.tied_weights)
    if "cls.predictions.bias" in expected and "cls.predictions.bias" not in state \
            and "cls.predictions.decoder.bias" in state:
        state["cls.predictions.bias"] = state.pop("cls.predictions.decoder.bias")
    to_load: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.endswith(_IGNORED_SUFFIXES) or name in tied or name == "cls.predictions.decoder.bias":
            info.ignored.append(name)
        elif name not in expected:
            info.unexpected.append(name)
        elif tensor.shape != expected[name].shape:
            if name.startswith("classifier."):
                info.mismatched.append(f"{name} {tuple(tensor.shape)} -> {tuple(expected[name].shape)}")
            else:
                raise CheckpointError(_shape_error(directory, name, tuple(tensor.shape),
                                                   tuple(expected[name].shape), config))
        else:
            to_load[name] = tensor
    info.missing = sorted(n for n in expected if n not in to_load and n not in tied
                          and not any(m.startswith(n + " ") for m in info.mismatched))
    model.load_state_dict(to_load, strict=False)
    model.tie_weights()
    model.loading_info = info  # type: ignore[attr-defined]
    if info.missing or info.unexpected or info.mismatched:
        logger.warning("loading %s from %s: %s", cls.__name__, directory, info.summary())
    return model


def _shape_error(directory: Path, name: str, got: tuple, want: tuple, config: BertConfig) -> str:
    if name.endswith("word_embeddings.weight"):
        return (f"{directory}: the word embeddings have {got[0]} rows of width {got[1]} but config.json "
                f"says vocab_size {config.vocab_size}, hidden_size {config.hidden_size}: the config does "
                "not belong to these weights; restore the checkpoint's own config.json")
    return (f"{directory}: weight {name} has shape {got} but config.json implies {want}: the config "
            "does not belong to these weights; restore the checkpoint's own config.json")


# ==================================================================================== writing
def save_pretrained(model: BertPreTrainedModel, directory: str | os.PathLike, tokenizer: Any = None) -> None:
    """Write ``config.json`` and ``model.safetensors`` (and the tokenizer's files, if given).

    Tied weights are written once (transformers re-ties the MLM decoder when it loads). Each file is
    written atomically, so an interrupted save never leaves a half-written checkpoint.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().to("cpu").contiguous()
             for name, tensor in model.state_dict().items() if name not in model.tied_weights}
    atomic_write(directory / SAFETENSORS_NAME,
                  lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    config = BertConfig.from_dict(model.config.to_dict())
    config.extra["architectures"] = [type(model).__name__]
    config.save(directory)
    for stale in (BIN_NAME, BIN_INDEX, SAFETENSORS_INDEX):  # an older format would shadow nothing
        if (directory / stale).exists():                   # but would confuse readers: remove it
            (directory / stale).unlink()
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
