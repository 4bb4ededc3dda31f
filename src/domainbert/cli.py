"""The ``domainbert`` command line: a table of subcommands, each pointing at two functions.

Every entry of :data:`COMMANDS` names a subcommand (one or two words, e.g. ``vocab build``), its
one-line help, and ``"module:function"`` references to

* ``configure(parser)``: adds the subcommand's arguments to an ``argparse.ArgumentParser``;
* ``run(args) -> int | None``: does the work.

Modules are imported only for the subcommand that runs, so ``domainbert --help`` is instant and
does not import torch; this table is the one place in domainbert that imports lazily. A command
whose module needs an optional extra that is not installed (``serve``: fastapi, uvicorn) fails with
one line naming the extra.

This is also the one place where every command's expected failures become one line on standard
error (``domainbert <command>: error: ...``) and a non-zero exit, never a traceback: bad arguments
(argparse's message, on one line, exit 2), a :class:`~domainbert.errors.DomainBertError`, an
operating-system error on a path (a file where a folder must be, a folder that cannot be made or
written, a disk that is full: exit 1), bytes that are not UTF-8. Before a command runs, its
``--out`` folder must not be an existing file, nor its ``--output`` file an existing folder, so
that nothing is written for a command that cannot finish, and an ``--out`` folder the failed command
created but wrote no file in is removed.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from domainbert import __version__
from domainbert.errors import ConfigError, DomainBertError


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line and where its two functions live."""

    help: str
    configure: str
    """``module:function`` that adds the arguments to a parser."""
    run: str
    """``module:function`` that takes the parsed arguments and returns an exit code (or None)."""


# The pipeline, in the order a user runs it.
COMMANDS: dict[str, Command] = {
    "quickstart": Command(
        "the whole recipe at CPU size: PubMed -> vocab -> pretraining -> BLURB fine-tuning -> report",
        "domainbert.quickstart:configure", "domainbert.quickstart:run"),
    "vocab build": Command(
        "train a WordPiece vocabulary on your corpus (BERT normalisation, streamed)",
        "domainbert.data.vocab:configure_build", "domainbert.data.vocab:run_build"),
    "vocab encode": Command(
        "tokenize text with a vocabulary directory and print the ids (one JSON line per input line)",
        "domainbert.data.tokenization:configure_encode", "domainbert.data.tokenization:run_encode"),
    "data download": Command(
        "fetch PubMed baseline files and the BLURB datasets (or take them from --mirror)",
        "domainbert.data.download:configure_download", "domainbert.data.download:run_download"),
    "data prepare": Command(
        "turn a corpus into sharded BERT pretraining examples (NSP pairs + masked LM) and a manifest",
        "domainbert.data.shards:configure_prepare", "domainbert.data.shards:run_prepare"),
    "model create": Command(
        "create a randomly initialised BERT of a preset or custom size and save it",
        "domainbert.model.commands:configure_create", "domainbert.model.commands:run_create"),
    "model info": Command(
        "load a model directory (domainbert or Hugging Face BERT) and report its config and weights",
        "domainbert.model.commands:configure_info", "domainbert.model.commands:run_info"),
    "pretrain": Command(
        "pretrain BERT from scratch on prepared data: MLM + NSP, resumable, torchrun-ready",
        "domainbert.train.pretrain:configure_pretrain", "domainbert.train.pretrain:run_pretrain"),
    "export": Command(
        "write a pretraining run's checkpoint as a Hugging Face model directory with its tokenizer",
        "domainbert.train.export:configure_export", "domainbert.train.export:run_export"),
    "finetune": Command(
        "fine-tune a BERT on one BLURB dataset (--task) or your own (--task-type + --data)",
        "domainbert.blurb.finetune:configure", "domainbert.blurb.finetune:run"),
    "evaluate": Command(
        "score a fine-tuned model on a BLURB split (or your own) without training: precision, recall, per class",
        "domainbert.blurb.evaluate:configure", "domainbert.blurb.evaluate:run"),
    "blurb": Command(
        "fine-tune on the BLURB suite; write results.json, report.md, a chart and a TSV row",
        "domainbert.blurb.suite:configure", "domainbert.blurb.suite:run"),
    "report": Command(
        "compare finished `blurb` runs side by side: paired tests, bootstrap intervals, Holm's correction, a chart",
        "domainbert.blurb.compare:configure", "domainbert.blurb.compare:run"),
    "fill-mask": Command(
        "predict the top-k tokens for each [MASK] in texts (JSON lines out)",
        "domainbert.serve.commands:configure_fill_mask", "domainbert.serve.commands:run_fill_mask"),
    "ner": Command(
        "find entities in raw text with a fine-tuned NER model: character offsets, label, score (JSON lines)",
        "domainbert.serve.commands:configure_ner", "domainbert.serve.commands:run_ner"),
    "classify": Command(
        "label texts (or text pairs) with a fine-tuned classifier: single/multi-label or regression",
        "domainbert.serve.commands:configure_classify", "domainbert.serve.commands:run_classify"),
    "embed": Command(
        "turn texts into vectors (mean-pooled or [CLS]) with any BERT encoder (JSON lines)",
        "domainbert.serve.commands:configure_embed", "domainbert.serve.commands:run_embed"),
    "serve": Command(
        "serve fill-mask, NER, classification and embeddings over HTTP, with a web page",
        "domainbert.serve.app:configure", "domainbert.serve.app:run"),
}


#: Third-party packages that only an optional extra installs, and that extra.
EXTRAS = {"fastapi": "serve", "uvicorn": "serve", "pydantic": "serve", "tensorboard": "tensorboard"}


def _resolve(ref: str) -> Callable:
    module, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in EXTRAS:
            raise
        raise DomainBertError(f"this command needs {missing}, from an optional extra: "
                              f"pip install 'domainbert[{EXTRAS[missing]}]'") from None


def _groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in COMMANDS:
        groups.setdefault(name.split()[0], []).append(name)
    return groups


def _overview(prefix: str | None = None) -> str:
    names = [n for n in COMMANDS if prefix is None or n.split()[0] == prefix]
    width = max(len(n) for n in names)
    lines = [
        "usage: domainbert <command> [options]" if prefix is None
        else f"usage: domainbert {prefix} <command> [options]",
        "",
        "Build a domain-specific BERT from your corpus and evaluate it on BLURB.",
        "",
        "commands:",
    ]
    lines += [f"  {n.ljust(width)}  {COMMANDS[n].help}" for n in names]
    lines += ["", "Run `domainbert <command> --help` for the options of one command."]
    return "\n".join(lines)


def _match(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Split argv into the longest known command name and the rest."""
    for n_words in (2, 1):
        name = " ".join(argv[:n_words])
        if len(argv) >= n_words and name in COMMANDS:
            return name, list(argv[n_words:])
    return None, list(argv)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default only when there is one and its help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse, with its error on one line: ``domainbert <command>: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser(name: str) -> argparse.ArgumentParser:
    """The argument parser of one subcommand (used by ``main`` and by the CLI tests)."""
    spec = COMMANDS[name]
    parser = _Parser(prog=f"domainbert {name}", description=spec.help, formatter_class=_HelpFormatter)
    _resolve(spec.configure)(parser)
    return parser


def check_paths(args: argparse.Namespace) -> None:
    """Refuse an ``--out`` folder that is a file and an ``--output`` file that is a folder, before
    anything runs (every command writes its folder as ``--out`` and a predictor its file as ``--output``)."""
    out, output = getattr(args, "out", None), getattr(args, "output", None)
    if isinstance(out, Path) and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory: pass a folder to write into")
    if isinstance(output, Path) and output.is_dir():
        raise ConfigError(f"--output {output} is a directory: pass the file to write")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``domainbert`` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_overview())
        return 0
    if argv[0] == "--version":
        print(f"domainbert {__version__}")
        return 0
    name, rest = _match(argv)
    if name is None:
        groups = _groups()
        if argv[0] in groups and (len(argv) == 1 or argv[1] in ("-h", "--help")):
            print(_overview(argv[0]))
            return 0
        known = ", ".join(sorted(COMMANDS))
        print(f"domainbert: error: unknown command {' '.join(argv[:2])!r}; "
              f"choose one of: {known} (see `domainbert --help`)", file=sys.stderr)
        return 2
    try:
        args = build_parser(name).parse_args(rest)  # exits 2 with argparse's message on bad arguments
        out = getattr(args, "out", None)
        fresh = isinstance(out, Path) and not out.exists()
        try:
            check_paths(args)
            code = _resolve(COMMANDS[name].run)(args)
        except BaseException:
            if fresh and out.is_dir() and not any(p.is_file() for p in out.rglob("*")):
                shutil.rmtree(out, ignore_errors=True)  # only empty folders: nothing of value is lost
            raise
    except DomainBertError as exc:
        print(f"domainbert {name}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a path the operating system refused: say which and what
        where = f": {exc.filename}" if exc.filename else ""
        print(f"domainbert {name}: error: {exc.strerror or exc}{where} (check the path: it must be writable, "
              "and a folder where a folder is expected)", file=sys.stderr)
        return 1
    except UnicodeDecodeError as exc:
        print(f"domainbert {name}: error: an input is not UTF-8 (byte {exc.object[exc.start:exc.start + 1]!r} at "
              f"offset {exc.start}): convert it, e.g. `iconv -f latin1 -t utf-8`", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"domainbert {name}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
