"""Pretraining text in, documents out: the corpus readers and sentence splitting.

The first stage of the pretraining pipeline. It reads the formats users hold and yields
:class:`Document` records, one per abstract (or per blank-line-separated block), each with its
sentences. Every consumer of a corpus reads it through here (``vocab build`` and ``data prepare``
alike, by way of :func:`domainbert.data.filters.iter_corpus` or :func:`read_corpus_file`); which
documents are kept is :mod:`domainbert.data.filters`' job.

Formats read (every reader streams: memory stays flat however large the file):
* **plain text**, google-research/bert's ``create_pretraining_data`` format: one sentence (or, with
  ``split_sentences=True``, one paragraph) per line, a blank line between documents. An optional
  ``X.pmids`` sidecar beside ``X.txt`` gives one PMID per document, ``NA`` for none (the layout of
  ``../shared/data/pubmed_corpus``). ``.gz`` is read transparently.
* **MEDLINE/PubMed XML** (``.xml``, ``.xml.gz``): NLM baseline and update files in both the 2016
  ``MedlineCitationSet`` DTD and the current ``PubmedArticleSet`` DTD, and efetch output. Parsed
  with ``xml.etree.ElementTree.iterparse``, clearing each record once read. Records without an
  abstract are skipped and counted; ``<DeleteCitation>`` PMIDs are reported and, in
  :func:`domainbert.data.filters.iter_corpus`, drop earlier versions of those citations.
* **PubTator** (``PMID|t|title``, ``PMID|a|abstract``, annotation lines ignored).

Sentence splitting (:class:`SentenceSplitter`) is pysbd, the splitter that built
``../shared/data/pubmed_corpus``, plus three small merge rules measured against gold boundaries in
``benchmarks/sentence_split.py`` (figures in ``benchmarks/RESULTS.md``).

Bad input raises :class:`~domainbert.errors.DataError` with one line naming the file and the line or
record (non-UTF-8 bytes, a truncated ``.gz``, malformed XML, a ``.pmids`` sidecar that does not
match); a record that is merely empty is a counted skip.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO
from xml.etree import ElementTree as ET

import pysbd

from domainbert.errors import DataError

__all__ = [
    "Document", "CorpusCounts", "SentenceSplitter", "normalize_text", "text_lines", "read_text",
    "read_pubtator", "read_medline_xml", "medline_deleted_pmids", "corpus_format", "read_corpus_file",
    "list_corpus_files", "CORPUS_SUFFIXES",
]

CORPUS_SUFFIXES = (".txt", ".txt.gz", ".xml", ".xml.gz", ".pubtator", ".pubtator.txt")
"""What a corpus folder's members may be called (``.pmids`` sidecars and hidden files are skipped)."""


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

ALNUM_RUN = re.compile(r"[^\W_]+")  # a maximal run of letters/digits (Unicode-aware)
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


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
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
    pmid_lines = text_lines(side) if side is not None else None
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

    for _, line in text_lines(path):
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


PUBTATOR_LINE = re.compile(r"^([^|\t]+)\|([ta])\|(.*)$")


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

    for lineno, line in text_lines(path):
        m = PUBTATOR_LINE.match(line)
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


def corpus_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".xml", ".xml.gz")):
        return "medline"
    if "pubtator" in name:
        return "pubtator"
    # Sniff: a PubTator file starts with "PMID|t|"; anything else is BERT-format text.
    lines = text_lines(path)
    try:
        for _, line in lines:
            if line.strip():
                return "pubtator" if PUBTATOR_LINE.match(line) else "text"
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
    kind = corpus_format(path)
    if kind == "medline":
        return read_medline_xml(path, splitter=splitter, counts=counts)
    if kind == "pubtator":
        return read_pubtator(path, splitter=splitter, counts=counts)
    return read_text(path, splitter=splitter, counts=counts, split_sentences=split_sentences)


def list_corpus_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files given, plus the corpus files under given folders (recursively, sorted by path).

    Folder members are ``*.txt``, ``*.txt.gz``, ``*.xml``, ``*.xml.gz`` and PubTator files; the
    ``.pmids`` sidecars, ``.md5`` files and hidden files are skipped.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                            and f.name.lower().endswith(CORPUS_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"corpus path {p} does not exist: pass corpus files or folders holding them")
    if not files:
        raise DataError(f"no corpus files found in {', '.join(map(str, paths))}: folders are searched "
                        f"for {', '.join(CORPUS_SUFFIXES)}")
    seen: set[Path] = set()
    unique = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique
