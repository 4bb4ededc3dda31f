"""Tests of ``domainbert.data.shards``: the BERT pretraining-example recipe, the shards, the reader.

The algorithm is checked three ways: against an independent transcription of google-research/bert's
``create_pretraining_data.py`` (on token strings, written here from the reference's description,
not imported) that must give the same instances from the same ``random.Random``; by hand-computed
cases with a scripted generator; and by the recipe's statistics over more than 10,000 examples of
real PubMed text from ``../shared/data`` (masked share, 80/10/10, NSP, token types, lengths).
Then: byte-identical output for 1 and 2 worker processes, interrupted runs completed by a rerun,
the reader (rank/worker split, exact resume, per-epoch order and dynamic masks, config checks), and
bad input (one-line error, non-zero exit, nothing half-written).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from domainbert.cli import main as cli_main
from domainbert.data.examples import (
    DocumentPool,
    MaskingSpec,
    NspDebt,
    PrepareConfig,
    create_instances_from_document,
    create_masked_lm_predictions,
    truncate_seq_pair,
)
from domainbert.data.filters import CorpusFilter
from domainbert.data.loader import PretrainingDataset, _Permutation, collate_pretraining
from domainbert.data.shards import (
    MANIFEST_NAME,
    UNIT_BYTES,
    check_manifest,
    few_other_documents,
    group_units,
    load_manifest,
    prepare_pretraining_data,
)
from domainbert.data.tokenization import BertTokenizer
from domainbert.data.vocab import build_vocab
from domainbert.errors import ConfigError, DataError, VocabError

KEEP_ALL = CorpusFilter(min_words=0)


# ==================================================================================== fixtures
@pytest.fixture(scope="session")
def vocab_dir(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    out = tmp_path_factory.mktemp("pd_vocab") / "vocab"
    build_vocab([shared_data / "pubmed_corpus" / "ncbi_disease_train_dev.txt"], out, 3000, progress=False)
    return out


@pytest.fixture(scope="session")
def tokenizer(vocab_dir: Path) -> BertTokenizer:
    return BertTokenizer.from_pretrained(vocab_dir)


@pytest.fixture(scope="session")
def corpus(shared_data: Path) -> list[Path]:
    """Real text: a BERT-format text file and a gzipped MEDLINE XML baseline-style file."""
    return [shared_data / "pubmed_corpus" / "ncbi_disease_train_dev.txt",
            shared_data / "medline_xml" / "medline16n0902.xml.gz"]


@pytest.fixture(scope="session")
def static_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[Path], vocab_dir: Path) -> Path:
    """More than 10,000 statically masked examples, made with 2 worker processes."""
    out = tmp_path_factory.mktemp("pd_static") / "data"
    prepare_pretraining_data(corpus, vocab_dir, out, PrepareConfig(dupe_factor=2), corpus_filter=KEEP_ALL,
                             workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def dynamic_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[Path], vocab_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("pd_dynamic") / "data"
    prepare_pretraining_data(corpus[:1], vocab_dir, out, PrepareConfig(dupe_factor=1, dynamic_masking=True,
                                                                       whole_word_mask=True),
                             corpus_filter=KEEP_ALL, progress=False)
    return out


def load_all(data_dir: Path) -> dict[str, np.ndarray]:
    """Every shard's arrays concatenated (fine for test-sized data)."""
    manifest = load_manifest(data_dir)
    parts: dict[str, list[np.ndarray]] = {}
    for s in manifest["shards"]:
        for f in sorted((data_dir / s["name"]).glob("*.npy")):
            parts.setdefault(f.stem, []).append(np.load(f))
    return {k: np.concatenate(v) for k, v in parts.items()}


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ==================================================================================== reference
def reference_instances(all_documents: list[list[list[str]]], document_index: int, max_seq_length: int,
                        short_seq_prob: float, masked_lm_prob: float, max_predictions_per_seq: int,
                        vocab_words: list[str], rng: random.Random, whole_word_mask: bool) -> list[dict]:
    """google-research/bert create_instances_from_document + create_masked_lm_predictions +
    truncate_seq_pair (master, with do_whole_word_mask), transcribed on token strings."""
    document = all_documents[document_index]
    max_num_tokens = max_seq_length - 3
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = rng.randint(2, max_num_tokens)
    out, chunk, length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            if chunk:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                a = [t for seg in chunk[:a_end] for t in seg]
                b: list[str] = []
                if len(chunk) == 1 or rng.random() < 0.5:
                    random_next = True
                    for _ in range(10):
                        r = rng.randint(0, len(all_documents) - 1)
                        if r != document_index:
                            break
                    rd = all_documents[r]
                    for j in range(rng.randint(0, len(rd) - 1), len(rd)):
                        b.extend(rd[j])
                        if len(b) >= target - len(a):
                            break
                    i -= len(chunk) - a_end
                else:
                    random_next = False
                    b = [t for seg in chunk[a_end:] for t in seg]
                while len(a) + len(b) > max_num_tokens:
                    trunc = a if len(a) > len(b) else b
                    if rng.random() < 0.5:
                        del trunc[0]
                    else:
                        trunc.pop()
                tokens = ["[CLS]", *a, "[SEP]", *b, "[SEP]"]
                cands: list[list[int]] = []
                for k, t in enumerate(tokens):
                    if t in ("[CLS]", "[SEP]"):
                        continue
                    if whole_word_mask and cands and t.startswith("##"):
                        cands[-1].append(k)
                    else:
                        cands.append([k])
                rng.shuffle(cands)
                output = list(tokens)
                n_pred = min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))
                lms: list[tuple[int, str]] = []
                covered: set[int] = set()
                for index_set in cands:
                    if len(lms) >= n_pred:
                        break
                    if len(lms) + len(index_set) > n_pred:
                        continue
                    if any(k in covered for k in index_set):
                        continue
                    for k in index_set:
                        covered.add(k)
                        if rng.random() < 0.8:
                            output[k] = "[MASK]"
                        elif rng.random() < 0.5:
                            output[k] = tokens[k]
                        else:
                            output[k] = vocab_words[rng.randint(0, len(vocab_words) - 1)]
                        lms.append((k, tokens[k]))
                lms.sort()
                out.append({"tokens": output, "b_start": len(a) + 2, "random_next": random_next,
                            "positions": [k for k, _ in lms], "labels": [t for _, t in lms]})
            chunk, length = [], 0
        i += 1
    return out


def hand_built_documents() -> tuple[list[str], list[list[list[str]]]]:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = ["the", "cell", "##s", "gene", "##tic", "protein", "bind", "##ing", "to", "dna", "in",
             "vivo", "and", "mouse", "##like", "tumor", "."]
    vocab += words
    rng = random.Random(7)
    docs = []
    for d in range(6):
        n_sent = [1, 2, 5, 9, 3, 14][d]
        docs.append([[rng.choice(words) for _ in range(rng.randint(1, 17))] for _ in range(n_sent)])
    return vocab, docs


@pytest.mark.parametrize("seed,max_len,short_prob,wwm", [
    (0, 32, 0.1, False), (1, 16, 0.5, False), (2, 24, 0.1, True), (3, 8, 0.0, True), (4, 64, 1.0, False)])
def test_instances_equal_the_reference_transcription(seed: int, max_len: int, short_prob: float, wwm: bool) -> None:
    vocab, docs = hand_built_documents()
    ids = {t: i for i, t in enumerate(vocab)}
    pool = DocumentPool.from_documents([[[ids[t] for t in s] for s in doc] for doc in docs])
    spec = MaskingSpec(2, 3, 4, len(vocab), np.array([t.startswith("##") for t in vocab]))
    config = PrepareConfig(max_seq_len=max_len, max_predictions=5, short_seq_prob=short_prob, whole_word_mask=wwm)
    ours_rng, ref_rng = random.Random(seed), random.Random(seed)
    total = 0
    for _ in range(3):  # dupe rounds share the generator, as in the reference
        for d in range(len(docs)):
            ours = create_instances_from_document(pool, d, config, spec, ours_rng)
            ref = reference_instances(docs, d, max_len, short_prob, 0.15, 5, vocab, ref_rng, wwm)
            assert len(ours) == len(ref)
            for o, r in zip(ours, ref):
                assert [vocab[i] for i in o.input_ids] == r["tokens"]
                assert (o.b_start, o.is_random_next, o.masked_positions) == (r["b_start"], r["random_next"],
                                                                              r["positions"])
                assert [vocab[i] for i in o.masked_labels] == r["labels"]
                total += 1
    assert ours_rng.random() == ref_rng.random()  # the generators were used identically
    assert total > 20


class ScriptedRng(random.Random):
    """``random()`` returns the scripted values in order (a hand-computed case)."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def test_truncate_seq_pair_by_hand() -> None:
    a, b = [1, 2, 3, 4, 5], [6, 7]
    rng = ScriptedRng([0.1, 0.9, 0.3])
    truncate_seq_pair(a, b, 4, rng)  # A longer: front (0.1), back (0.9), front (0.3)
    assert (a, b, rng.values) == ([3, 4], [6, 7], [])
    a, b = [1, 2], [3, 4]
    truncate_seq_pair(a, b, 3, ScriptedRng([0.7]))  # a tie trims B, here from the back
    assert (a, b) == ([1, 2], [3])


def test_masked_lm_predictions_by_hand() -> None:
    spec = MaskingSpec(cls_id=2, sep_id=3, mask_id=4, vocab_size=50, is_continuation=np.zeros(50, dtype=bool))
    tokens = [2, *range(10, 17), 3, *range(20, 39), 3]  # 30 tokens: round(4.5) = 4 (round half to even)
    out, pos, lab = create_masked_lm_predictions(tokens, 0.15, 20, spec, random.Random(3))
    assert len(pos) == 4 and pos == sorted(pos) and lab == [tokens[p] for p in pos]
    assert not {0, 8, 29} & set(pos)
    assert [i for i, (x, y) in enumerate(zip(out, tokens)) if x != y] == [p for p in pos if out[p] != tokens[p]]
    # All-[MASK] rule when random() < 0.8: a scripted generator decides the replacement kind.
    short = [2, 10, 3, 11, 3]  # 5 tokens: max(1, round(0.75)) = 1 prediction
    _, pos, _ = create_masked_lm_predictions(short, 0.15, 20, spec, random.Random(0))
    assert len(pos) == 1 and pos[0] in (1, 3)
    capped = [2, *range(10, 40), 3, *range(10, 40), 3]  # 63 tokens: round(9.45) = 9, capped at 5
    assert len(create_masked_lm_predictions(capped, 0.15, 5, spec, random.Random(0))[1]) == 5


def test_single_sentence_chunks_always_take_a_random_next() -> None:
    pool = DocumentPool.from_documents([[[10, 11, 12]], [[13, 14]], [[15, 16, 17, 18]]])
    spec = MaskingSpec(2, 3, 4, 30, np.zeros(30, dtype=bool))
    rng = random.Random(0)
    for d in range(3):
        (inst,) = create_instances_from_document(pool, d, PrepareConfig(max_seq_len=16), spec, rng)
        assert inst.is_random_next and inst.forced_random
        assert inst.input_ids[0] == 2 and inst.input_ids[inst.b_start - 1] == 3 and inst.input_ids[-1] == 3


# ==================================================================================== statistics
def test_recipe_statistics_on_real_text(static_dir: Path, tokenizer: BertTokenizer) -> None:
    a = load_all(static_dir)
    manifest = load_manifest(static_dir)
    n, L = a["input_ids"].shape
    assert n >= 10_000 and L == 128 and n == manifest["num_samples"]
    lengths, b_start, k = a["lengths"].astype(int), a["b_start"].astype(int), a["num_masked"].astype(int)
    assert lengths.max() <= 128 and (b_start >= 3).all() and (b_start <= lengths - 2).all()
    # Exactly min(max_predictions, max(1, round(length * 0.15))) positions in every example (the cap
    # of 20 never binds at length 128: round(19.2) = 19), so the share is 15 % of the tokens.
    expected = np.minimum(20, np.maximum(1, np.round(lengths * 0.15))).astype(int)
    assert (k == expected).all()
    share = k.sum() / lengths.sum()
    assert abs(share - 0.15) < 0.005, share
    special = {tokenizer.cls_token_id, tokenizer.sep_token_id}
    n_mask = n_same = n_random = 0
    for i in range(n):
        ids = a["input_ids"][i].astype(int)
        pos = a["masked_positions"][i, :k[i]].astype(int)
        labels = a["masked_labels"][i, :k[i]].astype(int)
        assert (np.diff(pos) > 0).all()
        original = ids.copy()
        original[pos] = labels
        # Token types / structure: [CLS] A [SEP] B [SEP] then padding, specials never masked.
        assert original[0] == tokenizer.cls_token_id
        assert original[b_start[i] - 1] == tokenizer.sep_token_id and original[lengths[i] - 1] == tokenizer.sep_token_id
        assert (original[lengths[i]:] == tokenizer.pad_token_id).all()
        assert np.count_nonzero(np.isin(original[:lengths[i]], list(special))) == 3
        assert not set(labels.tolist()) & special
        assert not {0, b_start[i] - 1, lengths[i] - 1} & set(pos.tolist())
        got = ids[pos]
        n_mask += int((got == tokenizer.mask_token_id).sum())
        n_same += int((got == labels).sum())
        n_random += int(((got != tokenizer.mask_token_id) & (got != labels)).sum())
    total = n_mask + n_same + n_random
    assert total == k.sum()
    # 80 / 10 / 10 (a random draw equals the original with probability 1/3000: within tolerance).
    assert abs(n_mask / total - 0.8) < 0.02 and abs(n_same / total - 0.1) < 0.02
    assert abs(n_random / total - 0.1) < 0.02
    # NSP: a coin flip for chunks of two or more sentences; single-sentence chunks must take a random
    # B (the reference's rule), which puts the overall random share above one half.
    c = manifest["counts"]
    assert c["random_next"] == int(a["next_sentence"].sum())
    flipped = c["pairs"] - c["random_next_forced"]
    positives = (c["pairs"] - c["random_next"]) / flipped
    assert flipped > 8000 and abs(positives - 0.5) < 0.02, positives
    assert manifest["corpus_counts"]["files"] == 2 and manifest["counts"]["documents"] == 692 + 526


def test_nsp_balance_gives_half_actual_next_pairs_on_real_text(tmp_path: Path, corpus: list[Path],
                                                                 vocab_dir: Path, static_dir: Path) -> None:
    """``--nsp-balance``: 50 % +- 2 actual-next pairs overall, where the reference gives fewer."""
    out = tmp_path / "balanced"
    manifest = prepare_pretraining_data(corpus, vocab_dir, out, PrepareConfig(dupe_factor=3, nsp_balance=True),
                                        corpus_filter=KEEP_ALL, workers=2, progress=False)
    c, reference = manifest["counts"], load_manifest(static_dir)["counts"]
    assert c["pairs"] >= 10_000 and c["random_next_forced"] > 1000  # there was something to balance
    assert c["random_next"] == int(load_all(out)["next_sentence"].sum())
    balanced = (c["pairs"] - c["random_next"]) / c["pairs"]
    plain = (reference["pairs"] - reference["random_next"]) / reference["pairs"]
    assert abs(balanced - 0.5) < 0.02, balanced
    assert plain < 0.47, plain  # the reference's own share on this text, which the option corrects
    assert manifest["params"]["nsp_balance"] is True


def test_nsp_balance_pays_back_forced_random_pairs() -> None:
    # Document 0 alternates a sentence that fills a chunk alone (forced random) with short ones.
    long, short = list(range(10, 22)), [30, 31]
    pool = DocumentPool.from_documents([[long, *[short] * 6] * 3, [[40, 41, 42]] * 3])
    spec = MaskingSpec(2, 3, 4, 50, np.zeros(50, dtype=bool))
    config = PrepareConfig(max_seq_len=14, short_seq_prob=0.0, nsp_balance=True)
    plain = [i for seed in range(50) for i in create_instances_from_document(
        pool, 0, PrepareConfig(max_seq_len=14, short_seq_prob=0.0), spec, random.Random(seed))]
    balanced_debt = NspDebt()
    balanced = [i for seed in range(50) for i in create_instances_from_document(
        pool, 0, config, spec, random.Random(seed), balanced_debt)]
    share = lambda insts: sum(not i.is_random_next for i in insts) / len(insts)  # noqa: E731
    assert share(plain) < 0.45 and abs(share(balanced) - 0.5) < abs(share(plain) - 0.5)
    assert balanced_debt.owed >= 0
    # Every forced pair stays random; what changes is coin-flipped pairs turned actual-next.
    assert all(i.is_random_next for i in balanced if i.forced_random)


def test_whole_word_masking_never_splits_a_word(tmp_path: Path, corpus: list[Path], vocab_dir: Path,
                                                tokenizer: BertTokenizer) -> None:
    out = tmp_path / "wwm"
    prepare_pretraining_data(corpus[:1], vocab_dir, out, PrepareConfig(dupe_factor=1, whole_word_mask=True),
                             corpus_filter=KEEP_ALL, progress=False)
    a = load_all(out)
    cont = MaskingSpec.from_tokenizer(tokenizer).is_continuation
    special = {tokenizer.cls_token_id, tokenizer.sep_token_id}
    words_checked = 0
    for i in range(len(a["lengths"])):
        n, k = int(a["lengths"][i]), int(a["num_masked"][i])
        pos = a["masked_positions"][i, :k].astype(int)
        orig = a["input_ids"][i].astype(int)
        orig[pos] = a["masked_labels"][i, :k]
        masked = np.zeros(n, dtype=bool)
        masked[pos] = True
        assert k <= min(20, max(1, round(n * 0.15)))
        for p in range(1, n - 1):
            if orig[p] in special or orig[p + 1] in special or not cont[orig[p + 1]]:
                continue
            words_checked += 1
            assert masked[p] == masked[p + 1], (i, p)  # a piece and its ## continuation go together
    assert words_checked > 1000


# ==================================================================================== determinism
def test_one_and_two_workers_write_identical_bytes(tmp_path: Path, static_dir: Path, corpus: list[Path],
                                                   vocab_dir: Path) -> None:
    out = tmp_path / "one"
    prepare_pretraining_data(corpus, vocab_dir, out, PrepareConfig(dupe_factor=2), corpus_filter=KEEP_ALL,
                             workers=1, progress=False)
    assert tree_digest(out) == tree_digest(static_dir)
    assert not list(out.glob(".*"))  # no temporary files left


def test_small_files_are_grouped_into_units_and_large_files_stay_alone() -> None:
    big, small = UNIT_BYTES, UNIT_BYTES // 3 + 1  # three small files fill a unit
    assert group_units([big, big * 5, big]) == [[0], [1], [2]]  # PubMed baseline files: one unit each
    assert group_units([small] * 7) == [[0, 1, 2], [3, 4, 5], [6]]
    assert group_units([small, big, small, small]) == [[0, 1], [2, 3]]
    assert group_units([]) == []


def test_one_abstract_per_file_draws_random_next_from_other_documents(tmp_path: Path, shared_data: Path,
                                                                      vocab_dir: Path) -> None:
    """google-research/bert draws a random-next B from the whole corpus. A unit per file would draw it from
    the file's only document, labelled "not next" (0% from another document): files are grouped instead."""
    text = (shared_data / "pubmed_corpus" / "ncbi_disease_train_dev.txt").read_text(encoding="utf-8")
    abstracts = [a for a in text.split("\n\n") if a.strip()][:300]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, abstract in enumerate(abstracts):
        (corpus / f"abstract-{i:04d}.txt").write_text(abstract.strip() + "\n", encoding="utf-8")
    config = PrepareConfig(dupe_factor=2)
    one = prepare_pretraining_data([corpus], vocab_dir, tmp_path / "w1", config, corpus_filter=KEEP_ALL,
                                   progress=False)
    assert 1 < len(one["shards"]) < 300 and one["counts"]["documents"] == 300
    for shard in one["shards"]:
        assert shard["random_next_other_document"] >= 0.99 * shard["random_next"] > 0, shard
    assert few_other_documents(one) == []
    prepare_pretraining_data([corpus], vocab_dir, tmp_path / "w2", config, corpus_filter=KEEP_ALL, workers=2,
                             progress=False)
    assert tree_digest(tmp_path / "w1") == tree_digest(tmp_path / "w2")
    ns = load_all(tmp_path / "w1")["next_sentence"]
    assert int(ns.sum()) == one["counts"]["random_next"] >= one["counts"]["random_next_other_document"]


def test_a_unit_of_one_document_is_warned_about(tmp_path: Path, shared_data: Path, vocab_dir: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    text = (shared_data / "pubmed_corpus" / "ncbi_disease_train_dev.txt").read_text(encoding="utf-8")
    book = tmp_path / "book.txt"  # one document of more than UNIT_BYTES: a unit of its own
    book.write_text("\n".join(line for line in text.splitlines() if line.strip()) + "\n", encoding="utf-8")
    assert book.stat().st_size > UNIT_BYTES
    with caplog.at_level("WARNING", logger="domainbert.data.shards"):
        manifest = prepare_pretraining_data([book], vocab_dir, tmp_path / "out", PrepareConfig(dupe_factor=1),
                                            corpus_filter=KEEP_ALL, progress=False)
    assert manifest["counts"]["documents"] == 1 and manifest["counts"]["random_next_other_document"] == 0
    [line] = few_other_documents(manifest)
    assert line.startswith("shard-00000 (1 file(s)") and "0.0% of its" in line and "\n" not in line
    assert line in caplog.text


def test_duplicates_across_files_are_dropped_whatever_the_workers(tmp_path: Path, shared_data: Path,
                                                                  vocab_dir: Path) -> None:
    # medline16n0902.txt (BERT format, PMIDs in its sidecar) holds the same 526 abstracts as the
    # MEDLINE XML file: the later file's version of each PMID wins, so the text file's shard is empty.
    files = [shared_data / "pubmed_corpus" / "ncbi_disease_train_dev.txt",
             shared_data / "pubmed_corpus" / "medline16n0902.txt",
             shared_data / "medline_xml" / "medline16n0902.xml.gz"]
    config, keep_short = PrepareConfig(dupe_factor=1), CorpusFilter(min_words=0)
    one = prepare_pretraining_data(files, vocab_dir, tmp_path / "w1", config, corpus_filter=keep_short,
                                   workers=1, progress=False)
    prepare_pretraining_data(files, vocab_dir, tmp_path / "w2", config, corpus_filter=keep_short, workers=2,
                             progress=False)
    assert tree_digest(tmp_path / "w1") == tree_digest(tmp_path / "w2")
    assert one["corpus_counts"]["dropped_duplicate_pmid"] == 526
    assert one["counts"]["documents"] == 692 + 526 and one["shards"][1]["num_samples"] == 0
    reader = PretrainingDataset(tmp_path / "w1", shuffle=False)
    assert sum(1 for _ in reader) == one["num_samples"] > 0


def test_interrupted_run_is_completed_by_a_rerun(tmp_path: Path, static_dir: Path, corpus: list[Path],
                                                 vocab_dir: Path) -> None:
    out = tmp_path / "data"
    shutil.copytree(static_dir, out)
    # What a run killed while writing shard 1 leaves: no manifest, a temp folder, shard 1 truncated.
    (out / MANIFEST_NAME).unlink()
    shutil.copytree(out / "shard-00001", out / ".shard-00001.tmp-999")
    ids = out / "shard-00001" / "input_ids.npy"
    ids.write_bytes(ids.read_bytes()[:1000])
    kept = (out / "shard-00000" / "input_ids.npy").stat().st_mtime_ns
    with pytest.raises(DataError, match="no manifest.json"):
        PretrainingDataset(out)
    prepare_pretraining_data(corpus, vocab_dir, out, PrepareConfig(dupe_factor=2), corpus_filter=KEEP_ALL,
                             workers=1, progress=False)
    assert (out / "shard-00000" / "input_ids.npy").stat().st_mtime_ns == kept  # the finished shard was kept
    assert tree_digest(out) == tree_digest(static_dir)
    # Rerunning a finished directory changes nothing; other settings are refused.
    prepare_pretraining_data(corpus, vocab_dir, out, PrepareConfig(dupe_factor=2), corpus_filter=KEEP_ALL,
                             progress=False)
    assert tree_digest(out) == tree_digest(static_dir)
    with pytest.raises(DataError, match="other settings"):
        prepare_pretraining_data(corpus, vocab_dir, out, PrepareConfig(dupe_factor=3), corpus_filter=KEEP_ALL,
                                 progress=False)


def test_run_killed_mid_way_keeps_finished_shards(tmp_path: Path, static_dir: Path, corpus: list[Path],
                                                  vocab_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import domainbert.data.shards as pd

    real = pd._process_unit

    def interrupted(task: pd._UnitTask) -> dict:
        if task.index == 1:
            raise KeyboardInterrupt  # Ctrl-C while the second file is processed
        return real(task)

    out = tmp_path / "data"
    monkeypatch.setattr(pd, "_process_unit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_pretraining_data(corpus, vocab_dir, out, PrepareConfig(dupe_factor=2), corpus_filter=KEEP_ALL,
                                 progress=False)
    assert not (out / MANIFEST_NAME).exists() and (out / "shard-00000" / "shard.json").is_file()
    assert not (out / "shard-00001").exists() and not list(out.glob(".*"))
    monkeypatch.setattr(pd, "_process_unit", real)
    prepare_pretraining_data(corpus, vocab_dir, out, PrepareConfig(dupe_factor=2), corpus_filter=KEEP_ALL,
                             progress=False)
    assert tree_digest(out) == tree_digest(static_dir)


# ==================================================================================== reader
def test_permutation_is_a_bijection() -> None:
    for n in (1, 2, 7, 1000, 4097):
        perm = _Permutation(n, key=n)(np.arange(n))
        assert sorted(perm.tolist()) == list(range(n))
    assert not np.array_equal(_Permutation(1000, 1)(np.arange(1000)), _Permutation(1000, 2)(np.arange(1000)))


def _indices(ds: PretrainingDataset, workers: int = 0) -> list[int]:
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    out: list[int] = []
    for batch in loader:
        out += batch["index"].reshape(-1).tolist()
    return out


def test_ranks_and_workers_get_disjoint_parts_covering_everything(static_dir: Path) -> None:
    n = load_manifest(static_dir)["num_samples"]
    world = 3
    parts = []
    for rank in range(world):
        ds = PretrainingDataset(static_dir, rank=rank, world_size=world, seed=5, batch_size=256, with_index=True)
        single = _indices(ds)
        assert _indices(ds, workers=2) == single  # 2 DataLoader workers: the same stream, in order
        assert len(single) == n // world
        parts.append(single)
    flat = [i for p in parts for i in p]
    assert len(set(flat)) == len(flat) == n - n % world
    assert len(set(range(n)) - set(flat)) == n % world  # the tail that would unbalance the ranks


def test_resume_at_an_exact_offset_and_epoch_order(static_dir: Path) -> None:
    kw = dict(rank=1, world_size=2, seed=3, with_index=True)
    full = _indices(PretrainingDataset(static_dir, **kw))
    resumed = _indices(PretrainingDataset(static_dir, start_sample=2 * 1234, **kw))
    assert resumed == full[1234:]
    batched = PretrainingDataset(static_dir, start_sample=2 * 1234, batch_size=100, **kw)
    assert len(batched) == -(-(len(full) - 1234) // 100)
    assert _indices(batched) == full[1234:]
    epoch1 = _indices(PretrainingDataset(static_dir, epoch=1, **kw))
    assert epoch1 != full and len(set(epoch1) & set(full)) > 0.4 * len(full)  # a new order, same pool
    assert _indices(PretrainingDataset(static_dir, **kw)) == full  # same seed and epoch: same order
    unshuffled = _indices(PretrainingDataset(static_dir, shuffle=False, **kw))
    assert unshuffled == list(range(1, 2 * len(unshuffled), 2))


def test_batches_feed_bert_for_pretraining(static_dir: Path) -> None:
    from domainbert.model.configuration import BertConfig
    from domainbert.model.modeling import BertForPreTraining

    manifest = load_manifest(static_dir)
    ds = PretrainingDataset(static_dir, batch_size=13, max_seq_len=128, max_predictions=20, vocab_size=3000)
    batch = next(iter(ds))
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels", "next_sentence_label"}
    assert batch["input_ids"].shape == (13, 128) and batch["next_sentence_label"].shape == (13,)
    assert batch["input_ids"].dtype == torch.int64
    # labels: -100 except at masked positions; attention over real tokens; type 1 only inside it.
    masked = batch["labels"] != -100
    expected = torch.clamp(torch.round(batch["attention_mask"].sum(1) * 0.15), 1, 20)
    assert torch.equal(masked.sum(1), expected.long())
    assert (batch["token_type_ids"] <= batch["attention_mask"]).all()
    config = BertConfig.preset("tiny", vocab_size=manifest["vocab"]["size"], max_position_embeddings=128)
    out = BertForPreTraining(config)(**batch)
    assert torch.isfinite(out.loss)
    assert collate_pretraining([ds.sample(0), ds.sample(1)])["input_ids"].shape == (2, 128)


def test_a_runs_masking_rate_applies_to_dynamic_data_and_is_refused_for_static(dynamic_dir: Path, static_dir: Path,
                                                                               tokenizer: BertTokenizer) -> None:
    def share(ds: PretrainingDataset) -> float:
        batch = next(iter(ds))
        real = batch["attention_mask"].sum() - 3 * batch["attention_mask"].shape[0]  # [CLS] and [SEP]s never masked
        return float((batch["labels"] != -100).sum() / real)

    at_15 = share(PretrainingDataset(dynamic_dir, shuffle=False, batch_size=300))
    at_40 = share(PretrainingDataset(dynamic_dir, shuffle=False, batch_size=300, masked_lm_prob=0.4))
    assert 0.12 < at_15 <= 0.16 and 0.36 < at_40 <= 0.41, (at_15, at_40)
    assert share(PretrainingDataset(static_dir, shuffle=False, batch_size=300, masked_lm_prob=0.15)) < 0.16
    with pytest.raises(DataError, match="--masked-lm-prob 0.3 --max-predictions 40, or with --dynamic-masking"):
        PretrainingDataset(static_dir, masked_lm_prob=0.3)


def test_dynamic_masking_differs_by_epoch_and_repeats_within_one(dynamic_dir: Path,
                                                                 tokenizer: BertTokenizer) -> None:
    def masks(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        ds = PretrainingDataset(dynamic_dir, epoch=epoch, shuffle=False, batch_size=500)
        batch = next(iter(ds))
        return batch["input_ids"], batch["labels"]

    ids0, lab0 = masks(0)
    ids0b, lab0b = masks(0)
    ids1, lab1 = masks(1)
    assert torch.equal(ids0, ids0b) and torch.equal(lab0, lab0b)
    assert not torch.equal(lab0 != -100, lab1 != -100)
    # Restoring the labels gives the same unmasked text in both epochs (the stored pairs).
    r0, r1 = ids0.clone(), ids1.clone()
    r0[lab0 != -100] = lab0[lab0 != -100]
    r1[lab1 != -100] = lab1[lab1 != -100]
    assert torch.equal(r0, r1)
    assert not (lab0 == tokenizer.cls_token_id).any() and not (lab0 == tokenizer.sep_token_id).any()
    assert not (dynamic_dir / "shard-00000" / "masked_positions.npy").exists()
    share = (lab0 != -100).sum() / (r0 != tokenizer.pad_token_id).sum()
    assert 0.12 < float(share) <= 0.16  # whole-word masking may stop short of round(0.15 * length)


def test_manifest_mismatch_is_refused_with_the_value_to_change(static_dir: Path, vocab_dir: Path,
                                                               tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set max_seq_len to 128"):
        PretrainingDataset(static_dir, max_seq_len=512)
    with pytest.raises(ConfigError, match="set max_predictions to 20"):
        PretrainingDataset(static_dir, max_predictions=80)
    with pytest.raises(ConfigError, match="vocab_size to at least 3000"):
        PretrainingDataset(static_dir, vocab_size=99)
    other = tmp_path / "other_vocab"
    shutil.copytree(vocab_dir, other)
    (other / "tokenizer.json").unlink()
    lines = (other / "vocab.txt").read_text(encoding="utf-8").splitlines()
    lines[100], lines[101] = lines[101], lines[100]
    (other / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="another vocabulary"):
        PretrainingDataset(static_dir, vocab=other)
    PretrainingDataset(static_dir, vocab=vocab_dir, max_seq_len=128, max_predictions=20)  # matching: accepted
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        check_manifest(load_manifest(static_dir), max_position_embeddings=64)


# ==================================================================================== bad input
def _prepare_cli(corpus: list[Path], vocab: Path, out: Path, *extra: str) -> int:
    return cli_main(["data", "prepare", "--corpus", *map(str, corpus), "--vocab", str(vocab), "--out", str(out),
                     "--quiet", "--min-words", "0", "--dupe-factor", "1", *extra])


def test_cli_writes_a_manifest_with_every_parameter(tmp_path: Path, corpus: list[Path], vocab_dir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert _prepare_cli(corpus[:1], vocab_dir, out, "--max-seq-len", "64", "--max-predictions", "10",
                        "--seed", "9", "--workers", "2", "--nsp-balance") == 0
    assert "examples in 1 shard(s)" in capsys.readouterr().out
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert m["params"] == {"max_seq_len": 64, "max_predictions": 10, "masked_lm_prob": 0.15, "short_seq_prob": 0.1,
                           "dupe_factor": 1, "whole_word_mask": False, "dynamic_masking": False, "seed": 9,
                           "objective": "mlm+nsp", "nsp_balance": True}
    assert set(m) >= {"config_checksum", "vocab", "counts", "corpus_counts", "shards", "num_samples"}
    assert m["shards"][0]["num_samples"] == m["num_samples"] > 0
    assert load_all(out)["input_ids"].shape[1] == 64


@pytest.mark.parametrize("case", ["no_vocab_txt", "short_max_len", "empty_corpus", "not_utf8"])
def test_bad_input_gives_one_line_error_and_no_output(case: str, tmp_path: Path, corpus: list[Path],
                                                      vocab_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vocab, files, extra = vocab_dir, corpus[:1], []
    if case == "no_vocab_txt":
        vocab = tmp_path / "empty_vocab"
        vocab.mkdir()
    elif case == "short_max_len":
        extra = ["--max-seq-len", "7"]
    elif case == "empty_corpus":
        files = [tmp_path / "empty.txt"]
        files[0].write_text("\n\n  \n\n", encoding="utf-8")
    else:
        files = [corpus[0], tmp_path / "latin1.txt"]
        files[1].write_bytes("Caf\xe9 au lait in vivo.\nA second sentence.\n".encode("latin-1"))
        extra = ["--workers", "2"]
    out = tmp_path / "out"
    assert _prepare_cli(files, vocab, out, *extra) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("domainbert data prepare: error: ")
    expected = {"no_vocab_txt": "vocab.txt", "short_max_len": "below 8", "empty_corpus": "empty.txt",
                "not_utf8": "UTF-8"}[case]
    assert expected in err[0]
    assert not out.exists()


def test_python_api_errors_are_typed(tmp_path: Path, corpus: list[Path], vocab_dir: Path) -> None:
    with pytest.raises(VocabError):
        prepare_pretraining_data(corpus, tmp_path, tmp_path / "o", progress=False)
    with pytest.raises(ConfigError, match="below 8"):
        PrepareConfig(max_seq_len=7)
    with pytest.raises(DataError, match="does not exist"):
        prepare_pretraining_data([tmp_path / "missing.txt"], vocab_dir, tmp_path / "o", progress=False)


def test_micro_batches_follow_the_trainers_global_order(static_dir: Path) -> None:
    """``BatchSource`` for domainbert.train.pretrain: 2 ranks split each global batch of 1 rank; resume exact."""
    ds = PretrainingDataset(static_dir, seed=1, with_index=True)
    n = ds.num_samples
    steps = n // 96 + 2  # crosses into epoch 1

    def take(rank: int, world: int, start: int, count: int) -> list[list[int]]:
        it = ds.micro_batches(96, 16, start, rank, world)
        return [next(it)["index"].tolist() for _ in range(count)]

    one = take(0, 1, 0, 6 * steps)  # 6 micro-batches of 16 per step
    flat = [i for b in one for i in b]
    assert sorted(flat[:n]) == list(range(n))  # epoch 0 is a permutation of every sample
    assert flat[n:] != flat[:len(flat) - n]  # epoch 1 has another order
    r0, r1 = take(0, 2, 0, 3 * steps), take(1, 2, 0, 3 * steps)
    for s in range(steps):
        assert one[6 * s:6 * s + 6] == r0[3 * s:3 * s + 3] + r1[3 * s:3 * s + 3]
    assert take(1, 2, 96 * 5, 6) == r1[15:21]  # resume at step 5 replays nothing


def test_corpus_filters_reach_the_manifest(tmp_path: Path, shared_data: Path, vocab_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """--decontaminate drops a planted BLURB test sentence; duplicates and short documents are counted."""
    blocks = (shared_data / "pubmed_corpus" / "ncbi_disease_train_dev.txt").read_text(encoding="utf-8").split("\n\n")
    train = [b.strip() for b in blocks[:4]]
    gad = (shared_data / "gad/test.tsv").read_text(encoding="utf-8").splitlines()[1].split("\t")[1]
    planted = train[3] + "\n" + gad.replace("@GENE$", "CYP1A1").replace("@DISEASE$", "lung cancer")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join([train[0], train[1], train[2], planted, train[0], "Too short."]) + "\n",
                      encoding="utf-8")
    out = tmp_path / "out"
    assert cli_main(["data", "prepare", "--corpus", str(corpus), "--vocab", str(vocab_dir), "--out", str(out),
                     "--quiet", "--min-words", "5", "--dupe-factor", "3", "--decontaminate", str(shared_data)]) == 0
    m = load_manifest(out)
    cc = m["corpus_counts"]
    assert (cc["records"], cc["dropped_test_text"], cc["dropped_duplicate_text"], cc["dropped_short"],
            cc["kept"]) == (6, 1, 1, 1, 3)
    assert m["counts"]["documents"] == 3 and m["decontamination"]["sources"]["gad/test.tsv"]["sentences"] > 0
    assert m["corpus_filter"]["min_words"] == 5
    # Filtering everything away is an error, not an empty dataset.
    assert cli_main(["data", "prepare", "--corpus", str(corpus), "--vocab", str(vocab_dir), "--out",
                     str(tmp_path / "none"), "--quiet", "--min-words", "100000"]) == 1
    assert "no pretraining examples" in capsys.readouterr().err and not (tmp_path / "none").exists()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 64, 65, 129, 1000])
def test_inlined_shuffle_equals_random_shuffle(n: int) -> None:
    from domainbert.data.examples import _fisher_yates, _shuffle

    assert _shuffle is _fisher_yates  # this Python's shuffle is the one it restates
    for seed in range(5):
        ours, theirs = list(range(n)), list(range(n))
        a, b = random.Random(seed), random.Random(seed)
        _fisher_yates(ours, a)
        b.shuffle(theirs)
        assert ours == theirs and a.getstate() == b.getstate()


def test_one_iteration_contract_for_both_readers(static_dir: Path) -> None:
    """Iteration is the trainer's reader with a global batch of one sample per rank; both honour the
    constructor's rank, world size, epoch and start sample."""
    kw = dict(rank=1, world_size=2, seed=3, with_index=True)
    iterated = _indices(PretrainingDataset(static_dir, **kw))
    trainer = PretrainingDataset(static_dir, **kw).micro_batches(2, 1)  # G = W = 2, rank 1's slice
    assert [int(next(trainer)["index"][0]) for _ in range(50)] == iterated[:50]
    resumed = PretrainingDataset(static_dir, start_sample=96 * 5, epoch=1, **kw)
    explicit = PretrainingDataset(static_dir, seed=3, with_index=True)
    start = 1 * explicit.num_samples + 96 * 5
    a, b = resumed.micro_batches(96, 16), explicit.micro_batches(96, 16, start, 1, 2)
    assert [next(a)["index"].tolist() for _ in range(4)] == [next(b)["index"].tolist() for _ in range(4)]
