"""Documents in, the documents pretraining may use out: length, language, duplicates, decontamination.

Filters (:class:`CorpusFilter`, applied by :func:`filter_documents`), each one counted in
:class:`~domainbert.data.corpus.CorpusCounts` for the manifest a later stage writes: language,
minimum length in words (PubMedBERT dropped abstracts under 128 words), test-set decontamination
(by PMID and by normalised test sentence, see :func:`build_decontamination_set`), duplicates by
PMID and by normalised-text hash. Duplicates are found across files too (:func:`corpus_drops`): of a
PMID the newest version is kept (an update file's revision replaces the baseline's), of a text the
first copy. :func:`iter_corpus` is the whole path: read every file, drop deleted and cross-file
duplicate citations, filter.

Which files hold BLURB's test text, and how to read them, is :mod:`domainbert.data.test_text`'s
knowledge (:func:`~domainbert.data.test_text.test_text_files`); this module only matches against it.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from domainbert.data.corpus import (
    ALNUM_RUN,
    CorpusCounts,
    Document,
    Splitter,
    corpus_format,
    medline_deleted_pmids,
    normalize_text,
    read_corpus_file,
)
from domainbert.data.test_text import TestTextReader, test_text_files
from domainbert.errors import ConfigError, DataError

__all__ = [
    "CorpusFilter", "filter_documents", "iter_corpus", "corpus_drops", "cross_file_drops",
    "document_keys", "FileDrops", "DecontaminationSet", "build_decontamination_set", "text_key", "pmid_key",
]


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


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The corpus-filter flags, the same for every command that reads a corpus (``vocab build``,
    ``data prepare``): what one keeps, the other keeps."""
    f = CorpusFilter()
    parser.add_argument("--min-words", type=int, default=f.min_words,
                        help="drop documents with fewer words (PubMedBERT: 128; 0 keeps all)")
    parser.add_argument("--no-dedup-pmid", action="store_true", help="keep documents with a repeated PMID")
    parser.add_argument("--no-dedup-text", action="store_true", help="keep documents with repeated text")
    parser.add_argument("--languages", nargs="+", action="extend", default=None, metavar="CODE",
                        help="MEDLINE language codes to keep, e.g. eng (default: all)")
    parser.add_argument("--decontaminate", type=Path, default=None, metavar="DATA_DIR",
                        help="drop documents sharing a PMID or sentence with the BLURB test files under DATA_DIR")


def filter_from_args(args: argparse.Namespace) -> CorpusFilter:
    """The :class:`CorpusFilter` of the flags :func:`add_filter_arguments` added."""
    try:
        return CorpusFilter(min_words=args.min_words, dedup_pmid=not args.no_dedup_pmid,
                            dedup_text=not args.no_dedup_text,
                            languages=tuple(args.languages) if args.languages else None)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


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
        if corpus_format(p) == "medline":
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
                splitter: Splitter | None = None, split_sentences: bool = False,
                drops: Sequence[FileDrops] | None = None) -> Iterator[Document]:
    """Every kept document of ``paths``, in order: read, drop deleted citations, then filter.

    ``drops`` is the first pass's result (:func:`corpus_drops`) when a caller reads the corpus more
    than once; by default it is computed here.

    MEDLINE deletions are honoured across files: a ``<DeleteCitation>`` in file *j* drops that PMID
    from files ``0..j`` (earlier versions), while a later file may bring it back. Give baseline
    files first, then updates in NLM's order. Deleted PMIDs are collected by a cheap byte scan
    (:func:`medline_deleted_pmids`) before the first document is read; with several files and
    deduplication on, a first pass (:func:`corpus_drops`) also finds the PMIDs that a later file
    revises and the texts that an earlier file holds.
    """
    counts = counts if counts is not None else CorpusCounts()
    files = [Path(p) for p in paths]
    drops = list(drops) if drops is not None else corpus_drops(files, config)

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
        words = sum(1 for piece in raw_pieces for w in piece.split() if ALNUM_RUN.search(w))
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
            for m in ALNUM_RUN.finditer(raw.lower()):
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
        runs = ALNUM_RUN.findall(doc.text.lower())
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


def build_decontamination_set(data_dir: str | Path, *, extra_files: Sequence[tuple[str | Path, TestTextReader]] = ()
                              ) -> DecontaminationSet:
    """Test PMIDs and normalised test sentences from the BLURB test files under ``data_dir``.

    ``data_dir`` is laid out like ``../shared/data``; the BLURB registry names the files and their
    readers (:func:`~domainbert.data.test_text.test_text_files`), and those not found are listed in
    ``.missing``. ``extra_files`` adds ``(path, reader)`` pairs for
    other benchmarks. Raises DataError when no test file at all is found (a wrong directory would
    otherwise silently decontaminate nothing).
    """
    root = Path(data_dir)
    out = DecontaminationSet()
    known = test_text_files()
    todo = [(root / rel, rel, reader) for rel, reader in known]
    todo += [(Path(p), str(p), reader) for p, reader in extra_files]
    for path, name, reader in todo:
        if not path.is_file():
            out.missing.append(name)
            continue
        pmids, sentences = reader(path)
        out.sources[name] = {"pmids": out.add_pmids(pmids),
                             "sentences": sum(out.add_sentence(s) for s in sentences)}
    if not out.sources:
        raise DataError(f"{root}: no BLURB test file found (looked for {known[0][0]}, "
                        f"{known[-1][0]}, ...); pass the directory laid out like ../shared/data")
    return out
