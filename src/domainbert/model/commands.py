"""``domainbert model create`` and ``model info``: a fresh model directory from a preset, and what a
directory holds (config, parameters, weights initialised or unused when loaded).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from domainbert.data.tokenization import BertTokenizer
from domainbert.errors import ConfigError
from domainbert.model.configuration import PRESETS, BertConfig, parse_overrides
from domainbert.model.hf_io import LoadingInfo
from domainbert.model.hub import add_revision_argument, resolve_model
from domainbert.model.modeling import BertForMaskedLM, BertForPreTraining, BertModel, load_model


def configure_create(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="model size")
    parser.add_argument("--vocab", type=Path, help="vocabulary directory (from `domainbert vocab build`); "
                        "sets vocab_size and is copied into the model directory")
    parser.add_argument("--head", choices=["pretraining", "mlm", "base"], default="pretraining",
                        help="which model class to create")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field, e.g. --set num_hidden_layers=6 (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weight init")
    parser.add_argument("--out", type=Path, required=True, help="directory to write")


def run_create(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.overrides)
    tokenizer = None
    if args.vocab is not None:
        tokenizer = BertTokenizer.from_pretrained(args.vocab)
        overrides.setdefault("vocab_size", tokenizer.vocab_size)
        overrides.setdefault("pad_token_id", tokenizer.pad_token_id)
    config = BertConfig.preset(args.preset, **overrides)
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise ConfigError(f"the vocabulary has {tokenizer.vocab_size} tokens but vocab_size is "
                          f"{config.vocab_size}: drop --set vocab_size or make it at least {tokenizer.vocab_size}")
    torch.manual_seed(args.seed)
    cls = {"pretraining": BertForPreTraining, "mlm": BertForMaskedLM, "base": BertModel}[args.head]
    model = cls(config)
    model.save_pretrained(args.out, tokenizer=tokenizer)
    print(f"wrote {args.out}: {cls.__name__} ({args.preset}), {model.num_parameters():,} parameters, "
          f"{config.num_hidden_layers} layers x {config.hidden_size} hidden, vocab {config.vocab_size}"
          + ("" if tokenizer else "; no tokenizer attached (pass --vocab DIR)"))
    return 0


def configure_info(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model directory (domainbert or Hugging Face BERT) or a Hugging Face Hub repo id")
    add_revision_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run_info(args: argparse.Namespace) -> int:
    logging.getLogger("domainbert").setLevel(logging.ERROR)  # the loading info is printed below
    source = resolve_model(args.model, args.revision)
    model = load_model(source.path)
    info: LoadingInfo = model.loading_info  # type: ignore[attr-defined]
    c = model.config
    vocab = source.path / "vocab.txt"
    report = {
        "directory": str(source.path),
        "source": source.record(),
        "class": type(model).__name__,
        "parameters": model.num_parameters(),
        "config": {k: v for k, v in c.to_dict().items() if k not in ("id2label", "label2id")},
        "labels": list(c.id2label.values()) if c.id2label else None,
        "vocab_txt_lines": sum(1 for _ in vocab.open("rb")) if vocab.is_file() else None,
        "weights_initialised": info.missing,
        "weights_unused": info.unexpected,
        "weights_reinitialised": info.mismatched,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    where = f"{source.repo_id} (commit {source.commit}, {source.path})" if source.repo_id else report["directory"]
    print(f"{where}: {report['class']}, {report['parameters']:,} parameters")
    print(f"  {c.num_hidden_layers} layers, hidden {c.hidden_size}, {c.num_attention_heads} heads, "
          f"intermediate {c.intermediate_size}, max length {c.max_position_embeddings}, "
          f"vocab_size {c.vocab_size}" + (f" ({report['vocab_txt_lines']} in vocab.txt)"
                                          if report["vocab_txt_lines"] is not None else " (no vocab.txt)"))
    if report["labels"]:
        print(f"  labels: {', '.join(report['labels'])}")
    print(f"  weights: {info.summary()}")
    return 0
