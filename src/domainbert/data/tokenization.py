"""BERT WordPiece tokenization on the Rust ``tokenizers`` library, loading any BERT vocabulary directory.

``BertTokenizer.from_pretrained(dir)`` reads a directory that holds ``tokenizer.json`` (as
transformers' fast tokenizers write it) or just ``vocab.txt`` + ``tokenizer_config.json`` (as
google-research/bert, BioBERT and PubMedBERT ship), and gives ids identical to transformers'
``BertTokenizerFast`` and ``BertTokenizer`` (tests/test_tokenization.py checks this on real text).
BERT's normalisation: remove control characters, split CJK characters, lowercase and strip accents
when uncased, split on whitespace and punctuation, then greedy longest-match WordPiece with ``##``
continuation pieces and ``[UNK]`` for words longer than 100 characters or without a match.

Encodings: single texts, text pairs (``[CLS] A [SEP] B [SEP]`` with token types 0 and 1) and
pre-split words (``is_split_into_words=True``; ``word_ids`` map each token back to its word, for
aligning NER labels), with truncation to ``max_length`` (the longer side first, as BERT does).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from domainbert.atomic import atomic_write_text
from domainbert.errors import DataError, VocabError
from domainbert.model.hub import resolve_model

SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
                  "sep_token": "[SEP]", "mask_token": "[MASK]"}
VOCAB_NAME = "vocab.txt"
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"


def build_backend(vocab: dict[str, int], lowercase: bool = True, strip_accents: bool | None = None,
                  tokenize_chinese_chars: bool = True) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` with BERT's normaliser, pre-tokenizer, WordPiece and templates."""
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=tokenize_chinese_chars,
        strip_accents=strip_accents, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    _set_templates(tok, vocab)
    return tok


def require_special_tokens(vocab: dict[str, int], source: str) -> None:
    """A VocabError naming the special tokens BERT needs that ``vocab`` lacks."""
    missing = [t for t in SPECIAL_TOKENS.values() if t not in vocab]
    if missing:
        raise VocabError(f"the vocabulary in {source} lacks {', '.join(missing)}: BERT needs [PAD], "
                         "[UNK], [CLS], [SEP] and [MASK]; rebuild it with `domainbert vocab build`")


def _set_templates(tok: Tokenizer, vocab: dict[str, int]) -> None:
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])


def read_vocab_txt(path: Path) -> dict[str, int]:
    """``vocab.txt``: one token per line, the line number is the id (a trailing newline allowed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise VocabError(f"{path} is not UTF-8 text (byte {exc.start}): a vocab.txt holds one token "
                         "per line in UTF-8") from None
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    vocab: dict[str, int] = {}
    for i, token in enumerate(tokens):
        token = token.rstrip("\r")
        vocab.setdefault(token, i)  # a duplicated line keeps its first id, as transformers does
    if not vocab:
        raise VocabError(f"{path} is empty: build a vocabulary with `domainbert vocab build`")
    return vocab


@dataclass
class Encoding:
    """One encoded input: ids, token types, mask, character offsets and the word of each token."""

    input_ids: list[int]
    token_type_ids: list[int]
    attention_mask: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]
    """For each token, the index of the word it came from (None for [CLS]/[SEP]); with pre-split
    words, the index into the given list."""
    tokens: list[str]


class BertTokenizer:
    """Fast BERT WordPiece tokenizer with transformers' names (``input_ids``, ``token_type_ids`` ...)."""

    def __init__(self, backend: Tokenizer, *, do_lower_case: bool = True, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True, model_max_length: int = 512,
                 source: str = "<memory>") -> None:
        self.backend = backend
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.model_max_length = model_max_length
        self.vocab: dict[str, int] = backend.get_vocab(with_added_tokens=True)
        require_special_tokens(self.vocab, source)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.backend.no_padding()
        self.backend.no_truncation()
        self._truncation: int | None = None

    # ------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> BertTokenizer:
        """Load a vocabulary directory: ``tokenizer.json``, or ``vocab.txt`` (+ ``tokenizer_config.json``)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise VocabError(f"vocabulary directory {directory} does not exist: pass the directory "
                             "that holds vocab.txt (from `domainbert vocab build` or a BERT checkpoint)")
        config: dict[str, Any] = {}
        if (directory / TOKENIZER_CONFIG).is_file():
            try:
                config = json.loads((directory / TOKENIZER_CONFIG).read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise VocabError(f"{directory / TOKENIZER_CONFIG} is not valid JSON ({exc}): "
                                 "fix or delete it") from None
        lower = bool(config.get("do_lower_case", True))
        strip = config.get("strip_accents")
        chinese = bool(config.get("tokenize_chinese_chars", True))
        max_len = int(config.get("model_max_length", 512))
        max_len = max_len if max_len < 10**6 else 512  # transformers writes 1e30 for "no limit"
        if (directory / TOKENIZER_JSON).is_file():
            # tokenizer.json is what transformers' fast tokenizer reads, added tokens included.
            try:
                backend = Tokenizer.from_file(str(directory / TOKENIZER_JSON))
            except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
                raise VocabError(f"{directory / TOKENIZER_JSON} could not be read ({exc}): delete it to "
                                 "fall back to vocab.txt, or rebuild the vocabulary") from None
            if not isinstance(backend.model, models.WordPiece):
                raise VocabError(f"{directory / TOKENIZER_JSON} is not a WordPiece tokenizer: BERT needs "
                                 "a WordPiece vocabulary (build one with `domainbert vocab build`)")
        elif (directory / VOCAB_NAME).is_file():
            # A bare vocab.txt, as google-research/bert, BioBERT and PubMedBERT ship: the line number
            # is the id, and the normalisation follows tokenizer_config.json (uncased by default).
            vocab = read_vocab_txt(directory / VOCAB_NAME)
            require_special_tokens(vocab, str(directory))  # before the templates look up [CLS] and [SEP]
            backend = build_backend(vocab, lower, strip, chinese)
        else:
            raise VocabError(f"{directory} has no {VOCAB_NAME} (or {TOKENIZER_JSON}): pass the directory "
                             "written by `domainbert vocab build` or a BERT checkpoint directory")
        return cls(backend, do_lower_case=lower, strip_accents=strip, tokenize_chinese_chars=chinese,
                   model_max_length=max_len, source=str(directory))

    # ------------------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of tokens (the highest id + 1)."""
        return max(self.vocab.values()) + 1

    def __len__(self) -> int:
        return self.vocab_size

    def token_id(self, token: str) -> int:
        return self.vocab.get(token, self.vocab["[UNK]"])

    pad_token_id = property(lambda self: self.vocab["[PAD]"])
    unk_token_id = property(lambda self: self.vocab["[UNK]"])
    cls_token_id = property(lambda self: self.vocab["[CLS]"])
    sep_token_id = property(lambda self: self.vocab["[SEP]"])
    mask_token_id = property(lambda self: self.vocab["[MASK]"])

    @property
    def special_ids(self) -> set[int]:
        return {self.vocab[t] for t in SPECIAL_TOKENS.values()}

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.token_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.ids_to_tokens.get(int(i), "[UNK]") for i in ids]

    def add_tokens(self, tokens: Sequence[str]) -> int:
        """Add whole tokens that are never split or lowercased (e.g. ``@GENE$`` entity markers).

        Returns how many were new; resize the model's embeddings to ``vocab_size`` afterwards.
        """
        new = [t for t in tokens if t not in self.vocab]
        if new:
            self.backend.add_tokens([AddedToken(t, single_word=False, normalized=False) for t in new])
            self.vocab = self.backend.get_vocab(with_added_tokens=True)
            self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        return len(new)

    # ------------------------------------------------------------------------------ encoding
    def _set_truncation(self, max_length: int | None) -> None:
        if max_length != self._truncation:
            if max_length is None:
                self.backend.no_truncation()
            else:
                if max_length < 3:
                    raise VocabError(f"max_length {max_length} leaves no room for [CLS] and [SEP]: use at least 3")
                self.backend.enable_truncation(max_length, strategy="longest_first")
            self._truncation = max_length

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of ``text``, without special tokens."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode_batch(
        self,
        texts: Sequence[str] | Sequence[Sequence[str]],
        text_pairs: Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        is_split_into_words: bool = False,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> list[Encoding]:
        """Encode many inputs at once (parallel in Rust). ``max_length`` truncates; None does not."""
        self._set_truncation(max_length)
        inputs: list[Any] = list(texts) if text_pairs is None else list(zip(texts, text_pairs, strict=True))
        raw = self.backend.encode_batch(inputs, is_pretokenized=is_split_into_words,
                                        add_special_tokens=add_special_tokens)
        return [Encoding(e.ids, e.type_ids, e.attention_mask, e.offsets, e.word_ids, e.tokens) for e in raw]

    def encode(self, text: str | Sequence[str], text_pair: str | Sequence[str] | None = None, *,
               is_split_into_words: bool = False, max_length: int | None = None,
               add_special_tokens: bool = True) -> Encoding:
        """Encode one text (or pair, or list of pre-split words)."""
        pairs = None if text_pair is None else [text_pair]
        return self.encode_batch([text], pairs, is_split_into_words=is_split_into_words,  # type: ignore[list-item]
                                 max_length=max_length, add_special_tokens=add_special_tokens)[0]

    def __call__(self, texts: str | Sequence[str], text_pairs: str | Sequence[str] | None = None, *,
                 is_split_into_words: bool = False, max_length: int | None = None,
                 padding: bool = False, return_tensors: str | None = None) -> dict[str, Any]:
        """transformers-style call: a dict of ``input_ids``, ``token_type_ids``, ``attention_mask``.

        With ``padding`` the batch is padded to its longest member; ``return_tensors="pt"`` gives
        torch tensors (which need padding when the lengths differ).
        """
        single = isinstance(texts, str) or (is_split_into_words and texts and isinstance(texts[0], str))
        batch = [texts] if single else list(texts)
        pairs = None if text_pairs is None else ([text_pairs] if single else list(text_pairs))
        encs = self.encode_batch(batch, pairs, is_split_into_words=is_split_into_words, max_length=max_length)
        out = {"input_ids": [e.input_ids for e in encs], "token_type_ids": [e.token_type_ids for e in encs],
               "attention_mask": [e.attention_mask for e in encs]}
        if padding:
            out = self.pad(out)
        if return_tensors == "pt":
            lengths = {len(x) for x in out["input_ids"]}
            if len(lengths) > 1:
                raise ValueError("inputs of different lengths need padding=True to become one tensor")
            out = {k: torch.tensor(v) for k, v in out.items()}
        elif single and return_tensors is None:
            out = {k: v[0] for k, v in out.items()}
        return out

    def pad(self, batch: dict[str, list[list[int]]], length: int | None = None) -> dict[str, list[list[int]]]:
        """Pad every list in ``batch`` to ``length`` (default: the longest): ids with [PAD], the rest 0."""
        n = length or max(len(x) for x in batch["input_ids"])
        fill = {"input_ids": self.pad_token_id}
        return {k: [list(x) + [fill.get(k, 0)] * (n - len(x)) for x in v] for k, v in batch.items()}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    # ------------------------------------------------------------------------------ saving
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``vocab.txt``, ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``.

        ``transformers.AutoTokenizer.from_pretrained(directory)`` loads the result.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        by_id = sorted(self.backend.get_vocab(with_added_tokens=False).items(), key=lambda kv: kv[1])
        ids = [i for _, i in by_id]
        if ids != list(range(len(ids))):
            raise VocabError("the vocabulary's ids are not contiguous from 0: it cannot be written as vocab.txt")
        files = {
            VOCAB_NAME: "".join(t + "\n" for t, _ in by_id),
            TOKENIZER_JSON: self.backend.to_str(pretty=True),
            TOKENIZER_CONFIG: json.dumps({
                "tokenizer_class": "BertTokenizer", "do_lower_case": self.do_lower_case,
                "strip_accents": self.strip_accents, "tokenize_chinese_chars": self.tokenize_chinese_chars,
                "do_basic_tokenize": True, "model_max_length": self.model_max_length,
                "clean_up_tokenization_spaces": False, **SPECIAL_TOKENS}, indent=2) + "\n",
            SPECIAL_TOKENS_MAP: json.dumps(SPECIAL_TOKENS, indent=2) + "\n",
        }
        for name, text in files.items():
            atomic_write_text(directory / name, text)


# ==================================================================================== command
def configure_encode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vocab", required=True, help="vocabulary or model directory, or a model's Hub repo id")
    parser.add_argument("--max-length", type=int, default=None, help="truncate to this many tokens")
    parser.add_argument("--tokens", action="store_true", help="also print the WordPiece tokens")
    parser.add_argument("files", nargs="*", type=Path, help="text files, one input per line (default: stdin)")


def _lines(files: Iterable[Path]) -> Iterable[str]:
    if not files:
        yield from (line.rstrip("\n") for line in sys.stdin)
        return
    for path in files:
        if not path.is_file():
            raise DataError(f"{path} not found: pass existing text files or pipe text on stdin")
        with path.open(encoding="utf-8") as fh:
            try:
                for line in fh:
                    yield line.rstrip("\n")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path} is not UTF-8 (byte {exc.start} of a chunk): convert it with "
                                "`iconv -t utf-8`") from None


def run_encode(args: argparse.Namespace) -> int:
    tokenizer = BertTokenizer.from_pretrained(resolve_model(args.vocab).path)
    for line in _lines(args.files):
        enc = tokenizer.encode(line, max_length=args.max_length)
        record: dict[str, Any] = {"input_ids": enc.input_ids}
        if args.tokens:
            record["tokens"] = enc.tokens
        print(json.dumps(record, ensure_ascii=False))
    return 0
