"""Documents -> BERT pretraining examples: NSP segment pairs and masked-LM predictions, on token ids.

The recipe of the examples stage and nothing else (no files, no processes). It reproduces
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

Every function takes an explicit ``random.Random``; the call order on it is the reference's, so
the same generator gives the same instances (tests/test_pretraining_data.py checks this against an
independent transcription of the reference on a hand-built document set).

**The one deliberate departure**: the reference reads all input files into one list, shuffles it,
and draws random-next documents from the whole corpus. Here the documents of one unit of input files
form a :class:`DocumentPool` and random-next B comes from another document of the same unit, which
keeps memory flat and lets units run in parallel with output independent of the number of processes:
:mod:`domainbert.data.shards` makes the units (one file of at least 256 KiB, a PubMed baseline file
of about 30,000 abstracts, is a unit of its own; smaller files are grouped until they reach that
size, so that a corpus of one abstract per file still draws B from hundreds of other documents),
runs them and writes what this module makes. On a corpus of one file it is the reference.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from domainbert.data.tokenization import BertTokenizer
from domainbert.errors import ConfigError

__all__ = [
    "max_predictions_for",
    "PrepareConfig", "TrainingInstance", "DocumentPool", "MaskingSpec", "NspDebt", "derive_seed",
    "truncate_seq_pair", "create_masked_lm_predictions", "create_instances_from_document",
    "create_packed_instances", "OBJECTIVES",
]

MIN_SEQ_LEN = 8
OBJECTIVES = ("mlm+nsp", "mlm")
"""BERT's masked LM + next sentence prediction, and masked LM alone (RoBERTa, MosaicBERT, ModernBERT)."""


def max_predictions_for(masked_lm_prob: float, max_seq_len: int) -> int:
    """The masked positions an example keeps room for at a masking rate: 5% above the expected
    count, as BERT's 20 for 0.15 x 128 (google-research/bert's ``max_predictions_per_seq``)."""
    return max(1, round(masked_lm_prob * max_seq_len * 1.05))


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
    objective: str = "mlm+nsp"
    """``mlm+nsp``: BERT's segment pairs (:func:`create_instances_from_document`); ``mlm``: RoBERTa's
    FULL-SENTENCES packing for masked LM alone (:func:`create_packed_instances`)."""
    nsp_balance: bool = False
    """Keep NSP at 50 % actual-next overall. The reference always draws a random B for a chunk of one
    sentence, so on abstracts ~40 % of its pairs are actual-next. With this on, every two such forced
    random pairs are evened out by turning the next coin-flipped random pair into an actual-next one
    (the coin is still drawn, so the random stream is unchanged until then). Off: the reference."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_seq_len < MIN_SEQ_LEN:
            problems.append(f"max_seq_len {self.max_seq_len} is below {MIN_SEQ_LEN}: an input needs room for "
                            "[CLS], [SEP] and its sentences (two segments for BERT's pairs); use --max-seq-len 128 "
                            f"(or at least {MIN_SEQ_LEN})")
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
        if self.objective not in OBJECTIVES:
            problems.append(f"objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}")
        pair_only = [f.name for f in fields(self) if f.name in ("short_seq_prob", "nsp_balance")
                     and getattr(self, f.name) != f.default]
        if self.objective == "mlm" and pair_only:
            problems.append(f"{' and '.join(pair_only)} shape BERT's sentence pairs, which --objective mlm does not "
                            "make (it packs whole sentences up to max_seq_len): leave them at their defaults")
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
    other_document: bool = False
    """A random-next B that came from another document (the reference's ten draws can all fall on the
    document itself when the pool holds few): counted as ``random_next_other_document``."""


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
                other_document = False
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
                    other_document = random_document_index != document_index
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
                instance = TrainingInstance(tokens, len(tokens_a) + 2, is_random_next, forced_random=forced,
                                            other_document=other_document)
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


def create_packed_instances(pool: DocumentPool, config: PrepareConfig, spec: MaskingSpec,
                            rng: random.Random) -> Iterator[TrainingInstance]:
    """RoBERTa's FULL-SENTENCES inputs for masked LM alone: whole sentences taken in order, across
    document boundaries, packed into ``[CLS] ... [SEP]`` of at most ``max_seq_len`` tokens, a ``[SEP]``
    between two documents that share an input; masks too unless ``config.dynamic_masking``. Yielded one
    at a time, as the shard buffer takes them (a round of a large unit is never held whole).

    The documents are taken in an order ``rng`` shuffles (each dupe round packs them differently). A
    sentence that does not fit in what is left of an input starts the next one; a sentence longer than
    a whole input is cut into pieces: each but the last fills an input, and the next sentences follow the
    last piece. Every input is one segment (token type 0).
    """
    budget = config.max_seq_len - 2  # room for [CLS] and the closing [SEP]
    order = list(range(len(pool)))
    _shuffle(order, rng)
    current: list[int] = []
    for d in order:
        for k, sentence in enumerate(pool.document(d)):
            # The separator that ends the previous document goes in only with a sentence after it.
            piece = [spec.sep_id, *sentence] if k == 0 and current else sentence
            if len(piece) > budget - len(current):  # it starts the next input (a long one fills several)
                if current:
                    yield _packed_instance(current, config, spec, rng)
                    current = []
                piece = sentence
            while piece:
                room = budget - len(current)
                current.extend(piece[:room])
                piece = piece[room:]
                if piece:
                    yield _packed_instance(current, config, spec, rng)
                    current = []
    if current:
        yield _packed_instance(current, config, spec, rng)


def _packed_instance(body: list[int], config: PrepareConfig, spec: MaskingSpec,
                     rng: random.Random) -> TrainingInstance:
    """``[CLS] body [SEP]`` as one segment, masked unless the masks are drawn when read."""
    tokens = [spec.cls_id, *body, spec.sep_id]
    instance = TrainingInstance(tokens, len(tokens), False)
    if not config.dynamic_masking:
        instance.input_ids, instance.masked_positions, instance.masked_labels = create_masked_lm_predictions(
            tokens, config.masked_lm_prob, config.max_predictions, spec, rng, config.whole_word_mask)
    return instance
