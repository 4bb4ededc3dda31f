"""The prediction commands: ``fill-mask``, ``ner``, ``classify`` and ``embed`` over files or stdin.

Input: files or stdin, one text per line or JSON lines with ``"text"`` (and ``"id"``, echoed, and
``"text_pair"`` for pair classifiers); output: JSON lines, one per input line, with its line number::

    domainbert fill-mask --model DIR [--top-k 5] [FILE ...]
    domainbert ner       --model DIR [FILE ...]
    domainbert classify  --model DIR [FILE ...]        # JSON lines may add "text_pair"
    domainbert embed     --model DIR [--pooling mean|cls] [--normalize] [FILE ...]

The predictors themselves are :mod:`domainbert.serve.inference`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from domainbert.errors import DataError
from domainbert.model.hub import MODEL_HELP, add_revision_argument, resolve_model
from domainbert.serve.inference import POOLINGS, Classifier, Embedder, FillMask, InputError, Tagger


@dataclass
class InputRow:
    """One input of the CLI: its line number, optional id and pair, and the text."""

    line: int
    text: str
    id: Any = None
    text_pair: str | None = None


def read_inputs(paths: Sequence[str], stdin: IO[bytes] | None = None) -> Iterator[InputRow]:
    """Texts from files (``-`` or none: stdin): one per line, or JSON objects with ``"text"``.

    Blank lines are skipped (outputs carry the line number). A JSON line may add ``"id"`` (echoed)
    and ``"text_pair"`` (for pair classifiers).
    """
    sources = list(paths) or ["-"]
    for source in sources:
        name = "<stdin>" if source == "-" else source
        if source == "-":
            fh: IO[bytes] = stdin if stdin is not None else sys.stdin.buffer
        else:
            try:
                fh = open(source, "rb")
            except OSError as exc:
                raise DataError(f"cannot read input {source}: {exc.strerror}; pass an existing text or "
                                "JSONL file") from None
        try:
            for number, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{name} line {number} is not UTF-8 (byte {exc.start}): convert the file, "
                                    "e.g. `iconv -f latin1 -t utf-8`") from None
                if not line.strip():
                    continue
                if line.lstrip().startswith("{"):
                    yield _json_row(name, number, line)
                else:
                    yield InputRow(number, line)
        finally:
            if fh is not stdin and source != "-":
                fh.close()


def _json_row(name: str, number: int, line: str) -> InputRow:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{name} line {number} starts with '{{' but is not valid JSON ({exc.msg}); "
                        "write one JSON object per line, or plain text that does not start with '{'") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        raise DataError(f"{name} line {number}: a JSON line needs a string field \"text\"")
    pair = obj.get("text_pair")
    if pair is not None and not isinstance(pair, str):
        raise DataError(f"{name} line {number}: \"text_pair\" must be a string")
    return InputRow(number, obj["text"], obj.get("id"), pair)


def _chunks(rows: Iterable[InputRow], size: int) -> Iterator[list[InputRow]]:
    chunk: list[InputRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="FILE",
                        help="input files (default: stdin): one text per line, or JSON lines with \"text\"")
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    add_revision_argument(parser)
    parser.add_argument("--output", type=Path, help="write JSON lines here instead of stdout")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="bf16 autocast where native (auto), or forced")


def configure_fill_mask(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument("--top-k", type=int, default=5, help="tokens to list per [MASK]")


def configure_ner(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument("--max-length", type=int,
                        help="window length in sub-tokens (default: the model's maximum)")


def configure_classify(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="multi-label: sigmoid above which a label is predicted")


def configure_embed(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument("--pooling", choices=POOLINGS, default="mean",
                        help="mean of the last layer over real tokens, or the [CLS] vector")
    parser.add_argument("--normalize", action="store_true", help="L2-normalise each vector")


def _run(args: argparse.Namespace, predictor: Any, predict: Any) -> int:
    """Stream the predictions as JSON lines to stdout, or to ``--output`` through a temporary file
    beside it that replaces it only when every input is done: a failed run leaves no half-written
    file, and an existing one as it was."""
    out: IO[str]
    tmp = args.output.with_name(f".{args.output.name}.tmp-{os.getpid()}") if args.output else None
    out = tmp.open("w", encoding="utf-8") if tmp is not None else sys.stdout
    try:
        n = 0
        # Chunks of many batches: sorting by length inside a chunk keeps padding low while the
        # output streams (and memory stays bounded) on inputs of any size.
        for chunk in _chunks(read_inputs(args.inputs), predictor.batch_size * 32):
            try:
                results = predict(chunk)
            except InputError as exc:
                raise InputError(_with_line(str(exc), chunk)) from None
            for row, result in zip(chunk, results):
                record = {"line": row.line, **({"id": row.id} if row.id is not None else {}), **result}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                n += 1
        out.flush()
        if tmp is not None:
            out.close()
            os.replace(tmp, args.output)
    finally:
        if tmp is not None:
            out.close()
            tmp.unlink(missing_ok=True)
    print(f"domainbert: {n} input(s) done", file=sys.stderr)
    return 0


def _with_line(message: str, chunk: Sequence[InputRow]) -> str:
    """``text 3 ...`` (index in the chunk) → ``input line N ...`` for the CLI's messages."""
    if message.startswith("text "):
        head, _, rest = message[len("text "):].partition(" ")
        if head.isdigit() and int(head) < len(chunk):
            return f"input line {chunk[int(head)].line} {rest}"
    return message


def run_fill_mask(args: argparse.Namespace) -> int:
    predictor = FillMask(resolve_model(args.model, args.revision).path, device=args.device, precision=args.precision,
                         batch_size=args.batch_size, top_k=args.top_k)
    return _run(args, predictor, lambda rows: predictor([r.text for r in rows]))


def run_ner(args: argparse.Namespace) -> int:
    predictor = Tagger(resolve_model(args.model, args.revision).path, device=args.device, precision=args.precision,
                       batch_size=args.batch_size, max_length=args.max_length)
    return _run(args, predictor, lambda rows: [{"entities": e} for e in predictor([r.text for r in rows])])


def run_classify(args: argparse.Namespace) -> int:
    predictor = Classifier(resolve_model(args.model, args.revision).path, device=args.device, precision=args.precision,
                           batch_size=args.batch_size, threshold=args.threshold)
    return _run(args, predictor, lambda rows: predictor([r.text for r in rows], [r.text_pair for r in rows]))


def run_embed(args: argparse.Namespace) -> int:
    predictor = Embedder(resolve_model(args.model, args.revision).path, device=args.device, precision=args.precision,
                         batch_size=args.batch_size, pooling=args.pooling, normalize=args.normalize)
    return _run(args, predictor,
                lambda rows: [{"embedding": v} for v in predictor([r.text for r in rows]).tolist()])
