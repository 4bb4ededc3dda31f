"""Examples -> model inputs for fine-tuning and for serving: sub-tokens, windows, markers, batches.

Shared by :mod:`domainbert.blurb.finetune` (training and scoring) and
:mod:`domainbert.serve.inference` (tagging raw text), so that a model is read at serving time exactly
as it was trained:

* token tasks (NER, PICO): words -> sub-tokens, the first sub-token of a word carries its tag, the
  rest -100; inputs longer than the maximum are split into overlapping windows
  (:func:`word_windows`, never truncated) and each word is scored in exactly one window, the one
  where it has the most context on both sides (:func:`window_owners`);
* sequence tasks: single texts or pairs, truncated longest-first as BERT does; relation sets' entity
  markers (``@GENE$``) are found (:func:`markers_in`) to be added to the vocabulary as whole tokens;
* batches grouped by length (:func:`length_grouped_batches`) and padded to their longest member
  (:func:`collate`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from domainbert.blurb.examples import TextExample, TokenExample
from domainbert.blurb.registry import DatasetRecord
from domainbert.model.modeling import Packing, to_device

Example = TokenExample | TextExample

#: Entity markers of BLURB's relation sets; any other ``@NAME$`` found in the data is added too.
KNOWN_MARKERS = ("@GENE$", "@DISEASE$", "@CHEMICAL$", "@CHEM-GENE$", "@DRUG$", "@DRUG-DRUG$")
MARKER_RE = re.compile(r"@[A-Za-z][A-Za-z0-9_-]*\$")
IGNORE = -100
"""The label of sub-tokens that are not scored (what ``torch.nn.CrossEntropyLoss`` ignores)."""


@dataclass
class Feature:
    """One model input: ids and the targets of a window (token tasks) or an example (sequence tasks)."""

    input_ids: list[int]
    token_type_ids: list[int]
    labels: list[int] | list[float] | int | float
    """Token tasks: one id per token (-100 = not scored); otherwise a class id, a score, or a
    multi-hot list."""
    example: int
    """Index of the example this feature came from."""
    word_index: list[int] = field(default_factory=list)
    """Token tasks: for each token, the word whose tag it predicts (-1 when none)."""

    def __len__(self) -> int:
        return len(self.input_ids)


def word_windows(lengths: Sequence[int], budget: int, overlap: int) -> list[tuple[int, int]]:
    """Split words of sub-token ``lengths`` into ``[start, end)`` windows of at most ``budget`` sub-tokens.

    Consecutive windows share about ``overlap`` sub-tokens of context. Every window advances by at
    least one word, so the windows cover every word. A single word longer than ``budget`` gets a
    window of its own (its sub-tokens past the budget are cut; the word keeps its first sub-token,
    which is the one scored).
    """
    if budget < 1:
        raise ValueError(f"window budget must be positive, got {budget}")
    n = len(lengths)
    windows: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end, used = start, 0
        while end < n and (end == start or used + min(lengths[end], budget) <= budget):
            used += min(lengths[end], budget)
            end += 1
        windows.append((start, end))
        if end == n:
            break
        # Step back from the end to keep ``overlap`` sub-tokens of left context for the next
        # window, leaving it room for word ``end`` so that every window reaches further.
        nxt, kept = end, 0
        room = budget - min(lengths[end], budget)
        while nxt - 1 > start and kept + lengths[nxt - 1] <= min(overlap, room):
            nxt -= 1
            kept += lengths[nxt]
        start = max(nxt, start + 1)
    return windows


def window_owners(n_words: int, windows: Sequence[tuple[int, int]]) -> list[int]:
    """For each word, the window that scores it: the one where it is farthest from both edges."""
    owners = [-1] * n_words
    best = [-1] * n_words
    for w, (start, end) in enumerate(windows):
        for i in range(start, end):
            margin = min(i - start, end - 1 - i)
            if margin > best[i]:
                best[i], owners[i] = margin, w
    assert -1 not in owners, "every word lies in some window"
    return owners


def window_words(tokenizer: Any, sentences: Sequence[Sequence[str]], max_length: int) -> list[Feature]:
    """Words -> windows of sub-tokens, each word's first sub-token marked with the word it tags.

    The one way token models read words, in fine-tuning, evaluation and serving: every window is
    ``[CLS] sub-tokens [SEP]``, at most ``max_length`` long; a word is scored (``word_index``) in the
    one window that gives it most context. Labels are all -100 (:func:`featurize_tokens` fills them).
    """
    budget = max_length - 2  # room for [CLS] and [SEP]
    overlap = budget // 4
    unk = tokenizer.unk_token_id
    features: list[Feature] = []
    # Encode every word of every sentence in one Rust call: the sub-tokens of word j are the
    # tokens whose word id is j. A word the normaliser empties (a lone control character) still
    # needs a position to carry its tag: it gets [UNK].
    encodings = tokenizer.encode_batch([list(words) for words in sentences], is_split_into_words=True,
                                       add_special_tokens=False)
    for index, (words, enc) in enumerate(zip(sentences, encodings)):
        pieces: list[list[int]] = [[] for _ in words]
        for token_id, word in zip(enc.input_ids, enc.word_ids):
            if word is not None:
                pieces[word].append(token_id)
        pieces = [p or [unk] for p in pieces]
        windows = word_windows([len(p) for p in pieces], budget, overlap)
        owners = window_owners(len(pieces), windows)
        for w, (start, end) in enumerate(windows):
            ids = [tokenizer.cls_token_id]
            word_index = [-1]
            for i in range(start, end):
                word_ids = pieces[i][:budget]
                ids.extend(word_ids)
                word_index.append(i if owners[i] == w else -1)
                word_index.extend([-1] * (len(word_ids) - 1))
            ids.append(tokenizer.sep_token_id)
            word_index.append(-1)
            assert len(ids) <= max_length, (index, len(ids), max_length)
            features.append(Feature(ids, [0] * len(ids), [IGNORE] * len(ids), index, word_index))
    return features


def featurize_tokens(tokenizer: Any, examples: Sequence[TokenExample], label2id: dict[str, int],
                     max_length: int) -> list[Feature]:
    """Token classification features: first sub-token labelled, long inputs windowed (never cut)."""
    features = window_words(tokenizer, [e.tokens for e in examples], max_length)
    for f in features:
        tags = examples[f.example].tags
        f.labels = [label2id[tags[word]] if word >= 0 else IGNORE for word in f.word_index]
    return features


def featurize_texts(tokenizer: Any, record: DatasetRecord, examples: Sequence[TextExample],
                    label2id: dict[str, int], max_length: int) -> list[Feature]:
    """Sequence-level features: single texts or pairs, truncated longest-first as BERT does."""
    texts = [e.text for e in examples]
    pairs = [e.text_pair or "" for e in examples] if "text_pair" in record.text_fields else None
    encodings = tokenizer.encode_batch(texts, pairs, max_length=max_length)
    features = []
    for index, (example, enc) in enumerate(zip(examples, encodings)):
        labels: Any
        if record.task_type == "similarity":
            labels = float(example.label)  # type: ignore[arg-type]
        elif record.task_type == "multilabel":
            labels = [0.0] * len(label2id)
            for name in example.label:  # type: ignore[union-attr]
                labels[label2id[name]] = 1.0
        else:
            labels = label2id[str(example.label)]
        features.append(Feature(enc.input_ids, enc.token_type_ids, labels, index))
    return features


def markers_in(examples: Sequence[Example]) -> list[str]:
    """The ``@TYPE$`` entity markers that occur in relation examples (sorted), plus BLURB's known ones."""
    found = set(KNOWN_MARKERS)
    for example in examples:
        if isinstance(example, TextExample):
            found.update(MARKER_RE.findall(example.text))
    return sorted(found)


# ---------------------------------------------------------------------------------------- batching
def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                           pool: int = 50) -> list[list[int]]:
    """Shuffled batches of similar length: shuffle, sort within pools of ``pool`` batches, shuffle batches.

    Like transformers' LengthGroupedSampler, this keeps randomness across epochs while cutting
    the padding of each batch (dynamic padding pads only to the batch's longest member).
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    step = batch_size * pool
    for at in range(0, len(order), step):
        chunk = sorted(order[at:at + step], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(features: Sequence[Feature], pad_id: int, device: torch.device, unpad: bool = False) -> dict[str, Any]:
    """Pad a batch to its longest member and make tensors (labels padded with -100 for tokens); with
    ``unpad``, a batch with padding also gets its :class:`Packing` (found on the host)."""
    width = max(len(f) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(features), width), dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for row, f in enumerate(features):
        ids[row, :len(f)] = torch.tensor(f.input_ids)
        types[row, :len(f)] = torch.tensor(f.token_type_ids)
        mask[row, :len(f)] = 1
    first = features[0].labels
    if isinstance(first, list) and isinstance(first[0], int):  # token labels
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        for row, f in enumerate(features):
            labels[row, :len(f)] = torch.tensor(f.labels)
    elif isinstance(first, (list, float)):
        labels = torch.tensor([f.labels for f in features], dtype=torch.float)
    else:
        labels = torch.tensor([f.labels for f in features], dtype=torch.long)
    batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}
    moved: dict[str, Any] = {k: to_device(v, device) for k, v in batch.items()}
    moved["packing"] = Packing.for_batch(mask, device) if unpad else None
    return moved
