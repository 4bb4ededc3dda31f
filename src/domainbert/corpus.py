"""Pretraining text in, clean documents out: corpus readers, sentence splitting, filters.

This is the first stage of the pretraining pipeline (issue 3, part 1). It reads the formats users
hold and yields :class:`Document` records, one per abstract (or per blank-line-separated block),
each with its sentences, ready for ``pretraining_data.py`` to pair into NSP/MLM examples.

Formats read (every reader streams: memory stays flat however large the file):

* **plain text**, google-research/bert's ``create_pretraining_data`` format: one sentence (or, with
  ``split_sentences=True``, one paragraph) per line, a blank line between documents. An optional
  ``X.pmids`` sidecar beside ``X.txt`` gives one PMID per document, ``NA`` for none (the layout of
  ``../shared/data/pubmed_corpus``). ``.gz`` is read transparently.
* **MEDLINE/PubMed XML** (``.xml``, ``.xml.gz``): NLM baseline and update files in both the 2016
  ``MedlineCitationSet`` DTD and the current ``PubmedArticleSet`` DTD, and efetch output. Parsed
  with ``xml.etree.ElementTree.iterparse``, clearing each record once read. Records without an
  abstract are skipped and counted; ``<DeleteCitation>`` PMIDs are reported and, in
  :func:`iter_corpus`, drop earlier versions of those citations.
* **PubTator** (``PMID|t|title``, ``PMID|a|abstract``, annotation lines ignored).

Sentence splitting (:class:`SentenceSplitter`) is pysbd, the splitter that built
``../shared/data/pubmed_corpus``, plus three small merge rules measured against gold boundaries in
``benchmarks/sentence_split.py`` (figures in ``benchmarks/RESULTS.md``).

Filters (:class:`CorpusFilter`, applied by :func:`filter_documents`), each one counted in
:class:`CorpusCounts` for the manifest a later stage writes: language, minimum length in words
(PubMedBERT dropped abstracts under 128 words), test-set decontamination (by PMID and by normalised
test sentence, see :func:`build_decontamination_set`), duplicates by PMID and by normalised-text hash.
Duplicates are found across files too (:func:`corpus_drops`): of a PMID the newest version
is kept (an update file's revision replaces the baseline's), of a text the first copy.

Bad input raises :class:`~domainbert.errors.DataError` with one line naming the file and the line or
record (non-UTF-8 bytes, a truncated ``.gz``, malformed XML, a ``.pmids`` sidecar that does not
match); a record that is merely empty is a counted skip.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree import ElementTree as ET

from domainbert.errors import DataError

__all__ = [
    "Document",
    "CorpusCounts",
    "CorpusFilter",
    "SentenceSplitter",
    "DecontaminationSet",
    "normalize_text",
    "read_text",
    "read_pubtator",
    "read_medline_xml",
    "medline_deleted_pmids",
    "read_corpus_file",
    "iter_corpus",
    "filter_documents",
    "corpus_drops",
    "cross_file_drops",
    "document_keys",
    "FileDrops",
    "build_decontamination_set",
]


# --------------------------------------------------------------------------------------------------
# Records and counts


@dataclass
class Document:
    """One pretraining document (an abstract, or one blank-line-separated block of a text file)."""

    pmid: str | None
    """PubMed id as a decimal string, or None when the source has none (``NA`` in a ``.pmids``)."""
    sentences: list[str]
    """The text, one sentence per item, in order; the title (when known) is ``sentences[0]``."""
    source: str
    """Path of the file the document was read from."""
    index: int
    """0-based position of the record in that file (counting skipped records too)."""
    title: str = ""
    """The title alone (empty for plain text, where titles are not marked)."""
    language: str | None = None
    """MEDLINE ``<Language>`` code (``eng``, ``fre``, ...); None when the format has none."""
    publication_types: tuple[str, ...] = ()
    """MEDLINE ``<PublicationType>`` names (``Journal Article``, ``Review``, ...)."""

    @property
    def text(self) -> str:
        """The sentences joined by single spaces."""
        return " ".join(self.sentences)

    def num_words(self) -> int:
        """Whitespace-separated words over all sentences (the unit of ``CorpusFilter.min_words``)."""
        return sum(len(s.split()) for s in self.sentences)


@dataclass
class CorpusCounts:
    """What the readers and filters saw and dropped; ``as_dict()`` goes into the data manifest.

    One object is passed (and updated in place) through every reader and filter of a run, so the
    counts add up: ``records == skipped_no_abstract + skipped_empty + <dropped by filters> + kept``
    (``records_other`` and ``deleted_citations`` are not documents and are outside that sum).
    """

    files: int = 0
    """Input files opened."""
    records: int = 0
    """Document records read (citations, PubTator abstracts, text blocks), before any skip."""
    records_other: int = 0
    """XML records that are not citations (``PubmedBookArticle``), skipped."""
    skipped_no_abstract: int = 0
    """Citations / PubTator records without an abstract (the title alone is not pretrained on)."""
    skipped_empty: int = 0
    """Records with no text at all once whitespace is removed."""
    deleted_citations: int = 0
    """``<DeleteCitation>`` PMIDs seen in update files (see ``deleted_pmids``)."""
    dropped_deleted: int = 0
    """Documents dropped because a ``<DeleteCitation>`` in the same or a later file deletes them."""
    dropped_language: int = 0
    """Documents whose language is not in ``CorpusFilter.languages``."""
    dropped_short: int = 0
    """Documents under ``CorpusFilter.min_words`` words."""
    dropped_test_pmid: int = 0
    """Documents whose PMID is in a benchmark test split."""
    dropped_test_text: int = 0
    """Documents containing a benchmark test sentence (normalised match)."""
    dropped_duplicate_pmid: int = 0
    """Documents whose PMID was already kept in the same file, or that a later file revises."""
    dropped_duplicate_text: int = 0
    """Documents whose normalised text was already kept (under another or no PMID), in the same
    file or an earlier one."""
    kept: int = 0
    """Documents that passed every filter."""
    deleted_pmids: set[str] = field(default_factory=set)
    """The PMIDs named by ``<DeleteCitation>`` (not in ``as_dict``: can be long)."""

    def as_dict(self) -> dict[str, int]:
        """Every count as a JSON-ready dict (``deleted_pmids`` summarised by ``deleted_citations``)."""
        d = asdict(self)
        del d["deleted_pmids"]
        return d


# --------------------------------------------------------------------------------------------------
# Text normalisation and sentence splitting

_ALNUM_RUN = re.compile(r"[^\W_]+")  # a maximal run of letters/digits (Unicode-aware)
_NON_ALNUM = re.compile(r"[\W_]+")


def normalize_text(text: str) -> str:
    """Lowercase and keep only letters and digits: ``"IL-2 (p < 0.05)."`` -> ``"il2p005"``.

    This is the matching key for duplicates and test-set decontamination. It makes raw text and
    its tokenised form (``"IL - 2 ( p < 0.05 ) ."``, as in the IOB files) identical.
    """
    return _NON_ALNUM.sub("", text.lower())


def _squash(text: str) -> str:
    """Collapse every run of whitespace (XML newlines and tabs included) to one space."""
    return " ".join(text.split())


# A segment that ends a sentence: terminal punctuation, then optional closing quotes/brackets.
_ENDS_SENTENCE = re.compile(r"[.!?][\"'\u201d\u2019)\]]*$")
# A segment that starts with an all-lowercase word ("was", "or", "e.", "d(-1)") rather than a
# lowercase-initial symbol that may start a sentence: "mRNA", "p53", "cDNA", "pH", and hyphenated
# prefixes such as "beta-Glucuronidase", "alpha-TC", "dl-Sotalol", "wt-VHL".
_STARTS_LOWER_WORD = re.compile(r"^[a-z]+(?![A-Za-z0-9-])")


class SentenceSplitter:
    """pysbd's English rules plus three merge rules for biomedical abstracts.

    pysbd (``clean=False``) already keeps "e.g.", "i.v.", "et al.", "Fig. 2", "p < 0.05", decimals,
    "E. coli" and "vs." inside sentences. Measured against NCBI-disease and BC5CDR gold boundaries,
    its remaining false splits are nearly all of three kinds, which ``fixes=True`` undoes by merging
    a segment into the one before it when

    1. the previous segment does not end with ``.``, ``!`` or ``?`` (pysbd starts a new "sentence"
       at inline enumerations: "suggest that 1) ... and 2) ...", "(i) ... (ii) ...");
    2. there is no whitespace between the two ("...myoglobinuria.(ABSTRACT TRUNCATED...",
       "1 mg.kg(-1).d(-1)");
    3. the new segment starts with an all-lowercase word ("i. e., ...", "17.4 microgram/kg/min.
       was required"); lowercase-initial symbols such as "mRNA", "p53" or "beta-Blocker" do not
       count.

    Call it: ``SentenceSplitter()(text) -> list[str]``; sentences come back stripped, none empty.
    """

    def __init__(self, fixes: bool = True) -> None:
        import pysbd  # imported here so that reading pre-split text does not need it

        self.fixes = fixes
        """Apply the three merge rules above (False: pysbd alone, for the benchmark)."""
        self._segmenter = pysbd.Segmenter(language="en", clean=False)

    def __call__(self, text: str) -> list[str]:
        text = text.strip()
        if not text:
            return []
        segments = [s.strip() for s in self._segmenter.segment(text)]
        segments = [s for s in segments if s]
        if not self.fixes or len(segments) < 2:
            return segments
        out: list[str] = [segments[0]]
        # Offsets of each segment in `text`, found left to right, tell whether a gap has whitespace.
        pos = text.find(segments[0]) + len(segments[0])
        for seg in segments[1:]:
            at = text.find(seg, pos)
            spaced = at > pos and text[pos:at].isspace() if at >= 0 else True
            prev = out[-1]
            if (not _ENDS_SENTENCE.search(prev) or not spaced
                    or _STARTS_LOWER_WORD.match(seg)):
                out[-1] = prev + (" " if spaced else "") + seg
            else:
                out.append(seg)
            if at >= 0:
                pos = at + len(seg)
        return out


_SPLITTER: SentenceSplitter | None = None


def _default_splitter() -> SentenceSplitter:
    global _SPLITTER
    if _SPLITTER is None:
        _SPLITTER = SentenceSplitter()
    return _SPLITTER


Splitter = Callable[[str], list[str]]
"""Any ``text -> sentences`` callable; readers default to :class:`SentenceSplitter`."""


# --------------------------------------------------------------------------------------------------
# Opening files: gzip, decoding and their errors, each turned into a one-line DataError


def _open_binary(path: Path) -> BinaryIO:
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path (corpus inputs must be files)")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _stream_error(path: Path, exc: BaseException, where: str = "") -> DataError:
    """A DataError for an I/O-level failure while reading ``path`` (``where``: "line 12", ...)."""
    at = f" (at {where})" if where else ""
    if isinstance(exc, EOFError):
        return DataError(f"{path}: truncated gzip stream{at}; the file is incomplete, download it again")
    if isinstance(exc, (gzip.BadGzipFile, zlib.error)):
        return DataError(f"{path}: not a valid gzip file{at} ({exc}); download it again or remove the .gz suffix")
    return DataError(f"{path}: cannot read{at}: {exc}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number from 1, line without its newline)``; strict UTF-8, errors name the line."""
    with _open_binary(path) as f:
        lineno = 0
        try:
            for raw in f:
                lineno += 1
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"{path}: line {lineno} is not valid UTF-8 (byte {raw[e.start]:#04x} at column "
                        f"{e.start + 1}); convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
                yield lineno, line.rstrip("\r\n")
        except (EOFError, OSError, zlib.error) as e:
            raise _stream_error(path, e, f"line {lineno + 1}") from None


# --------------------------------------------------------------------------------------------------
# Plain text (BERT format) with an optional .pmids sidecar


def _sidecar(path: Path) -> Path:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return path.with_name(stem + ".pmids")


def read_text(path: str | Path, *, pmids: str | Path | None | bool = True,
              split_sentences: bool = False, splitter: Splitter | None = None,
              counts: CorpusCounts | None = None) -> Iterator[Document]:
    """Documents from a text file in BERT's format (blank line between documents).

    Args:
        path: ``.txt`` (or ``.txt.gz``): one sentence per line, blank line between documents.
        pmids: the sidecar with one PMID (or ``NA``) per document. True (default): use ``X.pmids``
            beside ``X.txt`` when it exists; False/None: no PMIDs; a path: that file (must exist).
        split_sentences: lines are paragraphs: run each through the sentence splitter.
        splitter: used when ``split_sentences``; default :class:`SentenceSplitter`.
        counts: updated in place (``files``, ``records``).

    Raises DataError for non-UTF-8 bytes, a truncated ``.gz``, a file without any document, or a
    sidecar whose PMID count differs from the document count.
    """
    path = Path(path)
    counts = counts if counts is not None else CorpusCounts()
    if pmids is True:
        side: Path | None = _sidecar(path) if _sidecar(path).is_file() else None
    elif pmids is False or pmids is None:
        side = None
    else:
        side = Path(pmids)
        if not side.is_file():
            raise DataError(f"{side}: PMID sidecar not found; pass pmids=False to read {path} without PMIDs")
    split = (splitter or _default_splitter()) if split_sentences else None
    counts.files += 1
    pmid_lines = _lines(side) if side is not None else None
    n_docs = 0
    block: list[str] = []

    def emit() -> Document:
        nonlocal n_docs
        pmid: str | None = None
        if pmid_lines is not None:
            try:
                _, value = next(pmid_lines)
            except StopIteration:
                raise DataError(f"{side}: has {n_docs} PMIDs but {path} has more documents; "
                                "regenerate the sidecar (one PMID or NA per document)") from None
            value = value.strip()
            if not (value == "NA" or value.isdigit()):
                raise DataError(f"{side}: line {n_docs + 1}: {value!r} is not a PMID or NA")
            pmid = None if value == "NA" else value
        sentences = [s for line in block for s in split(line)] if split else list(block)
        doc = Document(pmid=pmid, sentences=sentences, source=str(path), index=n_docs)
        n_docs += 1
        counts.records += 1
        return doc

    for _, line in _lines(path):
        line = line.strip()
        if line:
            block.append(line)
        elif block:
            yield emit()
            block = []
    if block:
        yield emit()
    if n_docs == 0:
        raise DataError(f"{path}: no documents (the file is empty or only blank lines); "
                        "expected one sentence per line and a blank line between documents")
    if pmid_lines is not None:
        for lineno, extra in pmid_lines:
            if extra.strip():
                raise DataError(f"{side}: line {lineno}: more PMIDs than the {n_docs} documents of "
                                f"{path}; regenerate the sidecar")


# --------------------------------------------------------------------------------------------------
# PubTator


_PUBTATOR = re.compile(r"^([^|\t]+)\|([ta])\|(.*)$")


def read_pubtator(path: str | Path, *, splitter: Splitter | None = None,
                  counts: CorpusCounts | None = None) -> Iterator[Document]:
    """Documents from a PubTator file: ``PMID|t|title`` then ``PMID|a|abstract``; annotations ignored.

    Records without an abstract line (or with an empty one) are skipped and counted. Raises
    DataError naming the line for an abstract without its title, mismatched PMIDs, a line that is
    neither, non-UTF-8 bytes or a truncated ``.gz``.
    """
    path = Path(path)
    counts = counts if counts is not None else CorpusCounts()
    split = splitter or _default_splitter()
    counts.files += 1
    n = 0
    pmid: str | None = None
    title: str | None = None
    abstract: str | None = None

    def finish() -> Document | None:
        nonlocal n
        counts.records += 1
        n += 1
        title_s, abstract_s = _squash(title or ""), _squash(abstract or "")
        if not title_s and not abstract_s:
            counts.skipped_empty += 1
            return None
        if not abstract_s:
            counts.skipped_no_abstract += 1
            return None
        sentences = ([title_s] if title_s else []) + split(abstract_s)
        return Document(pmid=pmid if pmid and pmid.isdigit() else None, sentences=sentences,
                        source=str(path), index=n - 1, title=title_s)

    for lineno, line in _lines(path):
        m = _PUBTATOR.match(line)
        if m:
            rec_id, kind, value = m.groups()
            if kind == "t":
                if pmid is not None:
                    doc = finish()
                    if doc:
                        yield doc
                pmid, title, abstract = rec_id, value, None
            else:
                if pmid is None or rec_id != pmid:
                    raise DataError(f"{path}: line {lineno}: abstract of {rec_id} without its "
                                    f"'{rec_id}|t|title' line before it; is this a PubTator file?")
                if abstract is not None:
                    raise DataError(f"{path}: line {lineno}: second abstract line for {rec_id}")
                abstract = value
        elif line.strip() and "\t" not in line:
            raise DataError(f"{path}: line {lineno}: not a PubTator line (expected 'PMID|t|...', "
                            f"'PMID|a|...' or a tab-separated annotation): {line[:60]!r}")
    if pmid is not None:
        doc = finish()
        if doc:
            yield doc
    if n == 0:
        raise DataError(f"{path}: no PubTator records (no 'PMID|t|title' line)")


# --------------------------------------------------------------------------------------------------
# MEDLINE / PubMed XML


def _element_text(el: ET.Element | None) -> str:
    """All text inside ``el`` (inline markup such as ``<sub>``, ``<i>`` kept as text), squashed."""
    return _squash("".join(el.itertext())) if el is not None else ""


def _citation(mc: ET.Element, path: Path, ordinal: int, split: Splitter,
              counts: CorpusCounts) -> Document | None:
    """One ``<MedlineCitation>`` -> Document, or None (counted) when it has no abstract."""
    pmid = (mc.findtext("PMID") or "").strip()
    if not pmid.isdigit():
        raise DataError(f"{path}: citation #{ordinal + 1} has no numeric <PMID> ({pmid!r}); "
                        "the file is damaged or not MEDLINE XML")
    counts.records += 1
    article = mc.find("Article")
    title = _element_text(article.find("ArticleTitle")) if article is not None else ""
    sections = article.findall("Abstract/AbstractText") if article is not None else []
    # Structured abstracts have one <AbstractText Label="METHODS"> per section: join the texts
    # (labels dropped, as in ../shared/data/pubmed_corpus).
    abstract = " ".join(t for t in (_element_text(s) for s in sections) if t)
    if not abstract:
        if title:
            counts.skipped_no_abstract += 1
        else:
            counts.skipped_empty += 1
        return None
    assert article is not None  # an abstract was found inside it
    language = (article.findtext("Language") or "").strip() or None
    types = tuple(_squash(t.text or "") for t in article.iterfind("PublicationTypeList/PublicationType"))
    sentences = ([title] if title else []) + split(abstract)
    return Document(pmid=pmid, sentences=sentences, source=str(path), index=ordinal, title=title,
                    language=language, publication_types=types)


def read_medline_xml(path: str | Path, *, splitter: Splitter | None = None,
                     counts: CorpusCounts | None = None) -> Iterator[Document]:
    """Documents from a MEDLINE/PubMed XML file (``.xml`` or ``.xml.gz``), streamed.

    Both NLM layouts are read: ``<MedlineCitationSet><MedlineCitation>...`` (2016 DTD) and
    ``<PubmedArticleSet><PubmedArticle><MedlineCitation>...`` (2017+ DTD, efetch). Each top-level
    record is cleared from the tree once read, so memory is bounded by one record. Citations
    without an abstract are skipped and counted; ``<DeleteCitation>`` PMIDs are added to
    ``counts.deleted_pmids`` (:func:`iter_corpus` then drops them).

    Raises DataError for malformed XML (with line and column; non-UTF-8 bytes land here too), a
    truncated or corrupt ``.gz``, or a citation without a PMID.
    """
    path = Path(path)
    counts = counts if counts is not None else CorpusCounts()
    split = splitter or _default_splitter()
    counts.files += 1
    ordinal = 0  # records (citations) seen, for error messages and Document.index
    with _open_binary(path) as f:
        try:
            depth = 0
            root: ET.Element | None = None
            for event, el in ET.iterparse(f, events=("start", "end")):
                if event == "start":
                    if root is None:
                        root = el
                        if el.tag not in ("MedlineCitationSet", "PubmedArticleSet"):
                            raise DataError(f"{path}: root element <{el.tag}> is not "
                                            "<PubmedArticleSet> or <MedlineCitationSet>; not MEDLINE XML")
                    depth += 1
                    continue
                depth -= 1
                if depth != 1:  # only the children of the root are records
                    continue
                doc = None
                if el.tag == "MedlineCitation":
                    doc = _citation(el, path, ordinal, split, counts)
                    ordinal += 1
                elif el.tag == "PubmedArticle":
                    mc = el.find("MedlineCitation")
                    if mc is None:
                        raise DataError(f"{path}: <PubmedArticle> #{ordinal + 1} has no <MedlineCitation>")
                    doc = _citation(mc, path, ordinal, split, counts)
                    ordinal += 1
                elif el.tag == "DeleteCitation":
                    for p in el.iterfind("PMID"):
                        if (p.text or "").strip():
                            counts.deleted_pmids.add(p.text.strip())
                            counts.deleted_citations += 1
                elif el.tag == "PubmedBookArticle":
                    counts.records_other += 1
                assert root is not None
                root.clear()  # drop the record just read: memory stays at one record
                if doc is not None:
                    yield doc
        except ET.ParseError as e:
            line, col = e.position
            raise DataError(f"{path}: malformed XML at line {line}, column {col + 1} ({str(e).split(':')[0]}); "
                            "the file is damaged, not UTF-8, or cut short: download it again") from None
        except (EOFError, OSError, zlib.error) as e:
            raise _stream_error(path, e, f"citation #{ordinal + 1}") from None


def medline_deleted_pmids(path: str | Path) -> set[str]:
    """The PMIDs a MEDLINE update file deletes (``<DeleteCitation>``), without parsing the records.

    A byte scan (NLM puts the block at the end of update files), so a run can learn every deletion
    before it yields any document. Baseline files return an empty set.
    """
    path = Path(path)
    found: set[str] = set()
    block_re = re.compile(rb"<DeleteCitation>(.*?)</DeleteCitation>", re.S)
    pmid_re = re.compile(rb"<PMID[^>]*>\s*(\d+)\s*</PMID>")
    tail = b""
    with _open_binary(path) as f:
        try:
            while chunk := f.read(1 << 22):
                buf = tail + chunk
                end = 0
                for m in block_re.finditer(buf):
                    found.update(p.decode() for p in pmid_re.findall(m.group(1)))
                    end = m.end()
                # Keep an unfinished block whole; otherwise only enough bytes to catch a tag that
                # straddles the chunk boundary.
                open_at = buf.find(b"<DeleteCitation", end)
                tail = buf[open_at:] if open_at >= 0 else buf[max(end, len(buf) - 32):]
        except (EOFError, OSError, zlib.error) as e:
            raise _stream_error(path, e) from None
    return found


# --------------------------------------------------------------------------------------------------
# Format detection and the whole corpus


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".xml", ".xml.gz")):
        return "medline"
    if "pubtator" in name:
        return "pubtator"
    # Sniff: a PubTator file starts with "PMID|t|"; anything else is BERT-format text.
    lines = _lines(path)
    try:
        for _, line in lines:
            if line.strip():
                return "pubtator" if _PUBTATOR.match(line) else "text"
    finally:
        lines.close()
    return "text"


def read_corpus_file(path: str | Path, *, splitter: Splitter | None = None,
                     counts: CorpusCounts | None = None, split_sentences: bool = False) -> Iterator[Document]:
    """Documents from one file, its reader chosen by name and first line.

    ``*.xml``/``*.xml.gz`` -> :func:`read_medline_xml`; a name containing "pubtator" or a first line
    ``PMID|t|...`` -> :func:`read_pubtator`; anything else -> :func:`read_text` (sidecar ``.pmids``
    used when present; ``split_sentences`` passed on).
    """
    path = Path(path)
    kind = _format_of(path)
    if kind == "medline":
        return read_medline_xml(path, splitter=splitter, counts=counts)
    if kind == "pubtator":
        return read_pubtator(path, splitter=splitter, counts=counts)
    return read_text(path, splitter=splitter, counts=counts, split_sentences=split_sentences)


@dataclass(frozen=True)
class CorpusFilter:
    """Which documents go into pretraining; every field can be turned off."""

    min_words: int = 128
    """Drop documents with fewer whitespace-separated words (title included). PubMedBERT dropped
    abstracts under 128 words; 0 keeps everything."""
    dedup_pmid: bool = True
    """One document per PMID. Across files the newest version wins (the last file that holds the
    PMID: an update file's revision replaces the baseline's); within a file, the first."""
    dedup_text: bool = True
    """One document per normalised text (64-bit BLAKE2b of :func:`normalize_text`): the first in
    corpus order. About 60 bytes of memory per kept document of a file, plus 16 bytes per record of
    the whole corpus for the cross-file pass (:func:`corpus_drops`)."""
    languages: tuple[str, ...] | None = None
    """MEDLINE language codes to keep (e.g. ``("eng",)``); None keeps every language. Documents
    without a language (text, PubTator) always pass."""

    def __post_init__(self) -> None:
        if self.min_words < 0:
            raise ValueError(f"CorpusFilter.min_words must be >= 0, got {self.min_words}")
        if self.languages is not None and not self.languages:
            raise ValueError("CorpusFilter.languages is empty: that drops every MEDLINE document; "
                             "pass None to keep all languages")


def filter_documents(docs: Iterable[Document], config: CorpusFilter = CorpusFilter(), *,
                     decontamination: DecontaminationSet | None = None,
                     counts: CorpusCounts | None = None) -> Iterator[Document]:
    """Apply ``config`` (and decontamination) to ``docs``, counting each drop in ``counts``.

    Order: language, length, test PMID, test text, duplicate PMID, duplicate text, so that a
    duplicate of a test abstract is counted as contamination, and the length filter decides before
    a short document can shadow a longer one with the same PMID.
    """
    counts = counts if counts is not None else CorpusCounts()
    seen_pmids: set[str] = set()
    seen_text: set[int] = set()
    for doc in docs:
        if (config.languages is not None and doc.language is not None
                and doc.language not in config.languages):
            counts.dropped_language += 1
            continue
        if not any(s.strip() for s in doc.sentences):
            counts.skipped_empty += 1
            continue
        if config.min_words and doc.num_words() < config.min_words:
            counts.dropped_short += 1
            continue
        if decontamination is not None:
            reason = decontamination.match(doc)
            if reason == "pmid":
                counts.dropped_test_pmid += 1
                continue
            if reason == "text":
                counts.dropped_test_text += 1
                continue
        if config.dedup_pmid and doc.pmid is not None:
            if doc.pmid in seen_pmids:
                counts.dropped_duplicate_pmid += 1
                continue
            seen_pmids.add(doc.pmid)
        if config.dedup_text:
            key = text_key(doc)
            if key in seen_text:
                counts.dropped_duplicate_text += 1
                continue
            seen_text.add(key)
        counts.kept += 1
        yield doc


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def text_key(doc: Document) -> int:
    """The duplicate-text key: a 64-bit hash of the normalised text (sentence splits do not change it)."""
    return _hash64(normalize_text(doc.text))


def pmid_key(pmid: str) -> int:
    """A PMID as a 64-bit key: its number (PMIDs are decimal), else a hash of the string."""
    return int(pmid) if pmid.isdigit() and len(pmid) <= 18 else _hash64(pmid)


@dataclass(frozen=True)
class FileDrops:
    """What one file loses before filtering, decided by a first pass over the whole corpus.

    Keys come from :func:`pmid_key` and :func:`text_key`; each set holds only keys that occur in the
    file, so it stays small however many files or deletions the corpus has.
    """

    deleted_pmids: frozenset[int] = frozenset()
    """PMIDs that a ``<DeleteCitation>`` in this file or a later one deletes."""
    superseded_pmids: frozenset[int] = frozenset()
    """PMIDs that a later file holds too: the newer version is kept, this file's is dropped."""
    earlier_texts: frozenset[int] = frozenset()
    """Texts an earlier file already holds (among documents not deleted or superseded)."""

    def drop(self, doc: Document, counts: CorpusCounts) -> bool:
        """Whether ``doc`` is dropped; a drop is counted as deleted, duplicate PMID or duplicate text."""
        if doc.pmid is not None and (self.deleted_pmids or self.superseded_pmids):
            key = pmid_key(doc.pmid)
            if key in self.deleted_pmids:
                counts.dropped_deleted += 1
                return True
            if key in self.superseded_pmids:
                counts.dropped_duplicate_pmid += 1
                return True
        if self.earlier_texts and text_key(doc) in self.earlier_texts:
            counts.dropped_duplicate_text += 1
            return True
        return False


def document_keys(path: str | Path) -> tuple[list[int | None], list[int]]:
    """(PMID key or None, text key) of every document ``path`` yields, in order.

    The first pass over a corpus. Sentences are not split (the keys do not depend on the splits),
    so this costs parsing only, a small share of reading with pysbd.
    """
    pmids: list[int | None] = []
    texts: list[int] = []
    for doc in read_corpus_file(path, splitter=lambda text: [text], split_sentences=False):
        pmids.append(None if doc.pmid is None else pmid_key(doc.pmid))
        texts.append(text_key(doc))
    return pmids, texts


def cross_file_drops(keys: Sequence[tuple[Sequence[int | None], Sequence[int]]],
                     deleted_in: dict[str, int], config: CorpusFilter) -> list[FileDrops]:
    """Each file's drops, from every file's :func:`document_keys` (files in corpus order: baseline
    files first, then updates in NLM's order).

    ``deleted_in`` maps a PMID to the last file whose ``<DeleteCitation>`` names it: that deletes it
    from that file and every earlier one (a later file may bring it back). With deduplication on, a
    PMID is kept from the last file that holds it, and a text from the first file that holds it
    among the documents neither deleted nor superseded. Duplicates inside one file are left to
    :func:`filter_documents`. The result does not depend on how many processes read the files later.
    """
    import numpy as np

    n_files = len(keys)
    sizes = [len(t) for _, t in keys]
    total = sum(sizes)
    file_of = np.repeat(np.arange(n_files, dtype=np.int64), sizes)  # (R,) file index of each record
    has_pmid = np.fromiter((p is not None for ps, _ in keys for p in ps), bool, count=total)
    pmids = np.fromiter((p or 0 for ps, _ in keys for p in ps), np.uint64, count=total)
    texts = np.fromiter((t for _, ts in keys for t in ts), np.uint64, count=total)
    deleted = np.zeros(total, bool)
    if deleted_in:
        by_key = {pmid_key(p): j for p, j in deleted_in.items()}
        del_keys = np.fromiter(by_key, np.uint64, count=len(by_key))
        order = np.argsort(del_keys)
        del_keys = del_keys[order]
        del_file = np.fromiter(by_key.values(), np.int64, count=len(by_key))[order]
        at = np.minimum(np.searchsorted(del_keys, pmids), len(del_keys) - 1)
        deleted = has_pmid & (del_keys[at] == pmids) & (del_file[at] >= file_of)
    alive = ~deleted
    superseded = np.zeros(total, bool)
    if config.dedup_pmid and has_pmid.any():
        idx = np.flatnonzero(has_pmid)
        _, inverse = np.unique(pmids[idx], return_inverse=True)
        newest = np.full(inverse.max() + 1, -1, np.int64)
        np.maximum.at(newest, inverse, file_of[idx])
        superseded[idx[file_of[idx] < newest[inverse]]] = True  # a later file holds the PMID again
        superseded &= alive
        alive &= ~superseded
    earlier = np.zeros(total, bool)
    if config.dedup_text and alive.any():
        idx = np.flatnonzero(alive)
        _, inverse = np.unique(texts[idx], return_inverse=True)
        first = np.full(inverse.max() + 1, n_files, np.int64)
        np.minimum.at(first, inverse, file_of[idx])
        earlier[idx[file_of[idx] > first[inverse]]] = True

    def per_file(mask: np.ndarray, values: np.ndarray) -> list[frozenset[int]]:
        sets: list[set[int]] = [set() for _ in range(n_files)]
        for r in np.flatnonzero(mask):
            sets[file_of[r]].add(int(values[r]))
        return [frozenset(x) for x in sets]

    return [FileDrops(*drops) for drops in zip(per_file(deleted, pmids), per_file(superseded, pmids),
                                               per_file(earlier, texts))]


def corpus_drops(files: Sequence[Path], config: CorpusFilter,
                 map_files: Callable[[Callable[[Path], Any], Sequence[Path]], list[Any]] | None = None
                 ) -> list[FileDrops]:
    """The first pass over a corpus: each file's deleted citations and cross-file duplicates.

    Deleted PMIDs are collected by a byte scan (:func:`medline_deleted_pmids`); when there are some,
    or several files to deduplicate, every file's keys are read (:func:`document_keys`, through
    ``map_files``, e.g. a process pool's ``map``) and resolved by :func:`cross_file_drops`.
    """
    deleted_in: dict[str, int] = {}  # PMID -> index of the last file that deletes it
    for i, p in enumerate(files):
        if _format_of(p) == "medline":
            for pmid in medline_deleted_pmids(p):
                deleted_in[pmid] = i
    dedup = len(files) > 1 and (config.dedup_pmid or config.dedup_text)
    if not (deleted_in or dedup):
        return [FileDrops()] * len(files)
    keys = (map_files or (lambda fn, xs: [fn(x) for x in xs]))(document_keys, files)
    return cross_file_drops(keys, deleted_in, config if dedup else replace(config, dedup_pmid=False,
                                                                                dedup_text=False))


def iter_corpus(paths: Sequence[str | Path], config: CorpusFilter = CorpusFilter(), *,
                decontamination: DecontaminationSet | None = None, counts: CorpusCounts | None = None,
                splitter: Splitter | None = None, split_sentences: bool = False) -> Iterator[Document]:
    """Every kept document of ``paths``, in order: read, drop deleted citations, then filter.

    MEDLINE deletions are honoured across files: a ``<DeleteCitation>`` in file *j* drops that PMID
    from files ``0..j`` (earlier versions), while a later file may bring it back. Give baseline
    files first, then updates in NLM's order. Deleted PMIDs are collected by a cheap byte scan
    (:func:`medline_deleted_pmids`) before the first document is read; with several files and
    deduplication on, a first pass (:func:`corpus_drops`) also finds the PMIDs that a later file
    revises and the texts that an earlier file holds.
    """
    counts = counts if counts is not None else CorpusCounts()
    files = [Path(p) for p in paths]
    drops = corpus_drops(files, config)

    def read_all() -> Iterator[Document]:
        for p, file_drops in zip(files, drops):
            for doc in read_corpus_file(p, splitter=splitter, counts=counts, split_sentences=split_sentences):
                if not file_drops.drop(doc, counts):
                    yield doc

    yield from filter_documents(read_all(), config, decontamination=decontamination, counts=counts)


# --------------------------------------------------------------------------------------------------
# Test-set decontamination

_MASK = re.compile(r"@[A-Z][A-Z-]*\$")  # BLURB entity masks: @GENE$, @DISEASE$, @CHEMICAL$, @DRUG$ ...
_ANCHOR = 24  # normalised characters hashed per anchor; test sentences have >= 60
_MIN_TEST_WORDS = 8
_MIN_TEST_CHARS = 60
_ANCHORS_PER_SENTENCE = 3


def _rough_sentences(text: str) -> list[str]:
    """Split raw test text at ``.!?`` + whitespace. Over-splitting is harmless for matching (each
    piece must still be >= 8 words), and it is ~1000x faster than pysbd on the ~4k test abstracts."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


@dataclass
class DecontaminationSet:
    """Benchmark test PMIDs and normalised test sentences; ``match(doc)`` says if a doc holds one.

    A test sentence is kept for matching when it has at least 8 words and 60 normalised characters
    (shorter ones, like "Results", are too common to mean contamination). A sentence with entity
    masks (``@GENE$``) is matched by its unmasked pieces: all of them must occur in the document.
    Matching is substring containment in :func:`normalize_text` space, found through 24-character
    anchors that start at word starts of the test sentence and are looked up at every word start of
    the document (about one set lookup per word).
    """

    pmids: set[str] = field(default_factory=set)
    """Test-split PMIDs."""
    sentences: list[tuple[str, ...]] = field(default_factory=list)
    """Each test sentence as its normalised pieces (one piece unless it had masks)."""
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per source file (relative to the data dir): ``{"pmids": new PMIDs, "sentences": usable test
    sentences (a sentence already added from another file counts again)}``, for the manifest."""
    missing: list[str] = field(default_factory=list)
    """Known BLURB test files that were not found (recorded, not an error)."""
    _index: dict[str, list[int]] = field(default_factory=dict, repr=False)  # anchor -> sentence ids
    _known: set[tuple[str, ...]] = field(default_factory=set, repr=False)

    def add_pmids(self, pmids: Iterable[str]) -> int:
        """Add PMIDs; returns how many were new."""
        before = len(self.pmids)
        self.pmids.update(p.strip() for p in pmids if p.strip())
        return len(self.pmids) - before

    def add_sentence(self, text: str) -> bool:
        """Add one raw (or tokenised, or masked) test sentence; False when too short to use."""
        raw_pieces = _MASK.split(text)
        words = sum(1 for piece in raw_pieces for w in piece.split() if _ALNUM_RUN.search(w))
        pieces = tuple(p for p in (normalize_text(r) for r in raw_pieces) if p)
        if words < _MIN_TEST_WORDS or sum(map(len, pieces)) < _MIN_TEST_CHARS:
            return False
        anchors: list[str] = []
        # Anchors start where a word starts in the test text *and* must start in any text holding
        # it: the sentence start, or an alphanumeric run after a non-alphanumeric character of the
        # same piece (not one glued to a mask: "@GENE$s").
        for k, raw in enumerate(raw_pieces):
            offset = 0
            norm_piece = normalize_text(raw)
            for m in _ALNUM_RUN.finditer(raw.lower()):
                safe = m.start() > 0 or (k == 0)
                start = offset
                offset += len(m.group())
                if safe and len(norm_piece) - start >= _ANCHOR:
                    anchors.append(norm_piece[start:start + _ANCHOR])
                if len(anchors) >= _ANCHORS_PER_SENTENCE:
                    break
            if len(anchors) >= _ANCHORS_PER_SENTENCE:
                break
        if not anchors:  # every piece shorter than an anchor: fall back to the longest piece
            longest = max(pieces, key=len)
            if len(longest) < _ANCHOR:
                return False
            anchors.append(longest[:_ANCHOR])
        if pieces in self._known:  # the same sentence from another file (BC5CDR chem/disease)
            return True
        self._known.add(pieces)
        ident = len(self.sentences)
        self.sentences.append(pieces)
        for a in dict.fromkeys(anchors):
            self._index.setdefault(a, []).append(ident)
        return True

    def match(self, doc: Document) -> str | None:
        """``"pmid"`` if the document's PMID is a test PMID, ``"text"`` if it contains a test
        sentence, else None."""
        if doc.pmid is not None and doc.pmid in self.pmids:
            return "pmid"
        if not self._index:
            return None
        runs = _ALNUM_RUN.findall(doc.text.lower())
        norm = "".join(runs)
        pos = 0
        tried: set[int] = set()
        for run in runs:
            ids = self._index.get(norm[pos:pos + _ANCHOR])
            pos += len(run)
            if ids:
                for i in ids:
                    if i not in tried:
                        tried.add(i)
                        if all(piece in norm for piece in self.sentences[i]):
                            return "text"
        return None


# Readers of the BLURB test files, each: path -> (PMIDs, sentences as raw/tokenised/masked text).
TestFileReader = Callable[[Path], tuple[list[str], list[str]]]


def _iob_sentences(path: Path) -> tuple[list[str], list[str]]:
    """CoNLL ``token<TAB>tag``, blank line between sentences; ``-DOCSTART- (PMID)`` gives PMIDs
    (JNLPBA's ``-DOCSTART- <MEDLINE UID>`` is not a PMID and is ignored)."""
    pmids: list[str] = []
    sentences: list[str] = []
    tokens: list[str] = []
    for _, line in _lines(path):
        if line.startswith("-DOCSTART-"):
            m = re.match(r"-DOCSTART-\s*\((\d+)\)", line)
            if m:
                pmids.append(m.group(1))
            continue
        if not line.strip():
            if tokens:
                sentences.append(" ".join(tokens))
                tokens = []
            continue
        tokens.append(line.split("\t", 1)[0])
    if tokens:
        sentences.append(" ".join(tokens))
    return pmids, sentences


def _pubtator_test(path: Path) -> tuple[list[str], list[str]]:
    pmids: list[str] = []
    sentences: list[str] = []
    for _, line in _lines(path):
        m = _PUBTATOR.match(line)
        if m:
            if m.group(2) == "t":
                pmids.append(m.group(1))
            sentences.extend(_rough_sentences(m.group(3)))
    return pmids, sentences


def _tsv_column(path: Path, columns: tuple[int, ...], header: bool) -> list[str]:
    out: list[str] = []
    for lineno, line in _lines(path):
        if (header and lineno == 1) or not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) <= max(columns):
            raise DataError(f"{path}: line {lineno} has {len(fields)} tab-separated fields, "
                            f"expected at least {max(columns) + 1}")
        out.extend(fields[c] for c in columns)
    return out


def _masked_tsv(path: Path) -> tuple[list[str], list[str]]:
    """GAD / ChemProt / DDI BLURB TSV: sentence (with ``@GENE$``-style masks) in column 2."""
    lines = _lines(path)
    first = next(lines, (1, ""))[1]
    lines.close()
    header = first.split("\t")[0] in ("index", "id", "")
    return [], _tsv_column(path, (1,), header)


def _biosses(path: Path) -> tuple[list[str], list[str]]:
    return [], _tsv_column(path, (1, 2), header=True)


def _hoc(path: Path) -> tuple[list[str], list[str]]:
    """HoC: ``labels<TAB>sentence<TAB>PMID_s<n>``."""
    rows = _tsv_column(path, (1, 2), header=True)
    return sorted({idx.split("_", 1)[0] for idx in rows[1::2]}), rows[0::2]


def _pmid_list(path: Path) -> tuple[list[str], list[str]]:
    """BLURB indexing file: comma-separated ``PMID`` or ``PMID.txt`` names."""
    pmids = []
    for lineno, line in _lines(path):
        for item in line.split(","):
            item = item.strip().removesuffix(".txt")
            if item:
                if not item.isdigit():
                    raise DataError(f"{path}: line {lineno}: {item!r} is not a PMID")
                pmids.append(item)
    return pmids, []


def _chemprot_abstracts(path: Path) -> tuple[list[str], list[str]]:
    """ChemProt raw ``PMID<TAB>title<TAB>abstract``."""
    rows = _tsv_column(path, (0, 1, 2), header=False)
    pmids = rows[0::3]
    sentences = [s for text in rows[1::3] + rows[2::3] for s in _rough_sentences(text)]
    return pmids, sentences


def _bioasq(path: Path) -> tuple[list[str], list[str]]:
    """BioASQ BLURB TSV: ``id<TAB>question<TAB>context<TAB>label`` (ids are not PMIDs)."""
    rows = _tsv_column(path, (1, 2), header=False)
    return [], [s for text in rows for s in _rough_sentences(text)]


def _pubmedqa(path: Path) -> tuple[list[str], list[str]]:
    """PubMedQA ``test_ground_truth.json`` (PMIDs); question, contexts and long answer of those
    PMIDs from ``ori_pqal.json`` beside it."""
    try:
        truth = json.loads(path.read_bytes().decode("utf-8"))
        pqal_path = path.with_name("ori_pqal.json")
        pqal = json.loads(pqal_path.read_bytes().decode("utf-8")) if pqal_path.is_file() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} (or ori_pqal.json beside it): not valid UTF-8 JSON: {e}") from None
    pmids = list(truth)
    sentences: list[str] = []
    for pmid in pmids:
        entry = pqal.get(pmid)
        if entry:
            texts = [entry.get("QUESTION", ""), *entry.get("CONTEXTS", []), entry.get("LONG_ANSWER", "")]
            sentences.extend(s for t in texts for s in _rough_sentences(t))
    return pmids, sentences


# The BLURB test files, as laid out in ../shared/data (see SOURCES.md). bc2gm/ and ddi/ are the
# two BLURB datasets not shipped there; they are read when a data dir has them.
BLURB_TEST_FILES: tuple[tuple[str, TestFileReader], ...] = (
    ("bc5cdr_chem/test.tsv", _iob_sentences),
    ("bc5cdr_disease/test.tsv", _iob_sentences),
    ("ncbi_disease/test.tsv", _iob_sentences),
    ("bc2gm/test.tsv", _iob_sentences),
    ("jnlpba/test.tsv", _iob_sentences),
    ("ebm_pico/test.tsv", _iob_sentences),
    ("ebm_pico/test_pmid.tsv", _pmid_list),
    ("ncbi_disease/pubtator/NCBItestset_corpus.txt", _pubtator_test),
    ("bc5cdr_pubtator/CDR_TestSet.PubTator.txt", _pubtator_test),
    ("chemprot/raw/chemprot_test_gs/chemprot_test_abstracts_gs.tsv", _chemprot_abstracts),
    ("chemprot/blurb/test.tsv", _masked_tsv),
    ("ddi/test.tsv", _masked_tsv),
    ("gad/test.tsv", _masked_tsv),
    ("biosses/test.tsv", _biosses),
    ("hoc/test.tsv", _hoc),
    ("hoc/test_pmid.tsv", _pmid_list),
    ("pubmedqa/test_ground_truth.json", _pubmedqa),
    ("bioasq/test.tsv", _bioasq),
)


def build_decontamination_set(data_dir: str | Path, *, extra_files: Sequence[tuple[str | Path, TestFileReader]] = ()
                              ) -> DecontaminationSet:
    """Test PMIDs and normalised test sentences from the BLURB test files under ``data_dir``.

    ``data_dir`` is laid out like ``../shared/data`` (:data:`BLURB_TEST_FILES` lists the paths);
    files not found are listed in ``.missing``. ``extra_files`` adds ``(path, reader)`` pairs for
    other benchmarks. Raises DataError when no test file at all is found (a wrong directory would
    otherwise silently decontaminate nothing).
    """
    root = Path(data_dir)
    out = DecontaminationSet()
    todo = [(root / rel, rel, reader) for rel, reader in BLURB_TEST_FILES]
    todo += [(Path(p), str(p), reader) for p, reader in extra_files]
    for path, name, reader in todo:
        if not path.is_file():
            out.missing.append(name)
            continue
        pmids, sentences = reader(path)
        out.sources[name] = {"pmids": out.add_pmids(pmids),
                             "sentences": sum(out.add_sentence(s) for s in sentences)}
    if not out.sources:
        raise DataError(f"{root}: no BLURB test file found (looked for {BLURB_TEST_FILES[0][0]}, "
                        f"{BLURB_TEST_FILES[-1][0]}, ...); pass the directory laid out like ../shared/data")
    return out
