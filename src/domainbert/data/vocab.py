"""Text → WordPiece vocabulary: ``domainbert vocab build``, streamed over corpora larger than memory.

PubMedBERT's argument for pretraining from scratch starts here (Gu et al. 2021, section 2.2): a
vocabulary built from the domain's own text keeps its words whole (``acetyltransferase``,
``lymphoma``), where a general-domain vocabulary shatters them into pieces. ``vocab build`` trains a
WordPiece vocabulary with the Rust ``tokenizers`` library and BERT's normalisation (uncased:
lowercase and strip accents; CJK characters split; punctuation split; control characters removed).

The corpus is read exactly as ``data prepare`` reads it: the same readers (plain text, MEDLINE/PubMed
XML, PubTator; ``.gz`` too; folders expanded), the same filters and the same decontamination
(:func:`domainbert.data.filters.iter_corpus`), so a model is never trained on parsed abstracts with a
vocabulary learned from XML markup, nor on text its vocabulary never saw. Sentences are not split:
WordPiece counts words, and where a sentence ends does not change them (an abstract read whole gives
the vocabulary its sentences would). The trainer keeps word counts, not the text.

It writes the files transformers' ``AutoTokenizer`` loads and prints the statistics that make the
in-domain argument: size, and the share of corpus words split into two or more pieces (optionally
beside a reference vocabulary such as BERT's general-domain one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from domainbert.data.corpus import CorpusCounts, list_corpus_files
from domainbert.data.filters import (
    CorpusFilter,
    DecontaminationSet,
    FileDrops,
    add_filter_arguments,
    build_decontamination_set,
    corpus_drops,
    filter_from_args,
    iter_corpus,
)
from domainbert.data.tokenization import SPECIAL_TOKENS, BertTokenizer, build_backend
from domainbert.errors import DataError, VocabError
from domainbert.model.hub import resolve_model
from domainbert.progress import tqdm

#: Special tokens in the order they take ids 0..4 (PubMedBERT's vocabulary orders them the same way).
SPECIAL_ORDER = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _whole(text: str) -> list[str]:
    """The splitter vocab training uses: none (words do not depend on sentence ends)."""
    return [text]


def corpus_texts(files: Sequence[Path], corpus_filter: CorpusFilter = CorpusFilter(), *,
                 decontamination: DecontaminationSet | None = None, counts: CorpusCounts | None = None,
                 progress: bool = False, drops: Sequence[FileDrops] | None = None,
                 sample: list[str] | None = None, sample_size: int = 0) -> Iterator[str]:
    """The text a vocabulary learns from: each non-empty line (text files) or title and abstract
    (MEDLINE, PubTator) of every document ``data prepare`` would keep from ``files``.

    Bad input (non-UTF-8 bytes, a truncated ``.gz``, malformed XML) raises the corpus readers'
    one-line ``DataError`` naming the file and line. ``drops``: the corpus's first pass, when the
    caller reads it several times; ``sample`` collects the first ``sample_size`` texts on the way.
    """
    bar = tqdm(unit="doc", desc="reading corpus", disable=not progress)
    for doc in iter_corpus(files, corpus_filter, decontamination=decontamination, counts=counts,
                           splitter=_whole, drops=drops):
        bar.update(1)
        for text in doc.sentences:
            if text.strip():
                if sample is not None and len(sample) < sample_size:
                    sample.append(text)
                yield text
    bar.close()


VOCAB_STATS = "vocab_stats.json"
"""The file beside ``vocab.txt`` holding :class:`VocabStats` (copied into a pretraining run for its card)."""


@dataclass
class VocabStats:
    """What ``vocab build`` reports (and writes to :data:`VOCAB_STATS`)."""

    vocab_size: int
    corpus_files: list[str]
    words_measured: int
    """Corpus words (after BERT's whitespace/punctuation split) the split share was measured on."""
    split_share: float
    """Share of those words that the vocabulary splits into two or more pieces."""
    mean_pieces_per_word: float
    unk_share: float
    """Share of words that became [UNK]."""
    reference: str | None = None
    reference_split_share: float | None = None
    reference_mean_pieces_per_word: float | None = None
    corpus: dict[str, Any] = field(default_factory=dict)
    """What was read: the corpus filter, the decontamination sources and the counts of documents
    read, dropped (by reason) and kept, as ``data prepare``'s manifest records them."""


def split_stats(tokenizer: BertTokenizer, lines: Sequence[str]) -> tuple[int, float, float, float]:
    """(words, share split into ≥2 pieces, mean pieces per word, share [UNK]) over ``lines``."""
    words = split = pieces = unk = 0
    unk_id = tokenizer.unk_token_id
    for enc in tokenizer.encode_batch(list(lines), add_special_tokens=False):
        per_word: dict[int, list[int]] = {}
        for wid, tid in zip(enc.word_ids, enc.input_ids):
            if wid is not None:
                per_word.setdefault(wid, []).append(tid)
        for ids in per_word.values():
            words += 1
            pieces += len(ids)
            split += len(ids) > 1
            unk += ids == [unk_id]
    if words == 0:
        return 0, 0.0, 0.0, 0.0
    return words, split / words, pieces / words, unk / words


def train_wordpiece(files: Sequence[Path], vocab_size: int, *, lowercase: bool = True,
                    min_frequency: int = 2, limit_alphabet: int = 1000, progress: bool = True,
                    corpus_filter: CorpusFilter = CorpusFilter(),
                    decontamination: DecontaminationSet | None = None,
                    counts: CorpusCounts | None = None, sample: list[str] | None = None,
                    sample_size: int = 0) -> BertTokenizer:
    """Train a BERT WordPiece vocabulary on the documents of ``files`` that ``corpus_filter`` and
    ``decontamination`` keep (streamed); returns the tokenizer. ``counts`` gets the final pass's counts
    and ``sample`` its first ``sample_size`` texts. The corpus is read twice (the alphabet, then the
    merges), after one first pass for deletions and cross-file duplicates."""
    if vocab_size < len(SPECIAL_ORDER) + 1:
        raise VocabError(f"--vocab-size {vocab_size} is too small: it must exceed the {len(SPECIAL_ORDER)} "
                         "special tokens (BERT uses 30522, PubMedBERT 28895)")
    drops = corpus_drops(list(files), corpus_filter)  # once, for both passes

    def train(size: int, fixed: list[str], show: bool, counted: CorpusCounts | None,
              into: list[str] | None) -> dict[str, int]:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=lowercase, lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(
            vocab_size=size, min_frequency=min_frequency, limit_alphabet=limit_alphabet,
            special_tokens=fixed, continuing_subword_prefix="##", show_progress=False)
        texts = corpus_texts(files, corpus_filter, decontamination=decontamination, counts=counted, progress=show,
                             drops=drops, sample=into, sample_size=sample_size)
        tok.train_from_iterator(texts, trainer=trainer)
        return tok.get_vocab()

    # tokenizers' trainer gives the "##x" continuation characters ids in hash-map order, and those
    # ids break ties between equally frequent merges, so two runs on the same corpus can give
    # different vocabularies (huggingface/tokenizers#1794). Pass 1 (no merges) finds the full set of
    # "##x"; pass 2 fixes their ids up front, in sorted order, which makes the result reproducible.
    alphabet = train(0, SPECIAL_ORDER, False, None, None)
    continuations = sorted(t for t in alphabet if t.startswith("##"))
    vocab = train(vocab_size, SPECIAL_ORDER + continuations, progress, counts, sample)
    if len(vocab) <= len(SPECIAL_ORDER):
        raise VocabError(f"the corpus ({', '.join(map(str, files))}) yielded no tokens: is it empty, or did "
                         "the filters drop every document (lower --min-words)?")
    # Rebuild with BERT's full pipeline (templates, decoder) around the learned vocabulary.
    backend = build_backend(vocab, lowercase=lowercase, strip_accents=None if lowercase else False)
    return BertTokenizer(backend, do_lower_case=lowercase, strip_accents=None if lowercase else False)


def build_vocab(files: Sequence[Path], out: Path, vocab_size: int, *, cased: bool = False,
                min_frequency: int = 2, limit_alphabet: int = 1000, stats_lines: int = 50_000,
                reference: Path | None = None, progress: bool = True,
                corpus_filter: CorpusFilter = CorpusFilter(), decontaminate: str | Path | None = None) -> VocabStats:
    """Train, measure and write a vocabulary directory; the output appears whole or not at all.

    ``files`` are corpus files or folders of them, read with ``corpus_filter`` and decontaminated
    against the BLURB test files under ``decontaminate``, as ``data prepare`` reads them.
    """
    if not files:
        raise DataError("no corpus files given: pass --corpus FILE [FILE ...]")
    missing = [str(f) for f in map(Path, files) if not f.exists()]
    if missing:
        raise DataError(f"corpus file(s) not found: {', '.join(missing)}")
    files = list_corpus_files(files)
    out.parent.mkdir(parents=True, exist_ok=True)  # an unusable --out fails now, not after the training
    decontamination = build_decontamination_set(decontaminate) if decontaminate is not None else None
    counts = CorpusCounts()
    sample: list[str] = []  # the first stats_lines texts, taken during training (no extra read)
    tokenizer = train_wordpiece(files, vocab_size, lowercase=not cased, min_frequency=min_frequency,
                                limit_alphabet=limit_alphabet, progress=progress, corpus_filter=corpus_filter,
                                decontamination=decontamination, counts=counts, sample=sample,
                                sample_size=stats_lines)
    words, share, mean, unk = split_stats(tokenizer, sample)
    corpus = {"filter": asdict(corpus_filter), "counts": counts.as_dict(),
              "decontamination": None if decontamination is None else {"sources": decontamination.sources}}
    stats = VocabStats(tokenizer.vocab_size, [str(f) for f in files], words, share, mean, unk, corpus=corpus)
    if reference is not None:
        ref = BertTokenizer.from_pretrained(reference)
        _, stats.reference_split_share, stats.reference_mean_pieces_per_word, _ = split_stats(ref, sample)
        stats.reference = str(reference)
    # Write into a temporary sibling directory, then rename: never a half-written vocabulary.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tokenizer.save_pretrained(tmp)
        (tmp / VOCAB_STATS).write_text(json.dumps(asdict(stats), indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return stats


def configure_build(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, nargs="+", action="extend", required=True, metavar="FILE_OR_DIR",
                        help="text (BERT format), MEDLINE XML (.xml/.xml.gz) or PubTator files, or folders "
                             "(read as `data prepare` reads them)")
    parser.add_argument("--vocab-size", type=int, default=30522, help="target vocabulary size")
    parser.add_argument("--cased", action="store_true", help="keep case and accents (default: uncased)")
    parser.add_argument("--min-frequency", type=int, default=2, help="ignore pieces seen fewer times")
    parser.add_argument("--limit-alphabet", type=int, default=1000, help="most distinct characters kept")
    parser.add_argument("--stats-lines", type=int, default=50_000,
                        help="corpus texts (lines, or title/abstract) to measure the split-word share on")
    parser.add_argument("--compare", default=None, metavar="VOCAB_DIR",
                        help="also measure a reference vocabulary (e.g. BERT's general-domain one): a directory "
                        "or a model's Hub repo id")
    parser.add_argument("--out", type=Path, required=True, help="vocabulary directory to write")
    add_filter_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_build(args: argparse.Namespace) -> int:
    reference = resolve_model(args.compare).path if args.compare else None  # a directory or a Hub id
    stats = build_vocab(args.corpus, args.out, args.vocab_size, cased=args.cased,
                        min_frequency=args.min_frequency, limit_alphabet=args.limit_alphabet,
                        stats_lines=args.stats_lines, reference=reference, progress=not args.quiet,
                        corpus_filter=filter_from_args(args), decontaminate=args.decontaminate)
    kept = stats.corpus["counts"]
    print(f"wrote {args.out}: {stats.vocab_size:,} tokens ({'cased' if args.cased else 'uncased'}) from "
          f"{kept['kept']:,} of {kept['records']:,} documents")
    print(f"  words split into 2+ pieces: {stats.split_share:.1%} "
          f"(mean {stats.mean_pieces_per_word:.2f} pieces/word, {stats.unk_share:.2%} [UNK]) "
          f"over {stats.words_measured:,} corpus words")
    if stats.reference:
        print(f"  reference {stats.reference}: {stats.reference_split_share:.1%} split "
              f"(mean {stats.reference_mean_pieces_per_word:.2f} pieces/word)")
    return 0


__all__ = ["VOCAB_STATS", "build_vocab", "train_wordpiece", "split_stats", "corpus_texts", "VocabStats",
           "SPECIAL_TOKENS"]
