"""Documents -> BERT pretraining examples (NSP pairs + masked LM) in shards, and the reader over them.

This is the second stage of the pretraining pipeline (issue 3, parts 3 and 4). It reproduces
google-research/bert's ``create_pretraining_data.py`` (the master version, with whole-word
masking) on token ids instead of token strings:

* ``create_instances_from_document``: segment pairs built from whole sentences of one document up
  to a target length (``max_seq_len - 3``, or with probability ``short_seq_prob`` a random target in
  ``[2, max_seq_len - 3]``); A is the first ``randint(1, len(chunk) - 1)`` sentences of the chunk;
  B is the rest of the chunk, or (half the time, and always when the chunk has one sentence)
  sentences from a random other document, in which case the unused sentences of the chunk are put
  back; ``truncate_seq_pair`` trims the longer side, one token at a time from the front or the back
  at random; ``[CLS] A [SEP] B [SEP]`` with token types 0 (``[CLS] A [SEP]``) and 1 (``B [SEP]``).
* ``create_masked_lm_predictions``: exactly ``min(max_predictions, max(1, round(len * prob)))``
  positions (``len`` counts ``[CLS]`` and the two ``[SEP]``, as the reference does; whole-word
  masking may stop short when the next word does not fit), never ``[CLS]`` or ``[SEP]``; 80 %
  ``[MASK]``, 10 % a random id of the whole vocabulary, 10 % unchanged; with whole-word masking a
  ``##`` piece joins the candidate of the piece before it, so every piece of a word is masked
  together.

Every function takes an explicit ``random.Random``; the call order on it is the reference's, so
the same generator gives the same instances (tests/test_pretraining_data.py checks this against an
independent transcription of the reference on a hand-built document set).

**The one deliberate departure**: the reference reads all input files into one list, shuffles it,
and draws random-next documents from the whole corpus, which holds the corpus in memory and runs
on one core. Here each input file is one unit of work with its own document pool (random-next B
comes from another document of the same file; a PubMed baseline file has about 30,000), its own
generator per duplication round, seeded from ``(seed, file position and name, dupe index)``, and
its own shard. Memory stays flat (one file's token ids, as numpy arrays), files run in parallel
processes, and the output is byte-identical whatever the number of workers. Documents are not
shuffled before pairing (the reader shuffles samples instead, which is what the reference's final
instance shuffle is for). Deduplication (``CorpusFilter.dedup_*``) and ``<DeleteCitation>`` work
across files, as in :func:`domainbert.corpus.iter_corpus`: a first pass reads every file's PMIDs
and text hashes (parsing only, no sentence splitting), and each file's task then carries the few
keys it must drop.

Output directory (``domainbert data prepare``)::

    manifest.json          written last: parameters, vocabulary hash, counts, shard list, checksum
    vocab.txt              a copy of the vocabulary (decoding; dynamic whole-word masking)
    shard-00000/           one per input file (files in the order given, folders expanded sorted),
                           N samples, L = max_seq_len,
      input_ids.npy        (N, L) uint16 (int32 when the vocabulary has more than 65,536 ids);
                           [CLS] A [SEP] B [SEP] then [PAD]; masked already unless dynamic masking
      lengths.npy          (N,) int16: real tokens (the rest is padding)
      b_start.npy          (N,) int16: position of B's first token (token type 1 from here to length)
      next_sentence.npy    (N,) uint8: 1 = B is random, 0 = B follows A (transformers' convention)
      masked_positions.npy (N, P) int16, P = max_predictions; positions ascending, 0-padded
      masked_labels.npy    (N, P) like input_ids: the original ids there, 0-padded
      num_masked.npy       (N,) uint8: how many of the P slots are used
      shard.json           this shard's counts, config checksum and the SHA-256 of each file
                           (the three masked_* files are absent with --dynamic-masking)

Shards are written under a temporary name and renamed when complete; ``manifest.json`` comes last.
An interrupted run therefore leaves no manifest, and a rerun keeps each finished shard whose
config checksum and file checksums match and redoes the rest.

The reader, :class:`PretrainingDataset`, memory-maps the shards, shuffles with a keyed
pseudo-random permutation (O(1) memory, a new order per epoch), splits samples between DDP ranks
and DataLoader workers, can start at an exact sample offset, masks on the fly for dynamically
masked data (a seed per epoch and sample), and refuses data prepared for another sequence length,
prediction count or vocabulary (:func:`check_manifest`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import random
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from domainbert.corpus import (CorpusCounts, CorpusFilter, DecontaminationSet, Document, FileDrops,
                               build_decontamination_set, corpus_drops, filter_documents, read_corpus_file)
from domainbert.errors import ConfigError, DataError, DomainBertError
from domainbert.tokenization import BertTokenizer

__all__ = [
    "PrepareConfig", "TrainingInstance", "DocumentPool", "MaskingSpec",
    "truncate_seq_pair", "create_masked_lm_predictions", "create_instances_from_document",
    "prepare_pretraining_data", "vocab_hash", "derive_seed", "list_corpus_files",
    "load_manifest", "check_manifest", "PretrainingDataset", "collate_pretraining",
    "MANIFEST_NAME", "FORMAT_VERSION",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
SHARD_META = "shard.json"
VOCAB_COPY = "vocab.txt"
FORMAT_VERSION = 1
MIN_SEQ_LEN = 8
IGNORE_INDEX = -100
_CORPUS_SUFFIXES = (".txt", ".txt.gz", ".xml", ".xml.gz", ".pubtator", ".pubtator.txt")
_DOCS_PER_ENCODE = 512  # documents tokenized per encode_batch call (bounded memory, Rust-parallel)


# ==================================================================================== config
@dataclass(frozen=True)
class PrepareConfig:
    """The parameters of ``create_pretraining_data``; every field goes into the manifest."""

    max_seq_len: int = 128
    """Tokens per example, [CLS] and both [SEP] included (the reference's ``max_seq_length``)."""
    max_predictions: int = 20
    """Most masked positions per example (``max_predictions_per_seq``); 20 for 128, 80 for 512."""
    masked_lm_prob: float = 0.15
    """Share of the example's tokens to mask (before the ``max_predictions`` cap)."""
    short_seq_prob: float = 0.1
    """Probability of a random shorter target length (less pretrain/fine-tune length mismatch)."""
    dupe_factor: int = 5
    """Rounds over the corpus, each with new pairings and masks. The reference's flag defaults to
    10 and its README uses 5; 5 halves the disk of 10. With ``dynamic_masking`` 1 is usually enough,
    since the reader draws new masks every epoch."""
    whole_word_mask: bool = False
    """Mask every ``##`` piece of a word together (BERT's later "whole word masking" models)."""
    dynamic_masking: bool = False
    """Store pairs unmasked and mask when loading, with a seed per epoch (RoBERTa-style)."""
    seed: int = 12345
    """Root of every random choice (the reference's ``random_seed`` default)."""
    nsp_balance: bool = False
    """Keep NSP at 50 % actual-next overall. The reference always draws a random B for a chunk of one
    sentence, so on abstracts ~40 % of its pairs are actual-next. With this on, every two such forced
    random pairs are evened out by turning the next coin-flipped random pair into an actual-next one
    (the coin is still drawn, so the random stream is unchanged until then). Off: the reference."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_seq_len < MIN_SEQ_LEN:
            problems.append(f"max_seq_len {self.max_seq_len} is below {MIN_SEQ_LEN}: [CLS] A [SEP] B [SEP] "
                            f"needs room for two segments; use --max-seq-len 128 (or at least {MIN_SEQ_LEN})")
        if self.max_seq_len > 32767:
            problems.append(f"max_seq_len {self.max_seq_len} exceeds 32767 (positions are stored as int16)")
        if not 1 <= self.max_predictions <= 255:
            problems.append(f"max_predictions {self.max_predictions} must be in 1..255 (counts are stored as "
                            "uint8); BERT uses 20 for length 128 and 80 for 512")
        if not 0.0 < self.masked_lm_prob < 1.0:
            problems.append(f"masked_lm_prob {self.masked_lm_prob} must be in (0, 1); BERT uses 0.15")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            problems.append(f"short_seq_prob {self.short_seq_prob} must be in [0, 1]; BERT uses 0.1")
        if self.dupe_factor < 1:
            problems.append(f"dupe_factor {self.dupe_factor} must be at least 1")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass(frozen=True)
class MaskingSpec:
    """What masking needs to know about the vocabulary (ids, not strings)."""

    cls_id: int
    sep_id: int
    mask_id: int
    vocab_size: int
    is_continuation: np.ndarray
    """(vocab_size,) bool: the token starts with ``##`` (a word-piece continuation)."""

    @classmethod
    def from_tokenizer(cls, tokenizer: BertTokenizer) -> MaskingSpec:
        cont = np.zeros(tokenizer.vocab_size, dtype=bool)
        for token, i in tokenizer.vocab.items():
            if token.startswith("##"):
                cont[i] = True
        return cls(tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id,
                   tokenizer.vocab_size, cont)


@dataclass
class TrainingInstance:
    """One example: ``[CLS] A [SEP] B [SEP]`` ids (masked when ``masked_positions`` is set)."""

    input_ids: list[int]
    b_start: int
    """Index of B's first token (= len(A) + 2); token type 1 from here on."""
    is_random_next: bool
    masked_positions: list[int] = field(default_factory=list)
    masked_labels: list[int] = field(default_factory=list)
    forced_random: bool = False
    """The chunk had one sentence, so B had to be random (no coin flip): the reason the reference's
    share of random-next pairs is above 50 % (counted as ``random_next_forced`` in the manifest)."""


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (stable across processes and Python runs, unlike ``hash``)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# ==================================================================================== algorithm
def truncate_seq_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int,
                      rng: random.Random) -> None:
    """Trim the longer of A and B (B on a tie) in place until both fit in ``max_num_tokens``."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        assert len(trunc) >= 1
        # From the front or the back at random, so that neither end is systematically lost.
        if rng.random() < 0.5:
            del trunc[0]
        else:
            trunc.pop()


def _fisher_yates(x: list[Any], rng: random.Random) -> None:
    """``rng.shuffle(x)`` with the same draws and result, without a Python call per element.

    CPython's ``Random.shuffle`` swaps ``x[i]`` with ``x[_randbelow(i + 1)]`` from the end, and
    ``_randbelow(n)`` draws ``getrandbits(n.bit_length())`` until the value is below ``n``. The
    shuffle of masking candidates is a quarter of ``data prepare``'s time, so it is inlined here;
    :data:`_shuffle` falls back to ``rng.shuffle`` if this Python's differs (checked at import).
    """
    getrandbits = rng.getrandbits
    for i in range(len(x) - 1, 0, -1):
        n = i + 1
        k = n.bit_length()
        j = getrandbits(k)
        while j >= n:
            j = getrandbits(k)
        x[i], x[j] = x[j], x[i]


def _same_as_random_shuffle() -> bool:
    ours, theirs = list(range(300)), list(range(300))
    a, b = random.Random(12345), random.Random(12345)
    _fisher_yates(ours, a)
    b.shuffle(theirs)
    return ours == theirs and a.random() == b.random()


def _library_shuffle(x: list[Any], rng: random.Random) -> None:
    rng.shuffle(x)


_shuffle = _fisher_yates if _same_as_random_shuffle() else _library_shuffle


def create_masked_lm_predictions(tokens: list[int], masked_lm_prob: float, max_predictions: int,
                                 spec: MaskingSpec, rng: random.Random, whole_word_mask: bool = False
                                 ) -> tuple[list[int], list[int], list[int]]:
    """Mask ``tokens`` (ids of ``[CLS] A [SEP] B [SEP]``): returns (output ids, positions, labels).

    Positions come back ascending; labels are the original ids there.
    """
    num_to_predict = min(max_predictions, max(1, int(round(len(tokens) * masked_lm_prob))))
    if not whole_word_mask:
        # Every candidate is one position, so the loop below takes the first num_to_predict of the
        # shuffled candidates: the same choices and the same random draws, without its bookkeeping.
        cls_id, sep_id = spec.cls_id, spec.sep_id
        singles = [i for i, token in enumerate(tokens) if token != cls_id and token != sep_id]
        _shuffle(singles, rng)
        output = list(tokens)
        chosen = singles[:num_to_predict]
        draw, mask_id, top = rng.random, spec.mask_id, spec.vocab_size - 1
        for index in chosen:
            if draw() < 0.8:
                output[index] = mask_id
            elif draw() >= 0.5:
                output[index] = rng.randint(0, top)
        chosen.sort()
        return output, chosen, [tokens[p] for p in chosen]
    cand_indexes: list[list[int]] = []
    for i, token in enumerate(tokens):
        if token == spec.cls_id or token == spec.sep_id:
            continue
        # Whole-word masking: a "##" piece joins the previous candidate (even across [SEP], as in
        # the reference, when truncation left B starting mid-word), so a word is masked whole.
        if whole_word_mask and cand_indexes and spec.is_continuation[token]:
            cand_indexes[-1].append(i)
        else:
            cand_indexes.append([i])
    _shuffle(cand_indexes, rng)
    output = list(tokens)
    masked: list[tuple[int, int]] = []
    covered: set[int] = set()
    for index_set in cand_indexes:
        if len(masked) >= num_to_predict:
            break
        # A whole word that would overshoot the count is skipped (the next may fit).
        if len(masked) + len(index_set) > num_to_predict:
            continue
        if any(index in covered for index in index_set):
            continue
        for index in index_set:
            covered.add(index)
            # The 80/10/10 rule: 80% [MASK]; else half the time (10%) keep the original token and
            # half the time (10%) a random id of the whole vocabulary (special tokens included).
            if rng.random() < 0.8:
                replacement = spec.mask_id
            elif rng.random() < 0.5:
                replacement = tokens[index]
            else:
                replacement = rng.randint(0, spec.vocab_size - 1)
            output[index] = replacement
            masked.append((index, tokens[index]))
    assert len(masked) <= num_to_predict
    masked.sort()
    return output, [p for p, _ in masked], [lab for _, lab in masked]


class DocumentPool:
    """The tokenized documents of one input file, flat in numpy (no Python int per token).

    Document ``d`` is sentences ``doc_starts[d]:doc_starts[d+1]``; sentence ``s`` is
    ``tokens[sent_starts[s]:sent_starts[s+1]]``. Empty sentences and documents are not stored (as
    the reference drops lines that tokenize to nothing, then empty documents).
    """

    def __init__(self) -> None:
        self._tokens: list[np.ndarray] = []
        self._sent_lens: list[int] = []
        self._doc_sents: list[int] = []
        self.tokens = np.zeros(0, dtype=np.int32)  # (T,)
        self.sent_starts = np.zeros(1, dtype=np.int64)  # (S + 1,)
        self.doc_starts = np.zeros(1, dtype=np.int64)  # (D + 1,)
        self.empty_sentences = 0
        self.empty_documents = 0

    def add(self, sentences: Sequence[Sequence[int]]) -> None:
        kept = 0
        for ids in sentences:
            if len(ids):
                self._tokens.append(np.asarray(ids, dtype=np.int32))
                self._sent_lens.append(len(ids))
                kept += 1
            else:
                self.empty_sentences += 1
        if kept:
            self._doc_sents.append(kept)
        else:
            self.empty_documents += 1

    def freeze(self) -> None:
        """Concatenate what ``add`` collected into the flat arrays."""
        self.tokens = np.concatenate(self._tokens) if self._tokens else np.zeros(0, dtype=np.int32)
        self.sent_starts = np.concatenate([[0], np.cumsum(self._sent_lens, dtype=np.int64)])
        self.doc_starts = np.concatenate([[0], np.cumsum(self._doc_sents, dtype=np.int64)])
        self._tokens, self._sent_lens, self._doc_sents = [], [], []

    def __len__(self) -> int:
        return len(self.doc_starts) - 1

    @property
    def num_sentences(self) -> int:
        return len(self.sent_starts) - 1

    def document(self, d: int) -> list[list[int]]:
        """Document ``d`` as a list of sentences, each a list of ids."""
        s0, s1 = int(self.doc_starts[d]), int(self.doc_starts[d + 1])
        flat = self.tokens[self.sent_starts[s0]:self.sent_starts[s1]].tolist()
        bounds = (self.sent_starts[s0:s1 + 1] - self.sent_starts[s0]).tolist()
        return [flat[bounds[k]:bounds[k + 1]] for k in range(s1 - s0)]

    @classmethod
    def from_documents(cls, docs: Sequence[Sequence[Sequence[int]]]) -> DocumentPool:
        pool = cls()
        for doc in docs:
            pool.add(doc)
        pool.freeze()
        return pool


class NspDebt:
    """Forced random-next pairs not yet evened out (``PrepareConfig.nsp_balance``), per input file."""

    def __init__(self) -> None:
        self.owed = 0


def create_instances_from_document(pool: DocumentPool, document_index: int, config: PrepareConfig,
                                   spec: MaskingSpec, rng: random.Random,
                                   debt: NspDebt | None = None) -> list[TrainingInstance]:
    """The reference's pairing of one document; masks too unless ``config.dynamic_masking``.

    ``debt`` carries ``config.nsp_balance``'s count from one document to the next (one per file, so
    the output stays independent of the number of worker processes).
    """
    if config.nsp_balance and debt is None:
        debt = NspDebt()
    document = pool.document(document_index)
    max_num_tokens = config.max_seq_len - 3  # room for [CLS], [SEP], [SEP]
    # Usually fill the whole sequence (padding is wasted compute), but short_seq_prob of the time
    # aim shorter, to lessen the mismatch with short fine-tuning inputs. The target is soft;
    # max_seq_len is the hard limit.
    target_seq_length = max_num_tokens
    if rng.random() < config.short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)
    instances: list[TrainingInstance] = []
    current_chunk: list[list[int]] = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if current_chunk:
                # a_end: how many of the chunk's sentences go into A.
                a_end = 1
                if len(current_chunk) >= 2:
                    a_end = rng.randint(1, len(current_chunk) - 1)
                tokens_a: list[int] = []
                for j in range(a_end):
                    tokens_a.extend(current_chunk[j])
                tokens_b: list[int] = []
                forced = len(current_chunk) == 1
                is_random_next = forced or rng.random() < 0.5
                if config.nsp_balance and debt is not None:
                    # One flipped pair moves the count of actual-next up by one and random down by
                    # one, so it evens out two forced random pairs.
                    if forced:
                        debt.owed += 1
                    elif is_random_next and debt.owed >= 2:
                        is_random_next, debt.owed = False, debt.owed - 2
                if is_random_next:
                    target_b_length = target_seq_length - len(tokens_a)
                    # Try (up to 10 times) to draw a document other than this one.
                    random_document_index = document_index
                    for _ in range(10):
                        random_document_index = rng.randint(0, len(pool) - 1)
                        if random_document_index != document_index:
                            break
                    random_document = pool.document(random_document_index)
                    random_start = rng.randint(0, len(random_document) - 1)
                    for j in range(random_start, len(random_document)):
                        tokens_b.extend(random_document[j])
                        if len(tokens_b) >= target_b_length:
                            break
                    # The chunk's sentences that B did not use are "put back" for the next pair.
                    i -= len(current_chunk) - a_end
                else:
                    for j in range(a_end, len(current_chunk)):
                        tokens_b.extend(current_chunk[j])
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
                assert len(tokens_a) >= 1 and len(tokens_b) >= 1
                tokens = [spec.cls_id, *tokens_a, spec.sep_id, *tokens_b, spec.sep_id]
                instance = TrainingInstance(tokens, len(tokens_a) + 2, is_random_next, forced_random=forced)
                if not config.dynamic_masking:
                    (instance.input_ids, instance.masked_positions,
                     instance.masked_labels) = create_masked_lm_predictions(
                        tokens, config.masked_lm_prob, config.max_predictions, spec, rng,
                        config.whole_word_mask)
                instances.append(instance)
            current_chunk = []
            current_length = 0
        i += 1
    return instances


# ==================================================================================== shards
class _ShardBuffer:
    """Growable fixed-width arrays for one shard (amortised doubling; memory ~ samples x L)."""

    def __init__(self, config: PrepareConfig, id_dtype: np.dtype, pad_id: int) -> None:
        self.config, self.n, self.pad_id = config, 0, pad_id
        L, P = config.max_seq_len, config.max_predictions
        cap = 1024
        self.arrays: dict[str, np.ndarray] = {
            "input_ids": np.full((cap, L), pad_id, dtype=id_dtype),  # (N, L)
            "lengths": np.zeros(cap, dtype=np.int16),  # (N,)
            "b_start": np.zeros(cap, dtype=np.int16),  # (N,)
            "next_sentence": np.zeros(cap, dtype=np.uint8),  # (N,)
        }
        if not config.dynamic_masking:
            self.arrays["masked_positions"] = np.zeros((cap, P), dtype=np.int16)  # (N, P)
            self.arrays["masked_labels"] = np.zeros((cap, P), dtype=id_dtype)  # (N, P)
            self.arrays["num_masked"] = np.zeros(cap, dtype=np.uint8)  # (N,)

    def append(self, inst: TrainingInstance) -> None:
        if self.n == len(self.arrays["lengths"]):
            for name, arr in self.arrays.items():
                grown = np.full((2 * len(arr), *arr.shape[1:]), self.pad_id if name == "input_ids" else 0,
                                dtype=arr.dtype)
                grown[:self.n] = arr
                self.arrays[name] = grown
        a, n, k = self.arrays, self.n, len(inst.input_ids)
        a["input_ids"][n, :k] = inst.input_ids
        a["lengths"][n] = k
        a["b_start"][n] = inst.b_start
        a["next_sentence"][n] = int(inst.is_random_next)
        if not self.config.dynamic_masking:
            m = len(inst.masked_positions)
            a["masked_positions"][n, :m] = inst.masked_positions
            a["masked_labels"][n, :m] = inst.masked_labels
            a["num_masked"][n] = m
        self.n += 1

    def final(self) -> dict[str, np.ndarray]:
        return {name: arr[:self.n] for name, arr in self.arrays.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def vocab_hash(tokenizer: BertTokenizer) -> str:
    """SHA-256 of the tokens in id order and the normalisation flags: what makes ids mean the same."""
    by_id = sorted(tokenizer.vocab.items(), key=lambda kv: kv[1])
    h = hashlib.sha256("\n".join(f"{i}\t{t}" for t, i in by_id).encode("utf-8"))
    h.update(json.dumps([tokenizer.do_lower_case, tokenizer.strip_accents,
                         tokenizer.tokenize_chinese_chars]).encode())
    return h.hexdigest()


def list_corpus_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files given, plus the corpus files under given folders (recursively, sorted by path).

    Folder members are ``*.txt``, ``*.txt.gz``, ``*.xml``, ``*.xml.gz`` and PubTator files; the
    ``.pmids`` sidecars, ``.md5`` files and hidden files are skipped.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                            and f.name.lower().endswith(_CORPUS_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"corpus path {p} does not exist: pass corpus files or folders holding them")
    if not files:
        raise DataError(f"no corpus files found in {', '.join(map(str, paths))}: folders are searched "
                        f"for {', '.join(_CORPUS_SUFFIXES)}")
    seen: set[Path] = set()
    unique = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique


@dataclass
class _FileTask:
    index: int
    path: str
    shard: str
    drops: FileDrops = FileDrops()
    """Deleted citations, PMIDs a later file revises and texts an earlier file holds."""


# What each worker process holds (set by _init_worker; the in-process path sets it too).
_WORKER: dict[str, Any] = {}


def _init_worker(vocab_dir: str, config: PrepareConfig, corpus_filter: CorpusFilter,
                 decontamination: DecontaminationSet | None, split_sentences: bool,
                 out_dir: str, config_checksum: str, single_thread: bool) -> None:
    if single_thread:
        # Several worker processes: one tokenizer thread each, so that workers do not oversubscribe.
        os.environ["RAYON_RS_NUM_CPUS"] = "1"
    tokenizer = BertTokenizer.from_pretrained(vocab_dir)
    _WORKER.update(tokenizer=tokenizer, spec=MaskingSpec.from_tokenizer(tokenizer), config=config,
                   corpus_filter=corpus_filter, decontamination=decontamination,
                   split_sentences=split_sentences, out_dir=Path(out_dir), checksum=config_checksum)


def _id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.int32)


def _shard_done(shard_dir: Path, checksum: str, path: Path) -> dict[str, Any] | None:
    """The shard's metadata if it is complete, made with ``checksum`` from ``path`` and intact."""
    meta_path = shard_dir / SHARD_META
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if meta.get("config_checksum") != checksum or meta.get("source_size") != path.stat().st_size:
        return None
    for name, digest in meta.get("sha256", {}).items():
        f = shard_dir / name
        if not f.is_file() or _sha256(f) != digest:
            return None
    return meta


def _process_file(task: _FileTask) -> dict[str, Any]:
    """Read, filter, tokenize and pair one input file into its shard; returns the shard's metadata."""
    w = _WORKER
    config: PrepareConfig = w["config"]
    tokenizer: BertTokenizer = w["tokenizer"]
    out_dir: Path = w["out_dir"]
    path = Path(task.path)
    shard_dir = out_dir / task.shard
    done = _shard_done(shard_dir, w["checksum"], path)
    if done is not None:
        done["reused"] = True
        return done
    counts = CorpusCounts()
    docs = read_corpus_file(path, counts=counts, split_sentences=w["split_sentences"])


    pool = DocumentPool()
    batch: list[Document] = []

    def encode(batch: list[Document]) -> None:
        flat = [s for doc in batch for s in doc.sentences]
        # The Rust backend directly, ids only: the wrapper's Encoding records (offsets, tokens, word
        # ids) would cost a third of the tokenizing time. encode_batch_fast skips offsets (>= 0.20).
        backend = tokenizer.backend
        fast = getattr(backend, "encode_batch_fast", backend.encode_batch)
        encs = fast(flat, add_special_tokens=False)
        k = 0
        for doc in batch:
            pool.add([encs[k + j].ids for j in range(len(doc.sentences))])
            k += len(doc.sentences)

    for doc in filter_documents((d for d in docs if not task.drops.drop(d, counts)), w["corpus_filter"],
                                decontamination=w["decontamination"], counts=counts):
        batch.append(doc)
        if len(batch) >= _DOCS_PER_ENCODE:
            encode(batch)
            batch = []
    if batch:
        encode(batch)
    pool.freeze()

    spec: MaskingSpec = w["spec"]
    buf = _ShardBuffer(config, _id_dtype(spec.vocab_size), tokenizer.pad_token_id)
    stats = {"random_next": 0, "random_next_forced": 0, "masked_tokens": 0, "tokens": 0}
    debt = NspDebt()  # one per file: carried across documents and dupe rounds
    for dupe in range(config.dupe_factor):
        rng = random.Random(derive_seed(config.seed, task.index, path.name, dupe))
        for d in range(len(pool)):
            for inst in create_instances_from_document(pool, d, config, spec, rng, debt):
                buf.append(inst)
                stats["random_next"] += inst.is_random_next
                stats["random_next_forced"] += inst.forced_random
                stats["masked_tokens"] += len(inst.masked_positions)
                stats["tokens"] += len(inst.input_ids)
    arrays = buf.final()

    tmp = out_dir / f".{task.shard}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    digests = {}
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        digests[f"{name}.npy"] = _sha256(tmp / f"{name}.npy")
    meta = {
        "shard": task.shard, "source": str(path), "source_size": path.stat().st_size,
        "config_checksum": w["checksum"], "num_samples": int(buf.n),
        "documents": len(pool), "sentences": pool.num_sentences, "source_tokens": int(len(pool.tokens)),
        "skipped_empty_sentences": pool.empty_sentences, "skipped_empty_documents": pool.empty_documents,
        "random_next": int(stats["random_next"]), "random_next_forced": int(stats["random_next_forced"]),
        "masked_tokens": int(stats["masked_tokens"]),
        "example_tokens": int(stats["tokens"]), "corpus_counts": counts.as_dict(), "sha256": digests,
    }
    (tmp / SHARD_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if shard_dir.exists():
        shutil.rmtree(shard_dir)  # a stale or corrupted earlier attempt
    os.replace(tmp, shard_dir)
    meta["reused"] = False
    return meta


def _map(fn: Any, items: Sequence[Any], workers: int, progress: bool) -> list[Any]:
    """``[fn(x) for x in items]`` (the first pass: deletions and duplicates), over ``workers`` processes."""
    from tqdm import tqdm

    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(items), unit="file", desc="first pass",
                                       disable=not progress))
        if workers > 1 and len(items) > 1:
            results = stack.enter_context(ctx.Pool(min(workers, len(items)))).imap(fn, items)
        else:
            results = map(fn, items)
        out = []
        for r in results:
            out.append(r)
            bar.update(1)
        return out


def _config_checksum(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def prepare_pretraining_data(corpus: Sequence[str | Path], vocab_dir: str | Path, out_dir: str | Path,
                             config: PrepareConfig = PrepareConfig(), *,
                             corpus_filter: CorpusFilter = CorpusFilter(),
                             decontaminate: str | Path | None = None, split_sentences: bool = False,
                             workers: int = 1, progress: bool = True) -> dict[str, Any]:
    """Write shards and ``manifest.json`` for ``corpus`` into ``out_dir``; returns the manifest.

    Work is spread over ``workers`` processes by input file; the bytes written do not depend on
    ``workers``. A finished ``out_dir`` with the same config checksum is left as it is; one made
    with other settings is refused (choose another ``out_dir``).
    """
    if workers < 1:
        raise ConfigError(f"workers {workers} must be at least 1")
    vocab_dir, out = Path(vocab_dir), Path(out_dir)
    tokenizer = BertTokenizer.from_pretrained(vocab_dir)
    files = list_corpus_files(corpus)
    decon = build_decontamination_set(decontaminate) if decontaminate is not None else None
    spec = MaskingSpec.from_tokenizer(tokenizer)
    vhash = vocab_hash(tokenizer)
    filter_dict = dataclasses.asdict(corpus_filter)
    payload = {
        "format_version": FORMAT_VERSION, "params": dataclasses.asdict(config),
        "corpus_filter": filter_dict, "split_sentences": split_sentences,
        "decontamination": None if decon is None else {"sources": decon.sources},
        "vocab_hash": vhash, "inputs": [{"name": f.name, "size": f.stat().st_size} for f in files],
        "dedup_scope": "corpus",  # duplicates are found across files (earlier versions: within one)
    }
    checksum = _config_checksum(payload)

    manifest_path = out / MANIFEST_NAME
    if manifest_path.is_file():
        existing = load_manifest(out)
        if existing.get("config_checksum") == checksum:
            log.info("%s is already complete (config checksum %s)", out, checksum[:12])
            return existing
        raise DataError(f"{out} already holds pretraining data made with other settings (config checksum "
                        f"{existing.get('config_checksum', '?')[:12]} != {checksum[:12]}): pass another --out "
                        "or delete that folder")
    # The first pass reads the inputs before anything is written (bad input leaves no folder).
    drops = corpus_drops(files, corpus_filter, lambda fn, items: _map(fn, items, workers, progress))
    tasks = [_FileTask(i, str(p), f"shard-{i:05d}", drops[i]) for i, p in enumerate(files)]
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp-*"):  # left by an interrupted run (one writer per folder at a time)
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()

    init_args = (str(vocab_dir), config, corpus_filter, decon, split_sentences, str(out), checksum,
                 workers > 1)
    results: dict[int, dict[str, Any]] = {}
    try:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), unit="file", desc="data prepare", disable=not progress)
        if workers == 1:
            _init_worker(*init_args[:-1], False)
            for t in tasks:
                results[t.index] = _process_file(t)
                bar.update(1)
        else:
            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ctx.Pool(min(workers, len(tasks)), initializer=_init_worker, initargs=init_args) as pool:
                # Largest files first, so that one big file does not finish last alone.
                order = sorted(tasks, key=lambda t: -Path(t.path).stat().st_size)
                for meta, t in zip(pool.imap(_process_file, order), order):
                    results[t.index] = meta
                    bar.update(1)
        bar.close()
    except BaseException as exc:
        for tmp in out.glob(".shard-*.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        if created and isinstance(exc, DomainBertError):
            # Bad input: a rerun cannot reuse anything, so leave no half-written output at all. An
            # interruption (Ctrl-C, a crash) keeps the finished shards for the rerun to reuse.
            shutil.rmtree(out, ignore_errors=True)
        raise

    metas = [results[t.index] for t in tasks]
    total = sum(m["num_samples"] for m in metas)
    if total == 0:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        kept = sum(m["documents"] for m in metas)
        raise DataError(f"the corpus gave no pretraining examples ({kept} documents kept after filtering; "
                        f"{', '.join(map(str, files[:3]))}{' ...' if len(files) > 3 else ''}): check the files "
                        "hold text (one sentence per line, blank line between documents) and lower --min-words")
    corpus_counts: dict[str, int] = {}
    for m in metas:
        for k, v in m["corpus_counts"].items():
            corpus_counts[k] = corpus_counts.get(k, 0) + v
    count_keys = ("documents", "sentences", "source_tokens", "skipped_empty_sentences",
                  "skipped_empty_documents", "random_next", "random_next_forced", "masked_tokens",
                  "example_tokens")
    counts = {k: sum(m[k] for m in metas) for k in count_keys}
    counts["pairs"] = total
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_by": "domainbert data prepare",
        "reference": "google-research/bert create_pretraining_data.py (per-file document pools)",
        "config_checksum": checksum,
        "params": dataclasses.asdict(config),
        "corpus_filter": filter_dict,
        "split_sentences": split_sentences,
        "decontamination": payload["decontamination"],
        "vocab": {"hash": vhash, "size": spec.vocab_size, "dir": str(vocab_dir),
                  "do_lower_case": tokenizer.do_lower_case, "pad_id": tokenizer.pad_token_id,
                  "cls_id": spec.cls_id, "sep_id": spec.sep_id, "mask_id": spec.mask_id},
        "id_dtype": _id_dtype(spec.vocab_size).name,
        "inputs": [{"path": str(f), "size": f.stat().st_size} for f in files],
        "counts": counts,
        "corpus_counts": corpus_counts,
        "num_samples": total,
        "shards": [{"name": m["shard"], "source": m["source"], "num_samples": m["num_samples"],
                    "sha256": m["sha256"]} for m in metas],
    }
    # The vocabulary travels with the data: examples decode, and dynamic whole-word masking finds the
    # ## pieces, without the original vocabulary directory.
    by_id = sorted(tokenizer.vocab.items(), key=lambda kv: kv[1])
    tmp_vocab = out / f".{VOCAB_COPY}.tmp-{os.getpid()}"
    tmp_vocab.write_text("".join(t + "\n" for t, _ in by_id), encoding="utf-8")
    os.replace(tmp_vocab, out / VOCAB_COPY)
    tmp = out / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path)
    _log_example(out, manifest, tokenizer)
    return manifest


def _log_example(out: Path, manifest: dict[str, Any], tokenizer: BertTokenizer) -> None:
    """Log the first sample decoded, masks shown (cramming's habit: look at what you train on)."""
    shard = next(s for s in manifest["shards"] if s["num_samples"])
    d = out / shard["name"]
    ids = np.load(d / "input_ids.npy", mmap_mode="r")[0]
    n = int(np.load(d / "lengths.npy", mmap_mode="r")[0])
    nsp = int(np.load(d / "next_sentence.npy", mmap_mode="r")[0])
    tokens = tokenizer.convert_ids_to_tokens(ids[:n].tolist())
    extra = ""
    if (d / "masked_positions.npy").is_file():
        k = int(np.load(d / "num_masked.npy", mmap_mode="r")[0])
        pos = np.load(d / "masked_positions.npy", mmap_mode="r")[0][:k].tolist()
        lab = tokenizer.convert_ids_to_tokens(np.load(d / "masked_labels.npy", mmap_mode="r")[0][:k].tolist())
        extra = " | masked: " + ", ".join(f"{p}={t}" for p, t in zip(pos, lab))
    log.info("example (%s, next_sentence_label=%d): %s%s", shard["name"], nsp, " ".join(tokens), extra)


# ==================================================================================== reader
def load_manifest(data_dir: str | Path) -> dict[str, Any]:
    """The manifest of a prepared directory, or a DataError that says how to make one."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{data_dir} has no {MANIFEST_NAME}: run `domainbert data prepare --out {data_dir} ...` "
                        "(an interrupted run leaves none; rerun it to finish)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): rerun `domainbert data prepare`") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path} has format version {manifest.get('format_version')}, this domainbert reads "
                        f"{FORMAT_VERSION}: rerun `domainbert data prepare`")
    return manifest


def check_manifest(manifest: dict[str, Any], *, max_seq_len: int | None = None,
                   max_predictions: int | None = None, vocab: BertTokenizer | str | Path | None = None,
                   vocab_size: int | None = None, max_position_embeddings: int | None = None,
                   type_vocab_size: int | None = None) -> None:
    """Refuse data that does not fit the model / training config; each problem says what to change.

    ``max_seq_len`` and ``max_predictions`` (training config) must equal the prepared values;
    ``vocab`` (a tokenizer or vocabulary directory) must hash the same; the model's ``vocab_size``
    must cover every id; ``max_position_embeddings`` must be at least the sequence length; and
    ``type_vocab_size`` at least 2 (token types 0 and 1).
    """
    p, v = manifest["params"], manifest["vocab"]
    problems = []
    if max_seq_len is not None and max_seq_len != p["max_seq_len"]:
        problems.append(f"the data has max_seq_len {p['max_seq_len']} but the training config says {max_seq_len}: "
                        f"set max_seq_len to {p['max_seq_len']}, or rerun `domainbert data prepare "
                        f"--max-seq-len {max_seq_len}`")
    if max_predictions is not None and max_predictions != p["max_predictions"]:
        problems.append(f"the data has max_predictions {p['max_predictions']} but the training config says "
                        f"{max_predictions}: set max_predictions to {p['max_predictions']}, or rerun "
                        f"`domainbert data prepare --max-predictions {max_predictions}`")
    if vocab is not None:
        tok = vocab if isinstance(vocab, BertTokenizer) else BertTokenizer.from_pretrained(vocab)
        h = vocab_hash(tok)
        if h != v["hash"]:
            problems.append(f"the data was tokenized with another vocabulary ({v['dir']}, hash {v['hash'][:12]}, "
                            f"{v['size']} ids) than the one given (hash {h[:12]}, {tok.vocab_size} ids): train "
                            f"with the vocabulary in {v['dir']}, or rerun `domainbert data prepare --vocab` with yours")
    if vocab_size is not None and vocab_size < v["size"]:
        problems.append(f"the model's vocab_size {vocab_size} is below the data's {v['size']} ids: set "
                        f"vocab_size to at least {v['size']} in the model config")
    if max_position_embeddings is not None and max_position_embeddings < p["max_seq_len"]:
        problems.append(f"the model's max_position_embeddings {max_position_embeddings} is below the data's "
                        f"max_seq_len {p['max_seq_len']}: raise max_position_embeddings or rerun "
                        f"`domainbert data prepare --max-seq-len {max_position_embeddings}`")
    if type_vocab_size is not None and type_vocab_size < 2:
        problems.append(f"the model's type_vocab_size {type_vocab_size} cannot hold token types 0 and 1 "
                        "(segments A and B): set type_vocab_size to 2")
    if problems:
        raise ConfigError("; ".join(problems))


class _Permutation:
    """A keyed pseudo-random permutation of ``range(n)`` in O(1) memory.

    A 4-round Feistel network on ``2h`` bits (``4**h >= n``) with cycle walking: values that land
    outside ``range(n)`` are encrypted again until they fall inside, which keeps it a bijection.
    ``np.random.permutation`` would need 8 bytes per sample (800 MB for 100M samples).
    """

    ROUNDS = 4

    def __init__(self, n: int, key: int) -> None:
        self.n = n
        self.half = max(1, math.ceil(math.log2(max(n, 2)) / 2))
        self.mask = np.uint64((1 << self.half) - 1)
        keys = np.random.default_rng(key % (2**63)).integers(0, 2**63, size=self.ROUNDS, dtype=np.uint64)
        self.keys = [np.uint64(k) for k in keys]

    def _round(self, x: np.ndarray, k: np.uint64) -> np.ndarray:
        # splitmix64-style mixing of (x + k); uint64 arithmetic wraps, as intended.
        z = x + k
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & self.mask

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        h = np.uint64(self.half)
        left, right = x >> h, x & self.mask
        for k in self.keys:
            left, right = right, left ^ self._round(right, k)
        return (left << h) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """The permuted index of each position (an int64 array in ``range(n)``)."""
        with np.errstate(over="ignore"):
            x = self._encrypt(positions.astype(np.uint64))
            outside = x >= np.uint64(self.n)
            while outside.any():
                x[outside] = self._encrypt(x[outside])
                outside = x >= np.uint64(self.n)
        return x.astype(np.int64)


class PretrainingDataset(IterableDataset):
    """Streams a prepared directory as model inputs, shuffled by seed and epoch, split by rank/worker.

    Each item is a dict of tensors (``batch_size=None``: one sample, shapes ``(L,)``; otherwise a
    batch, ``(B, L)``): ``input_ids``, ``token_type_ids``, ``attention_mask``, ``labels`` (the
    original id at masked positions, -100 elsewhere: what ``BertForPreTraining.forward(labels=...)``
    takes) and ``next_sentence_label`` (0 = B follows A, 1 = random).

    Order: epoch ``e`` visits the samples in the order of a permutation keyed by ``(seed, e)``.
    Position ``p`` of that order belongs to rank ``p % world_size``; the ``N % world_size`` last
    positions are dropped so that every rank gets the same count. Within a rank, DataLoader worker
    ``w`` of ``W`` takes the rank's batches ``w, w + W, ...`` (or samples, without ``batch_size``),
    so ``DataLoader(ds, batch_size=None, num_workers=W)`` yields the rank's stream in order.
    ``start_sample`` skips the first samples of the epoch (counted over all ranks: a resumed run
    passes ``step * global_batch_size``) so nothing is replayed.

    Memory: shards are memory-mapped; the permutation is computed, not stored.
    """

    def __init__(self, data_dir: str | Path, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 epoch: int = 0, start_sample: int = 0, shuffle: bool = True, batch_size: int | None = None,
                 drop_last: bool = False, max_seq_len: int | None = None, max_predictions: int | None = None,
                 vocab: BertTokenizer | str | Path | None = None, vocab_size: int | None = None,
                 with_index: bool = False) -> None:
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} / world_size {world_size}: need 0 <= rank < world_size")
        if start_sample < 0:
            raise ConfigError(f"start_sample {start_sample} must be >= 0")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size {batch_size} must be >= 1 (or None for single samples)")
        self.dir = Path(data_dir)
        self.manifest = load_manifest(self.dir)
        check_manifest(self.manifest, max_seq_len=max_seq_len, max_predictions=max_predictions,
                       vocab=vocab, vocab_size=vocab_size)
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, epoch
        self.start_sample, self.shuffle, self.batch_size, self.drop_last = start_sample, shuffle, batch_size, drop_last
        self.params = self.manifest["params"]
        self.dynamic = bool(self.params["dynamic_masking"])
        missing = [s["name"] for s in self.manifest["shards"] if not (self.dir / s["name"] / SHARD_META).is_file()]
        if missing:
            raise DataError(f"{self.dir}: shard(s) {', '.join(missing[:3])} listed in the manifest are missing: "
                            "rerun `domainbert data prepare` with the same arguments")
        counts = [s["num_samples"] for s in self.manifest["shards"]]
        self.num_samples = int(sum(counts))
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (shards + 1,)
        self._arrays: list[dict[str, np.ndarray]] | None = None
        self._spec: MaskingSpec | None = None
        self.with_index = with_index
        """Also yield ``index`` (the sample's position over all shards), for tests and debugging."""

    def set_epoch(self, epoch: int, start_sample: int = 0) -> None:
        """Move to ``epoch`` (new order, new dynamic masks), starting at ``start_sample``."""
        self.epoch, self.start_sample = epoch, start_sample

    # ---------------------------------------------------------------- which samples are ours
    @property
    def samples_per_rank(self) -> int:
        return self.num_samples // self.world_size

    def _rank_start(self) -> int:
        """The first rank-local index not yet consumed."""
        return min(self.samples_per_rank, max(0, -(-(self.start_sample - self.rank) // self.world_size)))

    def __len__(self) -> int:
        """Items this rank yields (samples, or batches with ``batch_size``)."""
        n = self.samples_per_rank - self._rank_start()
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def global_indices(self, local: np.ndarray) -> np.ndarray:
        """Rank-local positions -> sample indices over all shards (the epoch's shuffled order)."""
        positions = local.astype(np.int64) * self.world_size + self.rank
        if not self.shuffle:
            return positions
        return _Permutation(self.num_samples, derive_seed("order", self.seed, self.epoch))(positions)

    def _worker_blocks(self) -> list[np.ndarray]:
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        start, end = self._rank_start(), self.samples_per_rank
        if self.batch_size is None:
            return [np.arange(start + wid, end, nw, dtype=np.int64)]
        blocks = []
        for b, s in enumerate(range(start, end, self.batch_size)):
            e = min(s + self.batch_size, end)
            if self.drop_last and e - s < self.batch_size:
                break
            if b % nw == wid:
                blocks.append(np.arange(s, e, dtype=np.int64))
        return blocks

    # ---------------------------------------------------------------- reading
    def _open(self) -> list[dict[str, np.ndarray]]:
        if self._arrays is None:
            arrays = []
            for s in self.manifest["shards"]:
                d = self.dir / s["name"]
                names = ["input_ids", "lengths", "b_start", "next_sentence"]
                if not self.dynamic:
                    names += ["masked_positions", "masked_labels", "num_masked"]
                arrays.append({n: np.load(d / f"{n}.npy", mmap_mode="r") for n in names})
            self._arrays = arrays
        return self._arrays

    def _masking_spec(self) -> MaskingSpec:
        if self._spec is None:
            v = self.manifest["vocab"]
            cont = np.zeros(v["size"], dtype=bool)
            if self.params["whole_word_mask"]:
                path = self.dir / VOCAB_COPY
                if not path.is_file():
                    raise DataError(f"{path} is missing: whole-word dynamic masking needs the vocabulary copy "
                                    "that `domainbert data prepare` writes; rerun it")
                for i, token in enumerate(path.read_text(encoding="utf-8").split("\n")[:v["size"]]):
                    cont[i] = token.startswith("##")
            self._spec = MaskingSpec(int(v["cls_id"]), int(v["sep_id"]), int(v["mask_id"]), int(v["size"]), cont)
        return self._spec

    def sample(self, index: int, epoch: int | None = None) -> dict[str, np.ndarray]:
        """Sample ``index`` (over all shards, unshuffled) as numpy arrays of length L.

        ``epoch`` (default: the dataset's) only matters for dynamically masked data.
        """
        epoch = self.epoch if epoch is None else epoch
        arrays = self._open()
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        row = index - int(self._offsets[k])
        a = arrays[k]
        L = self.params["max_seq_len"]
        n, b = int(a["lengths"][row]), int(a["b_start"][row])
        ids = np.asarray(a["input_ids"][row], dtype=np.int64)  # (L,)
        labels = np.full(L, IGNORE_INDEX, dtype=np.int64)  # (L,)
        if self.dynamic:
            # A new mask per (epoch, sample), the same whichever rank or worker draws it.
            rng = random.Random(derive_seed("mask", self.params["seed"], self.seed, epoch, index))
            out, pos, lab = create_masked_lm_predictions(
                ids[:n].tolist(), self.params["masked_lm_prob"], self.params["max_predictions"],
                self._masking_spec(), rng, self.params["whole_word_mask"])
            ids[:n] = out
            labels[pos] = lab
        else:
            m = int(a["num_masked"][row])
            labels[np.asarray(a["masked_positions"][row][:m], dtype=np.int64)] = a["masked_labels"][row][:m]
        types = np.zeros(L, dtype=np.int64)
        types[b:n] = 1
        mask = np.zeros(L, dtype=np.int64)
        mask[:n] = 1
        out = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels,
               "next_sentence_label": np.int64(a["next_sentence"][row])}
        if self.with_index:
            out["index"] = np.int64(index)
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for block in self._worker_blocks():
            indices = self.global_indices(block)
            if self.batch_size is None:
                for i in indices.tolist():
                    yield {k: torch.as_tensor(v) for k, v in self.sample(i).items()}
            else:
                yield collate_pretraining([self.sample(i) for i in indices.tolist()])


    def micro_batches(self, global_batch_size: int, micro_batch_size: int, start_sample: int,
                      rank: int, world_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """``domainbert.pretrain.BatchSource``: endless micro-batches for ``rank``, in the trainer's order.

        The global sequence is epoch 0's shuffled order, then epoch 1's, and so on (no sample dropped);
        optimizer step ``s`` takes positions ``[s*G, (s+1)*G)`` of it, rank ``r`` the ``r``-th of
        ``world_size`` equal contiguous slices, cut into micro-batches in order. ``start_sample``
        (a multiple of G when resuming) skips what was consumed. This ignores the ``rank``,
        ``world_size``, ``epoch`` and ``start_sample`` given to the constructor.
        """
        if global_batch_size % (micro_batch_size * world_size):
            raise ConfigError(f"global batch {global_batch_size} is not a multiple of micro batch "
                              f"{micro_batch_size} x world size {world_size}")
        n = self.num_samples
        per_rank = global_batch_size // world_size
        perms: dict[int, _Permutation] = {}
        step_start = start_sample - start_sample % global_batch_size
        skip = start_sample - step_start  # a start inside a step: only the rest of its samples
        while True:
            lo = step_start + rank * per_rank
            for m in range(lo, lo + per_rank, micro_batch_size):
                positions = np.arange(m, m + micro_batch_size, dtype=np.int64)
                positions = positions[positions >= step_start + skip]
                if not len(positions):
                    continue
                epochs = positions // n
                samples = []
                for e in np.unique(epochs).tolist():
                    if self.shuffle and e not in perms:
                        perms = {e: _Permutation(n, derive_seed("order", self.seed, e))}
                    pos = positions[epochs == e] - e * n
                    idx = perms[e](pos) if self.shuffle else pos
                    samples += [self.sample(i, epoch=e) for i in idx.tolist()]
                yield collate_pretraining(samples)
            step_start += global_batch_size
            skip = 0


def collate_pretraining(samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack samples (numpy arrays or tensors) into a batch: ``(B, L)`` tensors and ``(B,)`` NSP labels."""
    return {k: torch.as_tensor(np.stack([np.asarray(s[k]) for s in samples])) for k in samples[0]}


# ==================================================================================== command
def configure_prepare(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``domainbert data prepare``."""
    d = PrepareConfig()
    f = CorpusFilter()
    parser.add_argument("--corpus", type=Path, nargs="+", required=True, metavar="FILE_OR_DIR",
                        help="text (BERT format), MEDLINE XML (.xml/.xml.gz) or PubTator files, or folders")
    parser.add_argument("--vocab", type=Path, required=True, help="vocabulary directory (holds vocab.txt)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (shards + manifest.json)")
    parser.add_argument("--max-seq-len", type=int, default=d.max_seq_len, help="tokens per example")
    parser.add_argument("--max-predictions", type=int, default=d.max_predictions, help="masked positions cap")
    parser.add_argument("--masked-lm-prob", type=float, default=d.masked_lm_prob, help="share of tokens masked")
    parser.add_argument("--short-seq-prob", type=float, default=d.short_seq_prob,
                        help="probability of a shorter random target length")
    parser.add_argument("--dupe-factor", type=int, default=d.dupe_factor,
                        help="rounds over the corpus with new pairs and masks (the reference's flag: 10)")
    parser.add_argument("--whole-word-mask", action="store_true", help="mask all pieces of a word together")
    parser.add_argument("--dynamic-masking", action="store_true",
                        help="store unmasked pairs; the reader masks anew each epoch")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed")
    parser.add_argument("--nsp-balance", action="store_true",
                        help="50%% actual-next pairs overall (the reference gives ~40%% on abstracts: it always "
                             "draws a random B for one-sentence chunks)")
    parser.add_argument("--workers", type=int, default=1, help="processes (work is split by input file)")
    parser.add_argument("--min-words", type=int, default=f.min_words,
                        help="drop documents with fewer words (PubMedBERT: 128; 0 keeps all)")
    parser.add_argument("--no-dedup-pmid", action="store_true", help="keep documents with a repeated PMID")
    parser.add_argument("--no-dedup-text", action="store_true", help="keep documents with repeated text")
    parser.add_argument("--languages", nargs="+", default=None, metavar="CODE",
                        help="MEDLINE language codes to keep, e.g. eng (default: all)")
    parser.add_argument("--decontaminate", type=Path, default=None, metavar="DATA_DIR",
                        help="drop documents sharing a PMID or sentence with the BLURB test files under DATA_DIR")
    parser.add_argument("--split-sentences", action="store_true",
                        help="text lines are paragraphs: split them into sentences")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_prepare(args: argparse.Namespace) -> int:
    try:
        config = PrepareConfig(args.max_seq_len, args.max_predictions, args.masked_lm_prob, args.short_seq_prob,
                               args.dupe_factor, args.whole_word_mask, args.dynamic_masking, args.seed,
                               args.nsp_balance)
        corpus_filter = CorpusFilter(min_words=args.min_words, dedup_pmid=not args.no_dedup_pmid,
                                     dedup_text=not args.no_dedup_text,
                                     languages=tuple(args.languages) if args.languages else None)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    manifest = prepare_pretraining_data(args.corpus, args.vocab, args.out, config, corpus_filter=corpus_filter,
                                        decontaminate=args.decontaminate, split_sentences=args.split_sentences,
                                        workers=args.workers, progress=not args.quiet)
    c = manifest["counts"]
    print(f"wrote {args.out}: {manifest['num_samples']:,} examples in {len(manifest['shards'])} shard(s) from "
          f"{c['documents']:,} documents / {c['sentences']:,} sentences "
          f"(random next {c['random_next'] / max(1, c['pairs']):.1%}; config {manifest['config_checksum'][:12]})")
    return 0

