"""The prediction commands: ``fill-mask``, ``ner``, ``classify`` and ``embed`` over files or stdin.

Input: files or stdin, one text per line or JSON lines with ``"text"`` (and ``"id"``, echoed, and
``"text_pair"`` for pair classifiers); output: JSON lines, one per input line, with its line number.
``ner`` also reads and writes CoNLL/BIO sentences and PubTator documents
(:mod:`domainbert.serve.formats`); words a CoNLL file gives are tagged as they are, uncut::

    domainbert fill-mask --model DIR [--top-k 5] [FILE ...]
    domainbert ner       --model DIR [--input-format auto|text|jsonl|conll|pubtator]
                         [--output-format jsonl|conll|pubtator] [FILE ...]
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

from domainbert.blurb.words import locate
from domainbert.errors import DataError
from domainbert.model.hub import MODEL_HELP, add_revision_argument, resolve_model
from domainbert.serve.formats import (
    Document,
    Mention,
    Sentence,
    read_conll,
    read_pubtator,
    write_document,
    write_sentence,
)
from domainbert.serve.inference import POOLINGS, Classifier, Embedder, FillMask, InputError, Tagger

INPUT_FORMATS = ("auto", "text", "jsonl", "conll", "pubtator")
OUTPUT_FORMATS = ("jsonl", "conll", "pubtator")


@dataclass
class InputRow:
    """One input of the CLI: its line number, optional id and pair, and the text."""

    line: int
    text: str
    id: Any = None
    text_pair: str | None = None
    spans: list[tuple[int, int]] | None = None
    """Words given by the input (CoNLL): their character spans in ``text`` (the words joined by spaces)."""
    source: Sentence | Document | None = None
    """The CoNLL sentence or PubTator document the row was read from, for writing it back."""


def _numbered_lines(source: str, stdin: IO[bytes] | None) -> Iterator[tuple[str, int, str]]:
    """``(file name, line number, line)`` of one input file (``-``: stdin), decoded as UTF-8."""
    name = "<stdin>" if source == "-" else source
    if source == "-":
        fh: IO[bytes] = stdin if stdin is not None else sys.stdin.buffer
    else:
        try:
            fh = open(source, "rb")
        except OSError as exc:
            raise DataError(f"cannot read input {source}: {exc.strerror}; pass an existing input file") from None
    try:
        for number, raw in enumerate(fh, 1):
            try:
                yield name, number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise DataError(f"{name} line {number} is not UTF-8 (byte {exc.start}): convert the file, "
                                "e.g. `iconv -f latin1 -t utf-8`") from None
    finally:
        if source != "-":
            fh.close()


def read_inputs(paths: Sequence[str], stdin: IO[bytes] | None = None, input_format: str = "auto") -> Iterator[InputRow]:
    """Inputs from files (``-`` or none: stdin) in ``input_format`` (:data:`INPUT_FORMATS`).

    ``auto``: one text per line, a line that starts with ``{`` read as JSON; ``text``: every line a text;
    ``jsonl``: every line a JSON object with ``"text"`` (and ``"id"``, echoed, ``"text_pair"`` for pair
    classifiers). Blank lines are skipped (outputs carry the line number). ``conll``: one row per
    sentence, its words given; ``pubtator``: one row per document, its text the title, a space and the
    abstract, its id the PMID.
    """
    for source in list(paths) or ["-"]:
        lines = _numbered_lines(source, stdin)
        name = "<stdin>" if source == "-" else source
        if input_format == "conll":
            for sentence in read_conll(((n, line) for _, n, line in lines), name):
                text = " ".join(sentence.words)
                yield InputRow(sentence.line, text, spans=locate(sentence.words, text), source=sentence)
        elif input_format == "pubtator":
            for doc in read_pubtator(((n, line) for _, n, line in lines), name):
                yield InputRow(doc.line, doc.text, doc.pmid, source=doc)
        else:
            for _, number, line in lines:
                if not line.strip():
                    continue
                if input_format == "jsonl" or (input_format == "auto" and line.lstrip().startswith("{")):
                    yield _json_row(name, number, line)
                else:
                    yield InputRow(number, line)


def _json_row(name: str, number: int, line: str) -> InputRow:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{name} line {number} is not valid JSON ({exc.msg}); write one JSON object per line, "
                        "or plain text (--input-format text)") from None
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


def _common_arguments(parser: argparse.ArgumentParser, input_formats: Sequence[str] = INPUT_FORMATS[:3]) -> None:
    parser.add_argument("inputs", nargs="*", metavar="FILE",
                        help="input files (default: stdin): one text per line, or JSON lines with \"text\"")
    parser.add_argument("--input-format", choices=input_formats, default="auto",
                        help="auto: a text per line, lines starting with '{' read as JSON; text; jsonl"
                        + ("; conll: a word per line (then any columns), a blank line between sentences; "
                           "pubtator: PMID|t|title and PMID|a|abstract lines per document" if "conll" in input_formats
                           else ""))
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    add_revision_argument(parser)
    parser.add_argument("--output", type=Path, help="write here instead of stdout")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="bf16 autocast where native (auto), or forced")


def configure_fill_mask(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument("--top-k", type=int, default=5, help="tokens to list per [MASK]")


def configure_ner(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser, INPUT_FORMATS)
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default="jsonl",
                        help="jsonl: entities with character offsets; conll: each word and its tag (after the "
                        "input's columns); pubtator: each document's title and abstract lines, then "
                        "PMID<TAB>start<TAB>end<TAB>mention<TAB>type lines")
    parser.add_argument("--max-length", type=int,
                        help="window length in sub-tokens (default: the one the model was fine-tuned with, else "
                        "the model's maximum)")


def configure_classify(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="multi-label: sigmoid above which a label is predicted")


def configure_embed(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser)
    parser.add_argument("--pooling", choices=POOLINGS, default="mean",
                        help="mean of the last layer over real tokens, or the [CLS] vector")
    parser.add_argument("--normalize", action="store_true", help="L2-normalise each vector")


def _json_line(row: InputRow, result: dict[str, Any]) -> str:
    record = {"line": row.line, **({"id": row.id} if row.id is not None else {}), **result}
    return json.dumps(record, ensure_ascii=False) + "\n"


def _run(args: argparse.Namespace, predictor: Any, predict: Any, render: Any = _json_line) -> int:
    """Stream the predictions (``render(row, result)``: JSON lines unless told otherwise) to stdout, or to
    ``--output`` through a temporary file beside it that replaces it only when every input is done: a
    failed run leaves no half-written file, and an existing one as it was."""
    out: IO[str]
    tmp = args.output.with_name(f".{args.output.name}.tmp-{os.getpid()}") if args.output else None
    out = tmp.open("w", encoding="utf-8") if tmp is not None else sys.stdout
    try:
        n = 0
        # Chunks of many batches: sorting by length inside a chunk keeps padding low while the
        # output streams (and memory stays bounded) on inputs of any size.
        for chunk in _chunks(read_inputs(args.inputs, input_format=args.input_format), predictor.batch_size * 32):
            try:
                results = predict(chunk)
            except InputError as exc:
                raise InputError(_with_line(str(exc), chunk)) from None
            for row, result in zip(chunk, results):
                out.write(render(row, result))
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

    def predict(rows: Sequence[InputRow]) -> list[dict[str, Any]]:
        tagged = predictor.tag_texts([r.text for r in rows], [r.spans for r in rows])
        return [{"entities": predictor.entities(r.text, spans, tags), "tags": [tag for tag, _ in tags], "spans": spans}
                for r, (spans, tags) in zip(rows, tagged)]

    def render(row: InputRow, result: dict[str, Any]) -> str:
        if args.output_format == "conll":
            sentence = row.source if isinstance(row.source, Sentence) else Sentence(
                row.line, [[row.text[start:end]] for start, end in result["spans"]])
            return write_sentence(sentence, result["tags"])
        if args.output_format == "pubtator":
            doc = row.source if isinstance(row.source, Document) else _as_document(row)
            return write_document(doc, [Mention(e["start"], e["end"], e["text"], e["label"])
                                        for e in result["entities"]])
        return _json_line(row, {"entities": result["entities"]})

    return _run(args, predictor, predict, render)


def _as_document(row: InputRow) -> Document:
    """A text as a PubTator document (its id or line number the PMID, the text its title, no abstract);
    one PubTator cannot write is refused."""
    pmid = str(row.id if row.id is not None else row.line)
    if any(c in pmid for c in "|\t\r\n") or not pmid:
        raise InputError(f"input line {row.line}: id {pmid!r} cannot be a PubTator PMID (no '|', tab or line "
                         "break); give each JSON line a plain \"id\"")
    if "\n" in row.text or "\r" in row.text:
        raise InputError(f"input line {row.line}: the text has a line break, which a PubTator title cannot hold; "
                         "give title and abstract as a PubTator document (--input-format pubtator)")
    return Document(pmid, row.text, "", row.line)


def run_classify(args: argparse.Namespace) -> int:
    predictor = Classifier(resolve_model(args.model, args.revision).path, device=args.device, precision=args.precision,
                           batch_size=args.batch_size, threshold=args.threshold)
    return _run(args, predictor, lambda rows: predictor([r.text for r in rows], [r.text_pair for r in rows]))


def run_embed(args: argparse.Namespace) -> int:
    predictor = Embedder(resolve_model(args.model, args.revision).path, device=args.device, precision=args.precision,
                         batch_size=args.batch_size, pooling=args.pooling, normalize=args.normalize)
    return _run(args, predictor,
                lambda rows: [{"embedding": v} for v in predictor([r.text for r in rows]).tolist()])
