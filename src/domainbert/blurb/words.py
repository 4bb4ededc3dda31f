"""Cutting raw text into words as a token-classification corpus cut its own text.

NER and PICO corpora come as words (one per line, CoNLL-style), and each corpus cut its text its own
way: NCBI-disease and BC5CDR make every punctuation mark a word (``ataxia - telangiectasia``),
JNLPBA keeps hyphens, slashes and dots inside words (``IL-2``, ``NF-kappa/B``). A model fine-tuned
on such words learns to tag the first sub-token of each word, so new text must be cut the same way
before it is tagged, or a word like ``IL-2`` becomes three words, two of them tagged from positions
training never taught to carry a tag.

:class:`WordCutter` is that cut: whitespace separates words, and every punctuation mark (BERT's
definition: ASCII symbols and Unicode ``P*``) is a word of its own, except the marks of
``keep_inside`` when a letter or digit stands on both sides. With ``keep_inside`` empty it cuts as
BERT's pre-tokenizer does. :meth:`WordCutter.learn` reads it from a corpus' words: a mark is kept
inside words when the corpus has it more often between two letters or digits of one word
(``IL-2``) than as a word of its own between two words that end and start with a letter or digit
(``T - cell``; written text rarely spaces an inner hyphen, so such a mark was cut out of a word).
``domainbert finetune`` records the cutter learned from the training split in the model's
``config.json`` (``word_cutting``), and the tagger (``ner``, the HTTP service) cuts with it.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

CONFIG_KEY = "word_cutting"
"""The ``config.json`` key under which a fine-tuned token model keeps its cutter."""


def is_punctuation(char: str) -> bool:
    """BERT's punctuation: every non-alphanumeric ASCII symbol, and Unicode punctuation (``P*``)."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


@dataclass(frozen=True)
class WordCutter:
    """Whitespace and punctuation cut words; the marks of ``keep_inside`` stay between two alphanumerics."""

    keep_inside: str = ""
    """Punctuation marks that stay inside a word when a letter or digit stands on both sides."""

    def __post_init__(self) -> None:
        if not isinstance(self.keep_inside, str) or not all(map(is_punctuation, self.keep_inside)):
            raise ValueError(f"keep_inside must be a string of punctuation marks, got {self.keep_inside!r}")

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The ``[start, end)`` character span of every word of ``text``, in order."""
        spans: list[tuple[int, int]] = []
        start = -1
        for i, char in enumerate(text):
            if char.isspace() or (is_punctuation(char) and not self._kept(text, i)):
                if start >= 0:
                    spans.append((start, i))
                    start = -1
                if not char.isspace():
                    spans.append((i, i + 1))
            elif start < 0:
                start = i
        if start >= 0:
            spans.append((start, len(text)))
        return spans

    def words(self, text: str) -> list[str]:
        return [text[start:end] for start, end in self.spans(text)]

    def _kept(self, text: str, i: int) -> bool:
        return (text[i] in self.keep_inside and 0 < i < len(text) - 1
                and text[i - 1].isalnum() and text[i + 1].isalnum())

    @classmethod
    def learn(cls, sentences: Iterable[Sequence[str]]) -> WordCutter:
        """The cutter of a corpus, from its sentences' words (see the module's docstring)."""
        inside: Counter[str] = Counter()
        alone: Counter[str] = Counter()
        for words in sentences:
            for j, word in enumerate(words):
                for k in range(1, len(word) - 1):
                    if is_punctuation(word[k]) and word[k - 1].isalnum() and word[k + 1].isalnum():
                        inside[word[k]] += 1
                if (len(word) == 1 and is_punctuation(word) and 0 < j < len(words) - 1
                        and words[j - 1][-1:].isalnum() and words[j + 1][:1].isalnum()):
                    alone[word] += 1
        return cls("".join(sorted(mark for mark, n in inside.items() if n > alone[mark])))

    def to_config(self) -> dict[str, Any]:
        return {"keep_inside": self.keep_inside}

    @classmethod
    def from_config(cls, value: Any, where: str) -> WordCutter:
        """The cutter a ``config.json`` records (BERT's cut when it records none)."""
        if value is None:
            return cls()
        if not isinstance(value, dict) or not isinstance(value.get("keep_inside"), str):
            raise ValueError(f"{where}: {CONFIG_KEY} must be {{\"keep_inside\": \"<punctuation marks>\"}}, "
                             f"got {value!r}; fine-tune the model again or fix the file")
        return cls(value["keep_inside"])


def locate(words: Sequence[str], text: str, start: int = 0) -> list[tuple[int, int]] | None:
    """The character spans of ``words`` written one after another in ``text`` from ``start``, only
    whitespace between them; None when ``text`` does not hold them so."""
    spans: list[tuple[int, int]] = []
    at = start
    for word in words:
        while at < len(text) and text[at].isspace():
            at += 1
        if not text.startswith(word, at):
            return None
        spans.append((at, at + len(word)))
        at += len(word)
    return spans


def bio_tags(spans: Sequence[tuple[int, int]], entities: Iterable[tuple[int, int, str]]) -> list[str]:
    """BIO tags of the words at ``spans`` from character-span entities ``(start, end, label)``: a word
    overlapping an entity is inside it, the first such word begins it."""
    tags = ["O"] * len(spans)
    for start, end, label in sorted(entities):
        inside = [j for j, (s, e) in enumerate(spans) if s < end and e > start and tags[j] == "O"]
        for k, j in enumerate(inside):
            tags[j] = f"{'B' if k == 0 else 'I'}-{label}"
    return tags


def find(words: Sequence[str], texts: Sequence[str]) -> tuple[int, list[tuple[int, int]]] | None:
    """Where ``words`` are written one after another (only whitespace between) in one of ``texts``:
    the text's index and the words' spans in it; None when no text holds them so."""
    for index, text in enumerate(texts):
        at = text.find(words[0]) if words else -1
        while at >= 0:
            spans = locate(words, text, at)
            if spans is not None:
                return index, spans
            at = text.find(words[0], at + 1)
    return None
