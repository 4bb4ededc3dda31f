"""Using trained models: fill-mask, NER, sequence classification and embeddings (the Python API).

Four predictors, each loaded from a model directory (domainbert or Hugging Face BERT) and called on
a list of texts:

=================  ==============================  ===============================================
predictor          head it needs                   result per text
=================  ==============================  ===============================================
:class:`FillMask`  masked-LM (``cls.predictions``) for each ``[MASK]``: its character span and
                   from pretraining / export       the top-k tokens with softmax scores (the
                                                   numbers transformers' ``fill-mask`` pipeline
                                                   gives)
:class:`Tagger`    token classification            entities: character ``start``/``end``, label,
                   (``domainbert finetune``, NER)  text and score, BIO tags decoded to spans; text
                                                   longer than the model reads is split into
                                                   overlapping windows (never truncated)
:class:`Classifier` sequence classification        single label (softmax), multi-label (sigmoid,
                                                   > 0.5) or regression, per ``problem_type``
:class:`Embedder`  any BERT encoder                mean-pooled (padding excluded) or [CLS] vectors,
                                                   optionally L2-normalised
=================  ==============================  ===============================================

Each predictor sorts its inputs by length, runs batches padded only to their longest member
(dynamic padding), under bf16 autocast where the hardware computes bf16 natively
(:mod:`domainbert.train.precision`), and returns results in the input order. A checkpoint that lacks the
head a predictor needs is refused with a one-line :class:`~domainbert.errors.CheckpointError`
(weights a head would otherwise get at random are never used silently); bad input is an
:class:`InputError` that names the text and the fix.

NER reads text as ``domainbert finetune`` read its training words: the text is cut into words as the
training corpus was cut (the :class:`~domainbert.blurb.words.WordCutter` recorded in the model's
``config.json``; BERT's cut, whitespace and every punctuation mark, when none is recorded), and the
words become windows of sub-tokens by the function fine-tuning and evaluation use
(:func:`domainbert.blurb.featurize.window_words`): the first sub-token of each word carries its tag,
and each word is scored by the window where it has most context. Tags are
decoded leniently, as conlleval does: ``B-X`` starts an entity, ``I-X`` continues one of type X or
starts one after anything else; untyped ``B``/``I`` (JNLPBA) give the label ``ENTITY``; IO schemes
(EBM-PICO's ``I-PAR``) work the same way. An entity's score is the mean probability of its words'
tags.

The commands ``fill-mask``, ``ner``, ``classify`` and ``embed`` are :mod:`domainbert.serve.commands`;
the HTTP service is :mod:`domainbert.serve.app`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken

from domainbert.blurb.featurize import window_words
from domainbert.blurb.task import recorded_length
from domainbert.blurb.words import CONFIG_KEY, WordCutter
from domainbert.data.tokenization import SPECIAL_TOKENS, BertTokenizer
from domainbert.errors import CheckpointError, DataError
from domainbert.model import modeling
from domainbert.model.configuration import BertConfig
from domainbert.train.precision import autocast, resolve_precision

logger = logging.getLogger("domainbert")

MASK = "[MASK]"
POOLINGS = ("mean", "cls")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


class InputError(DataError, ValueError):
    """A text a predictor cannot take (no [MASK] for fill-mask, too long to hold its mask ...)."""


# ==================================================================================== loading
@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Silence the loader's warning: each predictor checks ``loading_info`` and says what matters."""
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _load(cls_name: str, model_dir: str | Path, what: str, needed_prefixes: tuple[str, ...],
          fix: str) -> Any:
    """Load ``cls_name`` from ``model_dir``; refuse it when weights under ``needed_prefixes`` are missing."""
    model_dir = Path(model_dir)
    heads = ("BertForTokenClassification", "BertForSequenceClassification")
    if cls_name in heads:
        saved = (BertConfig.load(model_dir).extra.get("architectures") or ["BertModel"])[0]
        if saved != cls_name:
            # Both heads are one Linear named ``classifier``: only the config tells them apart.
            raise CheckpointError(f"{model_dir} is a {saved} checkpoint, not {cls_name}: it has no {what}; {fix}")
    with _quiet_loading():
        model = getattr(modeling, cls_name).from_pretrained(model_dir)
    missing = [n for n in model.loading_info.missing if n.startswith(needed_prefixes)]
    mismatched = [n for n in model.loading_info.mismatched if n.startswith(needed_prefixes)]
    if missing or mismatched:
        names = missing + mismatched
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise CheckpointError(f"{model_dir} has no {what} weights ({shown} missing): {what} would "
                              f"use random weights; {fix}")
    return model


def _load_tokenizer(model_dir: str | Path) -> Any:
    """The model's tokenizer, with BERT's special tokens matched whole in raw text.

    A tokenizer read from a bare ``vocab.txt`` would split the text ``[MASK]`` into ``[``, ``mask``,
    ``]``; declaring the special tokens (same ids) makes it one token, as transformers does.
    """
    tokenizer = BertTokenizer.from_pretrained(model_dir)
    tokenizer.backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS.values()])
    return tokenizer


@dataclass
class _Batch:
    """Padded model inputs of one length-sorted batch and the inputs' original indices."""

    indices: list[int]
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    token_type_ids: torch.Tensor  # (B, T)


class Predictor:
    """What every predictor shares: model, tokenizer, device, precision, length-grouped batching."""

    def __init__(self, model: Any, tokenizer: Any, model_dir: Path, *, device: str | torch.device | None,
                 precision: str, batch_size: int) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else _default_device()
        self.precision = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.max_length = min(model.config.max_position_embeddings, tokenizer.model_max_length)
        if tokenizer.vocab_size > model.config.vocab_size:
            raise CheckpointError(f"{model_dir}: the tokenizer has {tokenizer.vocab_size} tokens but the "
                                  f"model only {model.config.vocab_size} embeddings; use the model's own vocab.txt")
        # One forward pass at a time: the Rust tokenizer's truncation setting is shared state, and
        # concurrent passes on one CPU only oversubscribe its cores (the server calls from threads).
        self.lock = threading.Lock()

    def _batches(self, rows: Sequence[tuple[list[int], list[int]]]) -> Iterator[_Batch]:
        """Rows (ids, token types) sorted by length, cut into batches padded to their longest row."""
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
        pad = self.tokenizer.pad_token_id
        for at in range(0, len(order), self.batch_size):
            chunk = order[at:at + self.batch_size]
            width = max(len(rows[i][0]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            types = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, i in enumerate(chunk):
                n = len(rows[i][0])
                ids[r, :n] = torch.tensor(rows[i][0])
                types[r, :n] = torch.tensor(rows[i][1])
                mask[r, :n] = 1
            yield _Batch(chunk, ids.to(self.device), mask.to(self.device), types.to(self.device))

    def _forward(self, batch: _Batch) -> Any:
        with torch.inference_mode(), autocast(self.precision, self.device):
            return self.model(batch.input_ids, batch.attention_mask, batch.token_type_ids)


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise InputError("pass a list of texts, not one string: wrap it as [text]")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"text {i} is a {type(text).__name__}, not a string")


# ==================================================================================== fill-mask
class FillMask(Predictor):
    """Top-k tokens for every ``[MASK]`` of a text, from a checkpoint with its masked-LM head."""

    def __init__(self, model_dir: str | Path, *, device: str | torch.device | None = None,
                 precision: str = "auto", batch_size: int = 32, top_k: int = 5) -> None:
        model = _load("BertForMaskedLM", model_dir, "masked-LM head", ("cls.predictions",),
                      "fill-mask needs a checkpoint saved with its pretraining heads (BertForPreTraining "
                      "or BertForMaskedLM, e.g. from `domainbert export`), not a bare encoder or a "
                      "fine-tuned task model")
        super().__init__(model, _load_tokenizer(model_dir), Path(model_dir), device=device,
                         precision=precision, batch_size=batch_size)
        self.top_k = top_k

    def __call__(self, texts: Sequence[str], top_k: int | None = None) -> list[dict[str, Any]]:
        """For each text: ``{"masks": [{"start", "end", "predictions": [{"token", "token_id", "score"}]}]}``.

        ``start``/``end`` are the character span of the ``[MASK]`` in the text; predictions are sorted
        by score (softmax over the whole vocabulary, as transformers' fill-mask pipeline).
        """
        _check_texts(texts)
        k = self.top_k if top_k is None else top_k
        if not 1 <= k <= self.model.config.vocab_size:
            raise InputError(f"top_k must be between 1 and the vocabulary size {self.model.config.vocab_size}, got {k}")
        mask_id = self.tokenizer.mask_token_id
        with self.lock:
            encodings = self.tokenizer.encode_batch(list(texts))
            for i, enc in enumerate(encodings):
                if mask_id not in enc.input_ids:
                    raise InputError(f"text {i} has no {MASK}: write {MASK} where the word to predict goes")
                if len(enc.input_ids) > self.max_length:
                    raise InputError(f"text {i} is {len(enc.input_ids)} tokens long but the model reads at most "
                                     f"{self.max_length}: shorten it around its {MASK}")
            results: list[dict[str, Any]] = [{} for _ in texts]
            for batch in self._batches([(e.input_ids, e.token_type_ids) for e in encodings]):
                logits = self._forward(batch).logits  # (B, T, V)
                where = batch.input_ids == mask_id  # (B, T)
                probs = torch.softmax(logits[where].float(), dim=-1)  # (M, V), rows in row-major order
                scores, ids = probs.topk(k, dim=-1)  # (M, k)
                scores, ids = scores.cpu().tolist(), ids.cpu().tolist()
                rows = where.nonzero().cpu().tolist()  # (M, 2): [batch row, position]
                for (r, pos), top_scores, top_ids in zip(rows, scores, ids):
                    enc = encodings[batch.indices[r]]
                    start, end = enc.offsets[pos]
                    tokens = self.tokenizer.convert_ids_to_tokens(top_ids)
                    results[batch.indices[r]].setdefault("masks", []).append({
                        "start": start, "end": end,
                        "predictions": [{"token": t, "token_id": i, "score": s}
                                        for t, i, s in zip(tokens, top_ids, top_scores)]})
        return results


# ==================================================================================== NER
def _tag_type(tag: str) -> tuple[str, str]:
    """``B-Disease`` → ("B", "Disease"); ``I`` → ("I", "ENTITY"); ``O`` → ("O", "")."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if sep and prefix in ("B", "I", "E", "S"):
        return prefix, kind or "ENTITY"
    if tag in ("B", "I", "E", "S"):
        return tag, "ENTITY"
    return "I", tag  # a plain class name (IO scheme without prefixes)


def decode_bio(tags: Sequence[str], scores: Sequence[float] | None = None) -> list[tuple[int, int, str, float]]:
    """Entity spans ``(first word, last word + 1, label, mean score)`` from per-word BIO/IOBES tags.

    Lenient as conlleval: ``I-X`` after ``O`` or after another type starts an entity; ``B-X`` always
    starts one; ``S-X`` is a one-word entity and ``E-X`` ends one.
    """
    spans: list[tuple[int, int, str, float]] = []
    scores = list(scores) if scores is not None else [1.0] * len(tags)
    start, kind = -1, ""

    def close(end: int) -> None:
        nonlocal start, kind
        if start >= 0:
            spans.append((start, end, kind, sum(scores[start:end]) / (end - start)))
        start, kind = -1, ""

    for i, tag in enumerate(tags):
        prefix, label = _tag_type(tag)
        if prefix == "O":
            close(i)
        elif prefix in ("B", "S") or label != kind or start < 0:
            close(i)
            start, kind = i, label
        if prefix in ("S", "E") and start >= 0:
            close(i + 1)
    close(len(tags))
    return spans


class Tagger(Predictor):
    """Named entities in raw text, from a token-classification model (``domainbert finetune`` NER)."""

    def __init__(self, model_dir: str | Path, *, device: str | torch.device | None = None,
                 precision: str = "auto", batch_size: int = 32, max_length: int | None = None) -> None:
        model = _load("BertForTokenClassification", model_dir, "token-classification head", ("classifier.",),
                      "pass a model fine-tuned for NER, e.g. `domainbert finetune --task ncbi-disease` "
                      "writes one to OUT/model")
        if not model.config.id2label:
            raise CheckpointError(f"{Path(model_dir) / 'config.json'} names no labels (id2label): a NER model "
                                  "needs its tag names; fine-tune it with `domainbert finetune`")
        super().__init__(model, _load_tokenizer(model_dir), Path(model_dir), device=device,
                         precision=precision, batch_size=batch_size)
        trained = recorded_length(model.config)  # the window length fine-tuning read words in
        if max_length is None and trained is not None and trained < self.max_length:
            max_length = trained
        if max_length is not None:
            if not 3 <= max_length <= self.max_length:
                raise InputError(f"max_length must be between 3 and the model's {self.max_length}, got {max_length}")
            self.max_length = max_length
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        try:
            self.cutter = WordCutter.from_config(model.config.extra.get(CONFIG_KEY), f"{model_dir}/config.json")
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None

    def __call__(self, texts: Sequence[str]) -> list[list[dict[str, Any]]]:
        """For each text, its entities: ``{"start", "end", "label", "text", "score"}`` in text order."""
        return [self.entities(text, cut, tags) for text, (cut, tags) in zip(texts, self.tag_texts(texts))]

    def tag_texts(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]] | None] | None = None,
                  ) -> list[tuple[list[tuple[int, int]], list[tuple[str, float]]]]:
        """For each text, its words' character spans and their tags with probabilities. The words are
        the model's cut of the text, or the ``spans`` given for a text (words the input already cut)."""
        _check_texts(texts)
        cuts = [list(given) if given is not None else self.cutter.spans(text)
                for text, given in zip(texts, spans or [None] * len(texts))]
        tags = self.tag_words([[text[start:end] for start, end in cut] for text, cut in zip(texts, cuts)])
        return list(zip(cuts, tags))

    @staticmethod
    def entities(text: str, spans: Sequence[tuple[int, int]],
                 tags: Sequence[tuple[str, float]]) -> list[dict[str, Any]]:
        """The entities that words at character ``spans`` of ``text`` with ``tags`` (and probabilities) make."""
        entities = []
        for first, last, label, score in decode_bio([tag for tag, _ in tags], [p for _, p in tags]):
            start, end = spans[first][0], spans[last - 1][1]
            entities.append({"start": start, "end": end, "label": label, "text": text[start:end], "score": score})
        return entities

    def tag_words(self, sentences: Sequence[Sequence[str]]) -> list[list[tuple[str, float]]]:
        """For each sentence given as words, each word's tag and its probability.

        The words are read exactly as fine-tuning and evaluation read a corpus' words
        (:func:`domainbert.blurb.featurize.window_words`).
        """
        with self.lock:
            features = window_words(self.tokenizer, sentences, self.max_length)
            tags: list[list[tuple[str, float]]] = [[("", -1.0)] * len(words) for words in sentences]
            for batch in self._batches([(f.input_ids, f.token_type_ids) for f in features]):
                probs = torch.softmax(self._forward(batch).logits.float(), dim=-1)  # (B, T, L)
                best_p, best = (t.cpu().tolist() for t in probs.max(dim=-1))  # (B, T)
                for r, row in enumerate(batch.indices):
                    f = features[row]
                    for pos, word in enumerate(f.word_index):
                        if word >= 0:
                            tags[f.example][word] = (self.labels[best[r][pos]], best_p[r][pos])
        assert all(p >= 0 for sentence in tags for _, p in sentence), "every word is scored by exactly one window"
        return tags


# ==================================================================================== classification
class Classifier(Predictor):
    """Labels (or a value) for a text or text pair, from a sequence-classification model."""

    def __init__(self, model_dir: str | Path, *, device: str | torch.device | None = None,
                 precision: str = "auto", batch_size: int = 32, threshold: float = 0.5) -> None:
        model = _load("BertForSequenceClassification", model_dir, "sequence-classification head",
                      ("classifier.", "bert.pooler."), "pass a model fine-tuned for classification, e.g. "
                      "`domainbert finetune --task hoc` (or chemprot, biosses, pubmedqa) writes one to OUT/model")
        super().__init__(model, _load_tokenizer(model_dir), Path(model_dir), device=device,
                         precision=precision, batch_size=batch_size)
        config = model.config
        self.labels = ([config.id2label[i] for i in range(config.num_labels)] if config.id2label
                       else [f"LABEL_{i}" for i in range(config.num_labels)])
        self.problem_type = config.problem_type or (
            "regression" if config.num_labels == 1 else "single_label_classification")
        self.threshold = threshold

    def __call__(self, texts: Sequence[str], text_pairs: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
        """One result per text (texts longer than the model reads are truncated, the longer side first).

        * single label: ``{"label", "score", "scores": {label: softmax probability}}``;
        * multi-label: ``{"labels": [labels whose sigmoid > threshold], "scores": {label: sigmoid}}``;
        * regression: ``{"value": float}`` (``{"values": {label: float}}`` with several outputs).
        """
        _check_texts(texts)
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise InputError(f"{len(texts)} texts but {len(text_pairs)} text pairs: give one pair (or null) per text")
        with self.lock:
            if text_pairs is None or all(p is None for p in text_pairs):
                encodings = self.tokenizer.encode_batch(list(texts), max_length=self.max_length)
            else:  # texts without a pair are encoded alone, in the same order
                encodings = [self.tokenizer.encode(t, p, max_length=self.max_length)
                             for t, p in zip(texts, text_pairs)]
            results: list[dict[str, Any]] = [{} for _ in texts]
            for batch in self._batches([(e.input_ids, e.token_type_ids) for e in encodings]):
                logits = self._forward(batch).logits.float().cpu()  # (B, num_labels)
                for r, i in enumerate(batch.indices):
                    results[i] = self._result(logits[r])
        return results

    def _result(self, logits: torch.Tensor) -> dict[str, Any]:
        if self.problem_type == "regression":
            values = logits.tolist()
            return {"value": values[0]} if len(values) == 1 else {"values": dict(zip(self.labels, values))}
        if self.problem_type == "multi_label_classification":
            probs = torch.sigmoid(logits).tolist()
            return {"labels": [lab for lab, p in zip(self.labels, probs) if p > self.threshold],
                    "scores": dict(zip(self.labels, probs))}
        probs = torch.softmax(logits, dim=-1).tolist()
        best = max(range(len(probs)), key=probs.__getitem__)
        return {"label": self.labels[best], "score": probs[best], "scores": dict(zip(self.labels, probs))}


# ==================================================================================== embeddings
class Embedder(Predictor):
    """Sentence vectors from any BERT encoder: masked mean of the last layer, or the [CLS] vector."""

    def __init__(self, model_dir: str | Path, *, device: str | torch.device | None = None,
                 precision: str = "auto", batch_size: int = 32, pooling: str = "mean",
                 normalize: bool = False) -> None:
        if pooling not in POOLINGS:
            raise InputError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        model = _load("BertModel", model_dir, "encoder", ("embeddings.", "encoder."),
                      "pass a complete BERT checkpoint directory")
        super().__init__(model, _load_tokenizer(model_dir), Path(model_dir), device=device,
                         precision=precision, batch_size=batch_size)
        self.pooling = pooling
        self.normalize = normalize
        self.dim = model.config.hidden_size

    def __call__(self, texts: Sequence[str], pooling: str | None = None,
                 normalize: bool | None = None) -> torch.Tensor:
        """A (N, H) float32 tensor on the CPU; texts longer than the model reads are truncated."""
        _check_texts(texts)
        pooling = pooling or self.pooling
        if pooling not in POOLINGS:
            raise InputError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        normalize = self.normalize if normalize is None else normalize
        out = torch.zeros((len(texts), self.dim), dtype=torch.float32)
        with self.lock:
            encodings = self.tokenizer.encode_batch(list(texts), max_length=self.max_length)
            for batch in self._batches([(e.input_ids, e.token_type_ids) for e in encodings]):
                hidden = self._forward(batch).last_hidden_state.float()  # (B, T, H)
                if pooling == "cls":
                    vectors = hidden[:, 0]  # (B, H)
                else:  # padding excluded from the mean
                    mask = batch.attention_mask.unsqueeze(-1).float()  # (B, T, 1)
                    vectors = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)
                if normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                out[batch.indices] = vectors.cpu()
        return out
