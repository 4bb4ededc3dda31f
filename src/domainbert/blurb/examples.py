"""The plain typed examples every BLURB reader returns, and the small file helpers they share.

Two shapes cover the 13 datasets: :class:`TokenExample` (tokens + one tag per token: NER, PICO) and
:class:`TextExample` (a text, an optional second text, and a label: relation extraction, sentence
similarity, document classification, question answering). Featurizing (tokenizing, windowing,
entity-marker tokens) belongs to the fine-tuning code, not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from domainbert.errors import DataError

#: A label: a class name (relation, QA), a float score (BIOSSES) or a set of class names (HoC).
Label = str | float | tuple[str, ...]


@dataclass(frozen=True)
class TokenExample:
    """One sentence of a token-classification set (NER, PICO)."""

    id: str
    """Unique within its split: ``<document id or file stem>-<sentence number>``."""
    tokens: tuple[str, ...]
    """The words, as tokenized in the file."""
    tags: tuple[str, ...]
    """One tag per token, as written in the file (``B-Chemical``, ``I-PAR``, ``O``, ...)."""
    source: str
    """``path:line`` of the first token, for error messages."""

    def __post_init__(self) -> None:
        assert len(self.tokens) == len(self.tags), (self.id, len(self.tokens), len(self.tags))


@dataclass(frozen=True)
class TextExample:
    """One example of a sequence-level task: relation, similarity, multilabel or QA."""

    id: str
    """The dataset's own id (relation pair id, BIOSSES pair id, PMID, BioASQ question id)."""
    text: str
    """The sentence (relation, with ``@TYPE$`` masks), first sentence, document, or question."""
    text_pair: str | None
    """The second sentence (BIOSSES) or the context (PubMedQA, BioASQ); ``None`` otherwise."""
    label: Label
    """A class name, a float score (BIOSSES), or a sorted tuple of class names (HoC)."""
    source: str
    """``path:line`` the example was read from, for error messages."""


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number from 1, line without its newline)``; a missing file is a DataError."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\r\n")


def malformed(path: Path, line: int, expected: str, got: str) -> DataError:
    """A one-line DataError for a line that does not have the expected shape."""
    shown = got if len(got) <= 80 else got[:77] + "..."
    return DataError(f"{path}:{line}: malformed line: expected {expected}, got {shown!r}")
