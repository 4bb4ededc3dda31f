"""The file formats biomedical NER pipelines exchange: CoNLL/BIO sentences and PubTator documents.

* **CoNLL/BIO**: one word per line, its columns separated by tabs or spaces (the word first, then
  e.g. the gold tag), a blank line between sentences, ``-DOCSTART-`` lines between documents. Read as
  :class:`Sentence`; written back with the predicted tag appended as the last column (columns joined
  by tabs, ``-DOCSTART-`` lines kept).
* **PubTator**: per document a title line ``PMID|t|title``, an abstract line ``PMID|a|abstract``, then
  annotation lines, a blank line between documents. A mention line is
  ``PMID<TAB>start<TAB>end<TAB>mention<TAB>type`` (and any further columns, such as concept ids),
  its offsets counted in the title, one space, and the abstract; other annotation lines (BioCreative's
  ``PMID<TAB>CID<TAB>...`` relations) are kept as they are. Read as :class:`Document`, written by
  :func:`write_document`: a document read and written again is unchanged.

Readers take lines and the file's name and raise :class:`~domainbert.errors.DataError` naming the line
and what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from domainbert.errors import DataError


@dataclass
class Sentence:
    """A CoNLL sentence: its words, every input line's columns, and the number of its first line."""

    line: int
    columns: list[list[str]]
    before: list[str] = field(default_factory=list)
    """The ``-DOCSTART-`` lines between the previous sentence and this one (written back before it)."""

    @property
    def words(self) -> list[str]:
        return [c[0] for c in self.columns]


def read_conll(lines: Iterable[tuple[int, str]], name: str) -> Iterator[Sentence]:
    """Sentences from numbered lines of a CoNLL/BIO file (``-DOCSTART-`` lines skipped)."""
    columns: list[list[str]] = []
    before: list[str] = []
    first = 0
    for number, line in lines:
        if not line.strip() or line.startswith("-DOCSTART-"):
            if columns:
                yield Sentence(first, columns, before)
                columns, before = [], []
            if line.startswith("-DOCSTART-"):
                before.append(line)
            continue
        cells = line.split("\t") if "\t" in line else line.split()
        if not cells[0] or cells[0].isspace() or any(ch.isspace() for ch in cells[0]):
            raise DataError(f"{name} line {number}: a CoNLL line starts with its word, then tab-separated "
                            f"columns; got {line[:60]!r}")
        if not columns:
            first = number
        columns.append(cells)
    if columns:
        yield Sentence(first, columns, before)


def write_sentence(sentence: Sentence, tags: Sequence[str]) -> str:
    """The sentence's ``-DOCSTART-`` lines, its lines with ``tags`` as a last column, and the blank line
    that ends it."""
    head = "".join(line + "\n\n" for line in sentence.before)
    body = "".join("\t".join([*cells, tag]) + "\n" for cells, tag in zip(sentence.columns, tags, strict=True))
    return head + body + "\n"


@dataclass
class Mention:
    """A PubTator mention: offsets into title + space + abstract, its text, type and further columns."""

    start: int
    end: int
    text: str
    type: str
    rest: list[str] = field(default_factory=list)


@dataclass
class Document:
    """A PubTator document: id, title, abstract, and its annotation lines (mentions and others, in order)."""

    pmid: str
    title: str
    abstract: str
    line: int
    """Number of the title line."""
    annotations: list[Mention | str] = field(default_factory=list)
    """Mentions, and any other annotation line (relations) kept as written."""

    @property
    def text(self) -> str:
        """What the offsets count: the title, one space, the abstract."""
        return f"{self.title} {self.abstract}"

    @property
    def mentions(self) -> list[Mention]:
        return [a for a in self.annotations if isinstance(a, Mention)]


def read_pubtator(lines: Iterable[tuple[int, str]], name: str) -> Iterator[Document]:
    """Documents from numbered lines of a PubTator file (mentions as written: corpora hold a few whose text
    differs from the span at their offsets, e.g. trailing spaces)."""
    doc: Document | None = None
    for number, line in lines:
        if not line.strip():
            if doc is not None:
                yield _complete(doc, name)
                doc = None
            continue
        head, bar, rest = line.partition("|")
        if bar and rest[:2] in ("t|", "a|") and "\t" not in head:
            kind, text = rest[0], rest[2:]
            if kind == "t":
                if doc is not None:
                    yield _complete(doc, name)
                doc = Document(head, text, "", number)
                doc.abstract = None  # type: ignore[assignment]  # set by its "a" line
            elif doc is None or doc.pmid != head or doc.abstract is not None:
                raise DataError(f"{name} line {number}: an abstract line must follow its document's title line "
                                f"(PMID|t|title then PMID|a|abstract)")
            else:
                doc.abstract = text
            continue
        if doc is None or doc.abstract is None:
            raise DataError(f"{name} line {number}: an annotation line before its document's title and abstract "
                            "lines; each document starts with PMID|t|title and PMID|a|abstract")
        cells = line.split("\t")
        if cells[0] != doc.pmid:
            raise DataError(f"{name} line {number}: annotation of PMID {cells[0]} inside document {doc.pmid}; "
                            "put a blank line between documents")
        if len(cells) >= 5 and cells[1].isdigit() and cells[2].isdigit():
            mention = Mention(int(cells[1]), int(cells[2]), cells[3], cells[4], cells[5:])
            doc.annotations.append(mention)
        else:
            doc.annotations.append(line)
    if doc is not None:
        yield _complete(doc, name)


def _complete(doc: Document, name: str) -> Document:
    if doc.abstract is None:
        raise DataError(f"{name} line {doc.line}: document {doc.pmid} has a title line but no abstract line "
                        f"({doc.pmid}|a|...; it may be empty)")
    return doc


def write_document(doc: Document, mentions: Sequence[Mention] | None = None) -> str:
    """The document as PubTator lines and the blank line that ends it: with ``mentions``, those
    instead of its own annotation lines."""
    annotations: Sequence[Mention | str] = doc.annotations if mentions is None else mentions
    lines = [f"{doc.pmid}|t|{doc.title}", f"{doc.pmid}|a|{doc.abstract}"]
    for a in annotations:
        lines.append(a if isinstance(a, str) else
                     "\t".join([doc.pmid, str(a.start), str(a.end), a.text, a.type, *a.rest]))
    return "\n".join(lines) + "\n\n"
